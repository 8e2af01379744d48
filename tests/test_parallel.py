"""The blocked training path (``n_jobs``): row blocks of each batch shared by
threads. Its results must not depend on the number of threads, bit for bit;
its gradient is checked against finite differences in test_gradients.py and
against scikit-learn's path here."""

import threading

import numpy as np
import pytest
import scipy.sparse as sp
from blasprop._codes import bp_solver
from numpy.testing import assert_allclose, assert_array_equal

from blasprop import MLPClassifier, MLPRegressor, _core
from blasprop._network import Network
from blasprop._threads import training_threads

from ._helpers import assert_same_model, regression_data

ACTS = ["relu", "tanh", "logistic", "gelu"]


def _data(n=700, n_features=12, seed=0, dtype=np.float64):
    return regression_data(n, n_features, seed, dtype)



# --------------------------------------------------------------------------
# The compiled core, with any number of threads (more threads than cores
# only interleave differently, which is what must not matter)

def _problem(units, n, dtype, sparse=False, dropout=None, cap=None, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, units[0])).astype(dtype)
    if sparse:
        X[np.abs(X) < 0.8] = 0
        X = sp.csr_matrix(X)
    Y = rng.standard_normal((n, units[-1])).astype(dtype)
    sw = rng.uniform(0.2, 3.0, n).astype(dtype)
    net = Network(units, ["tanh"] * (len(units) - 2), "identity", 0, 1.0, cap or n,
                  dropout)
    coefs = [(0.3 * rng.standard_normal((a, b))).astype(dtype)
             for a, b in zip(units, units[1:])]
    ints = [(0.1 * rng.standard_normal(b)).astype(dtype) for b in units[1:]]
    return net, _core.Input(X), Y, sw, net.pack(coefs, ints, dtype)


def _epochs(net, X_in, Y, sw, params, solver, batch, n_threads, dtype, seed=5,
            epochs=2):
    params = params.copy()
    grads = np.empty_like(params)
    s1, s2 = np.zeros_like(params), np.zeros_like(params)
    ws = net.workspace(dtype, X_in.sparse, blocked=n_threads > 0)
    rng = np.random.RandomState(seed)
    t, losses = 0, []
    for _ in range(epochs):
        order = rng.permutation(X_in.n_samples).astype(np.intp)
        opt = _core.Solver(solver, 1e-2, momentum=0.9, nesterov=True, alpha=1e-3, t=t)
        losses.append(_core.epoch(net.layout, ws, X_in, Y, sw, order, batch, params,
                                  grads, s1, s2, opt, 77 if net.has_dropout else -1,
                                  n_threads))
        t = opt.t
    return params, losses, t


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("solver", list(bp_solver))
@pytest.mark.parametrize("case", ["dense", "sparse", "dropout", "deep"])
def test_epoch_is_the_same_with_any_number_of_threads(case, solver, dtype):
    units = [20, 30, 25, 3] if case == "deep" else [20, 40, 3]
    net, X_in, Y, sw, params = _problem(
        units, 530, dtype, sparse=case == "sparse",
        dropout=[0.3] * (len(units) - 2) if case == "dropout" else None, cap=200)
    ref = _epochs(net, X_in, Y, sw, params, solver, 200, 1, dtype)
    assert np.all(np.isfinite(ref[0])) and not np.array_equal(ref[0], params)
    for n_threads in (2, 3, 4, 7):
        got = _epochs(net, X_in, Y, sw, params, solver, 200, n_threads, dtype)
        assert_array_equal(got[0], ref[0])
        assert got[1] == ref[1] and got[2] == ref[2]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("solver", list(bp_solver))
