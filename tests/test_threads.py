"""Concurrency: blasprop releases the GIL for whole epochs, so estimators are
fitted and used from several threads at once. Whatever runs concurrently must
give exactly what the same calls give one after the other.

BLAS is pinned to one thread (threadpoolctl) for every test here: the
sequential reference and the threaded runs then take the same code paths, so
results are compared for exact equality, and the threads do not oversubscribe
the cores. Nothing here measures time (``bench/threads.py`` does).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_array_equal
from threadpoolctl import threadpool_limits

import blasprop
from blasprop import MLPClassifier, MLPRegressor

from ._helpers import assert_same_model, regression_data

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(limits=1):
        yield


def _run_concurrently(*targets):
    """Start every target at the same moment; re-raise the first error."""
    barrier = threading.Barrier(len(targets))
    errors = []

    def wrap(fn):
        def run():
            try:
                barrier.wait()
                fn()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(fn)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _data(n=1500, n_features=40, seed=0, dtype=np.float64):
    return regression_data(n, n_features, seed, dtype)



# Pairs of fits run at the same time: (estimator, X, y) factories.
def _pair(case):
    X, yc, yr = _data(seed=0)
    X2, yc2, yr2 = _data(seed=1, n_features=25)
    X32 = X.astype(np.float32)
    if case == "adam-classifier+sgd-regressor":
        return [
            (MLPClassifier((32, 16), max_iter=8, random_state=0), X, yc),
            (MLPRegressor(hidden_layer_sizes=(24,), solver="sgd", max_iter=8,
                          random_state=1), X2, yr2),
        ]
    if case == "same-X-float32":
        return [
            (MLPClassifier((32,), max_iter=8, random_state=0), X32, yc),
            (MLPClassifier((32,), max_iter=8, random_state=3, batch_size=64,
                           activation="tanh"), X32, yc),
        ]
    if case == "lbfgs+sparse-adamw":
        Xs = sp.csr_matrix(np.where(np.abs(X2) > 1.0, X2, 0.0))
        return [
            (MLPRegressor(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=30,
                          random_state=0), X, yr),
            (MLPClassifier((16,), solver="adamw", max_iter=8, random_state=0), Xs, yc2),
        ]
    if case == "early-stopping+dropout":
        return [
            (MLPClassifier((32,), early_stopping=True, max_iter=8, random_state=0,
                           n_iter_no_change=100), X, yc),
            (MLPRegressor(hidden_layer_sizes=(32, 8), dropout=0.2, max_iter=8,
                          random_state=0), np.asfortranarray(X2), yr2),
        ]
    raise ValueError(case)


PAIRS = ["adam-classifier+sgd-regressor", "same-X-float32", "lbfgs+sparse-adamw",
         "early-stopping+dropout"]


@pytest.mark.parametrize("case", PAIRS)
def test_two_fits_in_two_threads_equal_sequential_fits(case):
    sequential = [est.fit(X, y) for est, X, y in _pair(case)]
    concurrent = _pair(case)
    _run_concurrently(*[lambda e=e, X=X, y=y: e.fit(X, y) for e, X, y in concurrent])
    for (est, _, _), ref in zip(concurrent, sequential):
        assert_same_model(est, ref)


def test_partial_fit_in_threads_equals_sequential():
    X, yc, yr = _data()
    batches = np.array_split(np.arange(X.shape[0]), 6)

    def train(est, y, **kw):
        for idx in batches:
            est.partial_fit(X[idx], y[idx], **kw)
        return est

    make = [
        lambda: MLPClassifier((16,), solver="sgd", random_state=0),
        lambda: MLPRegressor(hidden_layer_sizes=(16,), random_state=0),
    ]
    ys = [yc, yr]
    kws = [dict(classes=[0, 1, 2]), {}]
    refs = [train(m(), y, **kw) for m, y, kw in zip(make, ys, kws)]
    ests = [m() for m in make]
    _run_concurrently(*[lambda e=e, y=y, kw=kw: train(e, y, **kw)
                        for e, y, kw in zip(ests, ys, kws)])
    for est, ref in zip(ests, refs):
        assert_same_model(est, ref)


def _inputs():
    X, _, _ = _data(n=700, seed=5)
    return {
        "float64": X,
        "float32": X.astype(np.float32),
        "fortran": np.asfortranarray(X),
        "strided": np.repeat(X, 2, axis=0)[::2],
        "csr": sp.csr_matrix(np.where(X > 0.5, X, 0.0)),
    }


def test_predict_from_eight_threads_on_one_model():
    X, yc, _ = _data()
    est = MLPClassifier((32, 16), max_iter=5, random_state=0).fit(X, yc)
    inputs = _inputs()
    reference = {
        (name, method): getattr(est, method)(Xi)
        for name, Xi in inputs.items()
        for method in ("predict", "predict_proba")
    }
    keys = list(reference)
    results = [[] for _ in range(8)]

    def worker(i):
        def run():
            for r in range(12):
                name, method = keys[(i + r) % len(keys)]
                results[i].append(((name, method), getattr(est, method)(inputs[name])))

        return run

    _run_concurrently(*[worker(i) for i in range(8)])
    assert sum(len(r) for r in results) == 8 * 12
    for per_thread in results:
        for key, out in per_thread:
            assert out.dtype == reference[key].dtype
            assert_array_equal(out, reference[key], err_msg=str(key))


def test_fit_while_other_threads_predict_with_other_models():
    X, yc, yr = _data()
    inputs = _inputs()
    predictors = [
        MLPClassifier((16,), max_iter=3, random_state=i).fit(X, yc) for i in range(2)
    ] + [MLPRegressor(hidden_layer_sizes=(16,), max_iter=3, random_state=0).fit(X, yr)]
    expected = [{k: p.predict(v) for k, v in inputs.items()} for p in predictors]
    fit_ref = MLPRegressor(hidden_layer_sizes=(64, 32), max_iter=6,
                           random_state=0).fit(X, yr)
    fitting = MLPRegressor(hidden_layer_sizes=(64, 32), max_iter=6, random_state=0)
    done = threading.Event()
    calls = [0] * len(predictors)

    def fit():
        try:
            fitting.fit(X, yr)
        finally:
            done.set()

    def predict(i):
        def run():
            # at least a few rounds, and keep going while the fit runs
            rounds = 0
            while rounds < 3 or not done.is_set():
                for k, v in inputs.items():
                    assert_array_equal(predictors[i].predict(v), expected[i][k])
                    calls[i] += 1
                rounds += 1

        return run

    _run_concurrently(fit, *[predict(i) for i in range(len(predictors))])
    assert_same_model(fitting, fit_ref)
    assert min(calls) >= 3 * len(inputs)


def test_gil_is_released_during_the_epoch(monkeypatch):
    """While one thread is inside the compiled epoch, another thread runs
    Python code. The switch interval is made huge, so the interpreter never
    takes the GIL from the fitting thread: the other thread can only run when
    the epoch releases it."""
    X, yc, _ = _data(n=3000, n_features=100)
    real_epoch = blasprop._core.epoch
    state = {"in_epoch": False, "seen_in_epoch": 0}

    def epoch(*args, **kwargs):
        state["in_epoch"] = True
        try:
            return real_epoch(*args, **kwargs)
        finally:
            state["in_epoch"] = False

    monkeypatch.setattr(blasprop._core, "epoch", epoch)
    est = MLPClassifier((128,), max_iter=4, random_state=0)
    done = threading.Event()

    def fit():
        try:
            est.fit(X, yc)
        finally:
            done.set()

    def watch():
        while not done.is_set():
            if state["in_epoch"]:
                state["seen_in_epoch"] += 1
            time.sleep(0)  # hand the GIL back

    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        _run_concurrently(fit, watch)
    finally:
        sys.setswitchinterval(old)
    assert est.n_iter_ == 4
    assert state["seen_in_epoch"] > 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fmt", ["dense", "fortran", "csr"])
@pytest.mark.parametrize("n_rows", [1, 511, 512, 513, 5000, 20000])
def test_predict_is_the_same_on_any_number_of_threads(dtype, fmt, n_rows):
    """predict shares fixed row chunks between as many threads as BLAS may
    use: one, two or three threads give the same bits, and the numpy forward
    pass to rounding. This network's chunks are about a megabyte of buffers,
    3,640 rows in float64 and 7,281 in float32: 5,000 rows split in float64,
    20,000 rows in both."""
    from ._reference import forward

    rng = np.random.RandomState(0)
    X = rng.randn(n_rows, 6).astype(dtype)
    y = rng.randn(n_rows).astype(dtype)
    est = MLPRegressor(hidden_layer_sizes=(5, 4), max_iter=2, random_state=0)
    est.fit(X[:50], y[:50])
    Xf = {"dense": X, "fortran": np.asfortranarray(X), "csr": sp.csr_matrix(X)}[fmt]
    results = {}
    for threads in (1, 2, 3):
        with threadpool_limits(limits=threads, user_api="blas"):
            results[threads] = est.predict(Xf)
    assert_array_equal(results[2], results[1])
    assert_array_equal(results[3], results[1])
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(results[1], forward(est, X).ravel(), rtol=tol, atol=tol)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("row", [0, 2600, 4999])
@pytest.mark.parametrize("layout", ["C", "F"])
def test_predict_finds_non_finite_rows_in_any_chunk(bad, row, layout):
    """Dense X is checked for NaN and infinity by the compiled predict, chunk
    by chunk, in whichever thread has the chunk; the error raised is
    scikit-learn's, word for word."""
    from sklearn.neural_network import MLPRegressor as SkMLPRegressor

    rng = np.random.RandomState(0)
    X = rng.randn(5000, 6)
    y = rng.randn(5000)
    ours = MLPRegressor(hidden_layer_sizes=(5,), max_iter=2, random_state=0).fit(X[:50], y[:50])
    theirs = SkMLPRegressor(hidden_layer_sizes=(5,), max_iter=2, random_state=0).fit(X[:50], y[:50])
    X_bad = np.array(X, order=layout)
    X_bad[row, 3] = bad
    with pytest.raises(ValueError) as sk_err:
        theirs.predict(X_bad)
    with threadpool_limits(limits=2, user_api="blas"):
        with pytest.raises(ValueError) as bp_err:
            ours.predict(X_bad)
    assert str(bp_err.value) == str(sk_err.value)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_predict_team_equals_the_one_thread_predictions_and_loss(dtype, weighted):
    """``predict_team`` on one, two or three workspaces gives the bits of
    ``predict`` (all rows) and of ``predict_rows`` (listed rows, with their
    mean loss), whatever the number of threads; its arguments are checked."""
    from blasprop import _core

    rng = np.random.RandomState(2)
    X = rng.randn(2000, 6).astype(dtype)
    est = MLPRegressor(hidden_layer_sizes=(5,), max_iter=2, random_state=0)
    est.fit(X[:50], rng.randn(50, 2))
    net = est._network(300, dtype, [6, 5, 2], exact_cap=True)  # 7 chunks
    params = net.pack(est.coefs_, est.intercepts_, dtype)
    X_in = _core.Input(X)
    rows = rng.permutation(2000)[:1500].astype(np.intp)
    Y = rng.randn(1500, 2).astype(dtype)
    sw = rng.uniform(0.5, 2, 1500).astype(dtype) if weighted else None
    all_rows = np.empty((2000, 2), dtype)
    _core.predict(net.layout, net.workspace(dtype, False), X_in, params, all_rows)
    listed = np.empty((1500, 2), dtype)
    loss = _core.predict_rows(net.layout, net.workspace(dtype, False), X_in, params,
                              rows, listed, Y, sw)
    for threads in (1, 2, 3):
        workspaces = [net.workspace(dtype, False) for _ in range(threads)]
        out = np.full((2000, 2), np.nan, dtype)
        assert _core.predict_team(net.layout, workspaces, X_in, params, out) is None
        assert_array_equal(out, all_rows)
        out = np.full((1500, 2), np.nan, dtype)
        team_loss = _core.predict_team(net.layout, workspaces, X_in, params, out, rows,
                                       Y, sw)
        assert_array_equal(out, listed)
        assert team_loss == loss
    ws = net.workspace(dtype, False)
    with pytest.raises(ValueError, match="workspace"):
        _core.predict_team(net.layout, [], X_in, params, np.empty((2000, 2), dtype))
    with pytest.raises(TypeError, match="Workspace"):
        _core.predict_team(net.layout, [ws, None], X_in, params,
                           np.empty((2000, 2), dtype))
    with pytest.raises(ValueError, match="of its own"):
        _core.predict_team(net.layout, [ws, ws], X_in, params, np.empty((2000, 2), dtype))
    with pytest.raises(ValueError, match="out"):
        _core.predict_team(net.layout, [ws, net.workspace(dtype, False)], X_in, params,
                           np.empty((1999, 2), dtype))
    with pytest.raises(ValueError, match="Y"):
        _core.predict_team(net.layout, [ws], X_in, params, np.empty((1500, 2), dtype),
                           rows, Y[:10])
    with pytest.raises(ValueError, match="rows"):
        _core.predict_team(net.layout, [ws], X_in, params, np.empty((2, 2), dtype),
                           np.array([0, 2000], np.intp))