def test_one_blocked_step_equals_the_serial_step(solver, dtype):
    """One batch over all rows: the blocked path's step is scikit-learn's
    path's step, up to the order of the sums (compared in float64)."""
    net, X_in, Y, sw, params = _problem([20, 40, 30, 3], 256, dtype)
    serial = _epochs(net, X_in, Y, sw, params, solver, 256, 0, dtype, epochs=1)
    blocked = _epochs(net, X_in, Y, sw, params, solver, 256, 2, dtype, epochs=1)
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    assert_allclose(blocked[0], serial[0], rtol=rtol, atol=rtol * 1e-2)
    assert_allclose(blocked[1], serial[1], rtol=rtol)
    assert blocked[2] == serial[2]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sparse", [False, True])
def test_blocked_objective_equals_the_serial_one(sparse, dtype):
    """Over several chunks (cap 100 of 530 rows), with sample weights."""
    net, X_in, Y, sw, params = _problem([20, 40, 30, 3], 530, dtype, sparse=sparse,
                                        cap=100)
    g0, g = np.empty_like(params), {}
    loss0 = _core.objective(net.layout, net.workspace(dtype, sparse), X_in, Y, sw,
                            params, g0, 1e-2)
    losses = {}
    for n_threads in (1, 2, 5):
        g[n_threads] = np.empty_like(params)
        ws = net.workspace(dtype, sparse, blocked=True)
        losses[n_threads] = _core.objective(net.layout, ws, X_in, Y, sw, params,
                                            g[n_threads], 1e-2, -1, n_threads)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert_allclose(losses[1], loss0, rtol=rtol)
    assert_allclose(g[1], g0, rtol=rtol * 100, atol=rtol * np.abs(g0).max())
    for n_threads in (2, 5):
        assert losses[n_threads] == losses[1]
        assert_array_equal(g[n_threads], g[1])


def test_blocked_path_checks_its_arguments():
    net, X_in, Y, sw, params = _problem([5, 4, 2], 50, np.float64)
    grads = np.empty_like(params)
    plain = net.workspace(np.float64, False)
    with pytest.raises(ValueError, match="blocked=True"):
        _core.objective(net.layout, plain, X_in, Y, sw, params, grads, 0.0, -1, 2)
    blocked = net.workspace(np.float64, False, blocked=True)
    for bad in (-1, 10**6):
        with pytest.raises(ValueError, match="n_threads"):
            _core.objective(net.layout, blocked, X_in, Y, sw, params, grads, 0.0, -1,
                            bad)
    with pytest.raises(ValueError, match="solver code 9"):
        _core.Solver(9, 1e-3)


def test_batches_are_cut_into_blocks_by_their_rows_and_the_network_alone():
    small, wide = [50, 100, 1], [784, 512, 512, 10]
    assert _core.block_rows(1, small) == [(0, 1)]
    assert _core.block_rows(31, small) == [(0, 31)]
    assert _core.block_rows(32, small) == [(0, 16), (16, 32)]
    blocks = _core.block_rows(200, small)
    assert len(blocks) == 8 and blocks[0] == (0, 25) and blocks[-1][1] == 200
    assert len(_core.block_rows(10**6, small)) == 16
    # a wide layer wants long blocks: 784 x 512 weights, at least 98 rows
    assert _core.block_min_rows(wide) == 784 * 512 // 4096
    assert _core.block_rows(256, wide) == [(0, 128), (128, 256)]
    for units in (small, wide):
        least = _core.block_min_rows(units)
        for rows in range(1, 600, 7):
            b = _core.block_rows(rows, units)
            assert b[0][0] == 0 and b[-1][1] == rows
            assert all(e == s for (_, e), (s, _) in zip(b, b[1:]))
            assert len(b) == 1 or min(e - s for s, e in b) >= least


# --------------------------------------------------------------------------
# The estimators

def _fit_pair(make, X, y, **fit):
    with_one = make(1).fit(X, y, **fit)
    with_two = make(2).fit(X, y, **fit)
    return with_one, with_two


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("solver", ["adam", "sgd", "adamw", "lbfgs"])
def test_fits_with_one_and_two_threads_are_identical(solver, dtype):
    X, yc, yr = _data(dtype=dtype)
    kw = dict(hidden_layer_sizes=(30, 20), solver=solver, max_iter=8, random_state=0,
              batch_size=128, learning_rate_init=0.01)
    for cls, y in ((MLPClassifier, yc), (MLPRegressor, yr)):
        a, b = _fit_pair(lambda n, cls=cls: cls(n_jobs=n, **kw), X, y)
        assert_same_model(a, b)
        assert_array_equal(a.predict(X), b.predict(X))


def test_identical_fits_with_everything_on():
    X, yc, _ = _data()
    sw = np.random.RandomState(3).uniform(0.5, 2, X.shape[0])
    kw = dict(hidden_layer_sizes=(30, 20), activation=["relu", "gelu"], max_iter=30,
              random_state=0, batch_size=100, dropout=0.2, early_stopping=True,
              class_weight="balanced", learning_rate_init=0.01)
    for X_ in (X, sp.csr_matrix(np.where(np.abs(X) > 0.7, X, 0))):
        a, b = _fit_pair(lambda n: MLPClassifier(n_jobs=n, **kw), X_, yc,
                         sample_weight=sw)
        assert_same_model(a, b)
        assert_array_equal(a.validation_scores_, b.validation_scores_)


def test_multilabel_and_poisson_fits_are_identical():
    X, yc, yr = _data()
    Ym = np.stack([yc == 0, yc == 2, yr > 0], axis=1).astype(int)
    a, b = _fit_pair(lambda n: MLPClassifier((25,), max_iter=5, random_state=0,
                                             n_jobs=n), X, Ym)
    assert_same_model(a, b)
    counts = np.random.RandomState(0).poisson(np.exp(yr / 2))
    a, b = _fit_pair(lambda n: MLPRegressor(hidden_layer_sizes=(25,), loss="poisson", max_iter=5,
                                            random_state=0, n_jobs=n), X, counts)
    assert_same_model(a, b)


def test_partial_fit_with_threads():
    X, yc, _ = _data()
    models = []
    for n in (1, 2):
        clf = MLPClassifier((20,), random_state=0, n_jobs=n)
        for _ in range(3):
            clf.partial_fit(X, yc, classes=[0, 1, 2])
        models.append(clf)
    assert_same_model(*models)


def test_blocked_fit_learns():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X / 16
    from sklearn.neural_network import MLPClassifier as SkMLP

    kw = dict(hidden_layer_sizes=(64,), max_iter=40, random_state=0)
    with pytest.warns(Warning):  # max_iter reached, in both
        sk = SkMLP(**kw).fit(X[:1400], y[:1400]).score(X[1400:], y[1400:])
    with pytest.warns(Warning):
        ours = MLPClassifier(n_jobs=2, **kw).fit(X[:1400], y[:1400])
    # the same training up to rounding: the held-out accuracy is the same to
    # a few digits out of 397
    assert ours.score(X[1400:], y[1400:]) >= sk - 0.01 > 0.8


def _record_threads(monkeypatch):
    from blasprop import _threads

    monkeypatch.setattr(_threads, "_CHOOSERS", {})  # nothing learnt before
    calls = []
    real = _core.epoch

    def epoch(*args, **kwargs):
        calls.append(args[13] if len(args) > 13 else kwargs.get("n_threads", 0))
        return real(*args, **kwargs)

    monkeypatch.setattr(_core, "epoch", epoch)
    return calls


def test_n_jobs_none_is_scikit_learns_path_and_joblib_context_sets_it(monkeypatch):
    from joblib import parallel_config

    X, yc, _ = _data(n=300)
    calls = _record_threads(monkeypatch)
    MLPClassifier((10,), max_iter=2, random_state=0).fit(X, yc)
    assert set(calls) == {0}
    calls.clear()
    with parallel_config(n_jobs=2):
        MLPClassifier((10,), max_iter=2, random_state=0).fit(X, yc)
    # the first epoch on all the threads allowed, the second on one (timed
    # for the choice: the model is the same)
    assert calls == [min(2, _core.max_threads()), 1]
    calls.clear()
    MLPClassifier((10,), max_iter=2, random_state=0, n_jobs=1).fit(X, yc)
    assert set(calls) == {1}