def test_validation_pass_of_a_fit_on_threads_equals_one_thread():
    """Early stopping's validation pass runs on the fit's threads: the
    scores and validation losses with n_jobs=1 and 2 are the same bits."""
    rng = np.random.RandomState(0)
    X = rng.randn(60_000, 8)  # 6,000 validation rows: several chunks
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    fits = [MLPClassifier(hidden_layer_sizes=(16,), early_stopping=True, max_iter=2,
                          n_jobs=n, random_state=0).fit(X, y) for n in (1, 2)]
    assert fits[0].validation_scores_ == fits[1].validation_scores_
    assert fits[0].validation_loss_curve_ == fits[1].validation_loss_curve_
    assert_array_equal(fits[0].coefs_[0], fits[1].coefs_[0])


# One estimator refitted in one thread, alternating between two data sets of
# different widths, class counts (or outputs) and hidden layers, while
# another thread predicts with it in a loop. Every call must either return a
# well-formed answer of one of the two models or raise a clear ValueError or
# RuntimeError: never crash, never return garbage. It runs in a subprocess,
# so that a segmentation fault fails the test instead of killing pytest.
_REFIT_WHILE_PREDICTING = textwrap.dedent(
    """
    import json, sys, threading, time, warnings
    import numpy as np, scipy.sparse as sp
    from blasprop import MLPClassifier, MLPRegressor
    warnings.simplefilter("ignore")
    kind, fmt, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    rng = np.random.RandomState(0)

    def dataset(n_features, n_out, hidden, labels):
        n = 150
        if fmt == "csr":
            # wide and sparse: the first layer of one model indexed with the
            # other's column indices would read far outside its weights
            cols = rng.randint(0, n_features, size=(n, 8))
            cols[:, 0] = np.arange(n) % n_features
            X = sp.csr_matrix((rng.standard_normal(8 * n),
                               (np.repeat(np.arange(n), 8), cols.ravel())),
                              shape=(n, n_features))
        else:
            X = rng.standard_normal((n, n_features))
        Z = X @ rng.standard_normal((n_features, n_out))
        if kind == "classifier":
            y = np.asarray(labels)[np.argmax(Z, axis=1) % len(labels)]
        else:
            y = Z[:, 0] if n_out == 1 else Z
        return dict(X=X, y=y, hidden=hidden, labels=labels, n_out=n_out)

    wide = 20000 if fmt == "csr" else 300
    sets = [dataset(wide, 3, (16,), [0, 1, 2]), dataset(6, 2, (5, 9), [10, 11])]
    Est = MLPClassifier if kind == "classifier" else MLPRegressor
    est = Est(hidden_layer_sizes=sets[0]["hidden"], activation="tanh", max_iter=2,
              random_state=0).fit(sets[0]["X"], sets[0]["y"])
    stop = threading.Event()
    counts = {"fits": 0, "ok": 0, "errors": 0}
    bad = []

    def refit():
        i = 0
        while not stop.is_set():
            i = 1 - i
            d = sets[i]
            try:
                est.set_params(hidden_layer_sizes=d["hidden"]).fit(d["X"], d["y"])
            except Exception as exc:
                bad.append("fit raised %s: %s" % (type(exc).__name__, exc))
            counts["fits"] += 1

    def problem(d, method, out):
        n = d["X"].shape[0]
        if kind == "classifier" and method == "predict":
            if out.shape != (n,) or not set(out.tolist()) <= set(d["labels"]):
                return "labels %r" % sorted(set(out.tolist()))
            return None
        width = len(d["labels"]) if kind == "classifier" else d["n_out"]
        if out.shape != (n, width) or not np.isfinite(out).all():
            return "%s: shape %r or not finite" % (method, out.shape)
        if method == "predict_proba" and not (
                (out >= 0).all() and np.allclose(out.sum(axis=1), 1.0)):
            return "probabilities do not sum to 1"
        if np.ptp(out, axis=0).min() == 0:
            return "the same output for every row (the biases alone?)"
        return None

    def predict():
        methods = ["predict", "predict_proba"] if kind == "classifier" else ["predict"]
        j = 0
        while not stop.is_set():
            j += 1
            d = sets[j % 2]
            method = methods[(j // 2) % len(methods)]
            try:
                out = getattr(est, method)(d["X"])
            except (ValueError, RuntimeError):
                counts["errors"] += 1
                continue
            except Exception as exc:
                bad.append("%s raised %s: %s" % (method, type(exc).__name__, exc))
                continue
            p = problem(d, method, out)
            if p:
                bad.append(p)
            else:
                counts["ok"] += 1

    threads = [threading.Thread(target=refit), threading.Thread(target=predict)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    print(json.dumps({"counts": counts, "bad": bad[:10], "n_bad": len(bad)}))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_refit_while_another_thread_predicts(kind, fmt):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", _REFIT_WHILE_PREDICTING, kind, fmt, "1.5"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode >= 0, (
        f"the subprocess died of {signal.Signals(-proc.returncode).name}\n"
        f"{proc.stderr[-2000:]}"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads([line for line in proc.stdout.splitlines()
                         if line.startswith("{")][-1])
    # OpenBLAS reports an illegal argument (and skips the product) on stdout
    assert "illegal value" not in proc.stdout + proc.stderr
    assert report["n_bad"] == 0, report["bad"]
    # the loop really ran both ways: refits, and predictions that succeeded
    assert report["counts"]["fits"] >= 4, report
    assert report["counts"]["ok"] >= 10, report