def test_threadpool_limits_bound_the_threads(monkeypatch):
    from threadpoolctl import threadpool_limits

    X, yc, _ = _data(n=300)
    calls = _record_threads(monkeypatch)
    with threadpool_limits(limits=1):
        assert training_threads(-1, 200, [10, 10, 3]) == 1
        MLPClassifier((10,), max_iter=2, random_state=0, n_jobs=-1).fit(X, yc)
    assert set(calls) == {1}
    calls.clear()
    # and raise them: OpenMP gives the threads asked for even on one core
    with threadpool_limits(limits=3, user_api="openmp"):
        MLPClassifier((10,), max_iter=2, random_state=0, n_jobs=3).fit(X, yc)
    assert calls == [3, 1]


def test_thread_chooser_keeps_the_faster_and_times_both_again():
    from blasprop._threads import ThreadChooser

    cost = {4: 0.02, 1: 0.005}
    seen = []

    def call(n_threads):
        seen.append(n_threads)
        import time

        time.sleep(cost[n_threads])

    chooser = ThreadChooser(4, every=6)
    for _ in range(12):
        chooser.timed(call)
    assert seen == [4, 1, 1, 1, 1, 1, 4, 1, 1, 1, 1, 1]
    cost[4], seen[:] = 0.001, []
    for _ in range(6):
        chooser.timed(call)
    assert seen == [4, 1, 4, 4, 4, 4]
    one = ThreadChooser(1)
    assert [one.threads() for _ in range(3)] == [1, 1, 1]


def test_fits_share_what_they_learnt_about_the_threads(monkeypatch):
    from blasprop import _threads

    monkeypatch.setattr(_threads, "_CHOOSERS", {})
    a = _threads.thread_chooser(2, "epoch", (5, 4, 1), 200, "float64", False)
    assert _threads.thread_chooser(2, "epoch", (5, 4, 1), 200, "float64", False) is a
    assert _threads.thread_chooser(2, "epoch", (5, 4, 1), 100, "float64", False) is not a
    assert _threads.thread_chooser(1, "epoch", (5, 4, 1), 200, "float64", False) is not a


def test_few_rows_per_batch_use_few_threads():
    # a thread needs a block of 16 rows or more
    units = [10, 10, 3]
    assert training_threads(8, 1, units) == 1
    assert training_threads(8, 31, units) == 1
    assert training_threads(8, 32, units) <= 2


def test_n_jobs_is_validated():
    X, yc, _ = _data(n=100)
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError):
        MLPClassifier(n_jobs=1.5).fit(X, yc)
    with pytest.raises(ValueError, match="n_jobs"):
        MLPClassifier(n_jobs=0, max_iter=1).fit(X, yc)


def test_two_estimators_with_two_threads_each_in_two_python_threads():
    """Four training threads on two cores, in two concurrent fits: both
    finish and equal the same fits run one after the other."""
    from threadpoolctl import threadpool_limits

    X, yc, yr = _data(n=2000, n_features=30)
    makers = [lambda: MLPClassifier((40,), max_iter=6, random_state=0, n_jobs=2),
              lambda: MLPRegressor(hidden_layer_sizes=(40, 20), max_iter=6, random_state=1,
                                   n_jobs=2)]
    targets = [yc, yr]
    with threadpool_limits(limits=2, user_api="openmp"):
        alone = [m().fit(X, y) for m, y in zip(makers, targets)]
        together = [m() for m in makers]
        errors = []

        def fit(est, y):
            try:
                est.fit(X, y)
            except BaseException as exc:  # raised in the test below
                errors.append(exc)

        threads = [threading.Thread(target=fit, args=(e, y))
                   for e, y in zip(together, targets)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    for a, b in zip(alone, together):
        assert_same_model(a, b)
