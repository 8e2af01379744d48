"""blasprop.dask: one model trained on data spread over a Dask cluster.

The cluster is a ``distributed.LocalCluster`` of two single-threaded worker
processes on 127.0.0.1, every server on a port the system picks (see
``local_dask_cluster`` in conftest.py). References are blasprop's local
estimators and its compiled objective on the concatenated data.
"""

import os
import pickle
import signal
import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone

import blasprop
from blasprop import MLPClassifier, MLPRegressor
from blasprop._gradcheck import _objective, _objective_parts

from ._helpers import assert_same_model

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
bdask = pytest.importorskip("blasprop.dask")
DaskMLPClassifier, DaskMLPRegressor = bdask.DaskMLPClassifier, bdask.DaskMLPRegressor


@pytest.fixture(scope="module")
def client(local_dask_cluster):
    with local_dask_cluster() as cluster, distributed.Client(cluster) as c:
        yield c


def _pair(is_classifier):
    return (DaskMLPClassifier, MLPClassifier) if is_classifier else (
        DaskMLPRegressor, MLPRegressor)


def _dask(X, y, chunks, sw=None):
    """X, y (and sw) as dask arrays with the row chunks ``chunks``; sparse X
    as blocks of CSR matrices."""
    Xd = da.from_array(X, chunks=(chunks, X.shape[1]), asarray=not sp.issparse(X))
    yd = da.from_array(y, chunks=(chunks,) + tuple((s,) for s in y.shape[1:]))
    swd = None if sw is None else da.from_array(sw, chunks=(chunks,))
    return Xd, yd, swd


def _flat(est):
    return np.concatenate([w.ravel() for w in est.coefs_] +
                          [b.ravel() for b in est.intercepts_])


# --------------------------------------------------------------------------
# L-BFGS: the objective over the partitions is the objective over all rows
# --------------------------------------------------------------------------

OBJECTIVE_CASES = [
    ("binary", {}),
    ("multiclass", {}),
    ("string_labels", {}),
    ("multilabel", {}),
    ("regression", {"loss": "squared_error"}),
    ("regression", {"loss": "huber"}),
    ("regression", {"loss": "absolute_error"}),
    ("regression_multi", {}),
    ("poisson", {}),
    ("multiclass", {"class_weight": "balanced"}),
    ("multilabel", {"class_weight": "balanced"}),
    ("binary", {"class_weight": {0: 2.0, 1: 0.5}}),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("task,params", OBJECTIVE_CASES)
def test_objective_over_partitions_equals_the_local_objective(
        client, make_data, task, params, dtype):
    data = make_data(task, dtype=dtype)
    X, y = data.X, data.y
    if data.is_classifier and y.ndim == 1:
        # sorted by label: partitions hold different classes, so classes_
        # and balanced weights must come from all of them
        order = np.argsort(np.asarray(y).astype(str), kind="stable")
        X, y = X[order], y[order]
    sw = np.random.RandomState(3).uniform(0.2, 3.0, X.shape[0])
    params = {**data.params, **params, "hidden_layer_sizes": (7, 5), "alpha": 0.05,
              "solver": "lbfgs", "random_state": 0, "activation": "tanh"}
    dask_cls, local_cls = _pair(data.is_classifier)
    # uneven partitions and an empty one
    Xd, yd, swd = _dask(X, y, (90, 0, 31, 119), sw)
    est = dask_cls(**params, client=client)
    fun, p0, _ = est._lbfgs_objective(est._problem(Xd, yd, swd))

    ref = local_cls(**params, max_iter=1).fit(X, y, sample_weight=sw)
    X_ref, Y_ref, sw_ref = _objective_parts(ref, X, y, sw)
    local = _objective(ref, X_ref, Y_ref, sw_ref, dtype)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for seed in (0, 1):
        x = np.random.RandomState(seed).normal(scale=0.4, size=p0.shape[0]).astype(dtype)
        loss, grad = fun(x)
        ref_loss, ref_grad = local(x)
        assert loss == pytest.approx(ref_loss, rel=rtol)
        assert_allclose(grad, ref_grad, rtol=rtol, atol=rtol * np.abs(ref_grad).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_objective_over_csr_partitions_equals_the_local_objective(client, make_data,
                                                                  dtype):
    data = make_data("multiclass", dtype=dtype, sparse="csr")
    X, y = data.X, data.y
    params = {"hidden_layer_sizes": (6,), "solver": "lbfgs", "random_state": 0,
              "alpha": 0.01}
    Xd, yd, _ = _dask(X, y, (100, 140))
    est = DaskMLPClassifier(**params, client=client)
    fun, p0, _ = est._lbfgs_objective(est._problem(Xd, yd, None))
    ref = MLPClassifier(**params, max_iter=1).fit(X, y)
    local = _objective(ref, *_objective_parts(ref, X, y, None), dtype)
    x = np.random.RandomState(0).normal(scale=0.4, size=p0.shape[0]).astype(dtype)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    (loss, grad), (ref_loss, ref_grad) = fun(x), local(x)
    assert loss == pytest.approx(ref_loss, rel=rtol)
    assert_allclose(grad, ref_grad, rtol=rtol, atol=rtol * np.abs(ref_grad).max())


def blasprop_routing():
    import sklearn

    return sklearn.config_context(enable_metadata_routing=True)


@pytest.mark.parametrize("labels,class_weight", [
    ("digits", "balanced"),          # labels "0", "1", "2"
    ("digits", {0: 3.0, 2: 0.5}),  # scikit-learn looks digit labels up as ints
    ("ints", {0: 2.0, 1: 0.5}),      # class 2 unweighted; partition 0 holds no 1
])
def test_class_weights_come_from_all_partitions(client, make_data, labels, class_weight):
    data = make_data("multiclass")
    order = np.argsort(data.y, kind="stable")
    X, y = data.X[order], data.y[order]
    if labels == "digits":
        y = y.astype(str)
    params = {"hidden_layer_sizes": (5,), "solver": "lbfgs", "random_state": 0,
              "class_weight": class_weight}
    Xd, yd, _ = _dask(X, y, (60, 60, 120))
    est = DaskMLPClassifier(**params, client=client)
    fun, p0, _ = est._lbfgs_objective(est._problem(Xd, yd, None))
    ref = MLPClassifier(**params, max_iter=1).fit(X, y)
    local = _objective(ref, *_objective_parts(ref, X, y, None), np.float64)
    x = np.random.RandomState(0).normal(scale=0.4, size=p0.shape[0])
    (loss, grad), (ref_loss, ref_grad) = fun(x), local(x)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-12 * np.abs(ref_grad).max())


def test_zero_weights_on_a_partition_are_as_locally(client, make_data):
    data = make_data("regression")
    X, y = data.X, data.y
    sw = np.random.RandomState(0).uniform(0.5, 2.0, len(y))
    sw[:100] = 0.0  # the whole first partition
    Xd, yd, swd = _dask(X, y, (100, 140), sw)
    params = {"hidden_layer_sizes": (6,), "solver": "lbfgs", "random_state": 0}
    est = DaskMLPRegressor(**params, client=client)
    fun, p0, _ = est._lbfgs_objective(est._problem(Xd, yd, swd))
    ref = MLPRegressor(**params, max_iter=1).fit(X, y, sample_weight=sw)
    local = _objective(ref, *_objective_parts(ref, X, y, sw), np.float64)
    x = np.random.RandomState(1).normal(scale=0.4, size=p0.shape[0])
    assert fun(x)[0] == pytest.approx(local(x)[0], rel=1e-12)
    # local SGD: the weightless partition sits out instead of spreading NaN
    for early_stopping in (False, True):
        got = DaskMLPRegressor(hidden_layer_sizes=(6,), max_iter=5, random_state=0,
                               early_stopping=early_stopping,
                               client=client).fit(Xd, yd, sample_weight=swd)
        assert np.all(np.isfinite(got.loss_curve_))
        if early_stopping:
            assert np.all(np.isfinite(got.validation_loss_curve_))
    with pytest.raises(ValueError, match="non-zero") as local_error:
        MLPRegressor(max_iter=2).fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError) as dask_error:
        DaskMLPRegressor(max_iter=2, client=client).fit(
            Xd, yd, sample_weight=da.zeros(len(y), chunks=((100, 140),)))
    assert str(dask_error.value) == str(local_error.value)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression", "poisson"])
def test_lbfgs_fit_equals_the_local_fit(client, make_data, task):
    data = make_data(task)
    params = {**data.params, "hidden_layer_sizes": (8,), "solver": "lbfgs",
              "max_iter": 20, "random_state": 0}
    dask_cls, local_cls = _pair(data.is_classifier)
    Xd, yd, _ = _dask(data.X, data.y, (77, 163))
    got = dask_cls(**params, client=client).fit(Xd, yd)
    ref = local_cls(**params).fit(data.X, data.y)
    assert got.n_iter_ == ref.n_iter_
    assert got.loss_ == pytest.approx(ref.loss_, rel=1e-10)
    for a, b in zip(got.coefs_ + got.intercepts_, ref.coefs_ + ref.intercepts_):
        assert_allclose(a, b, rtol=0, atol=1e-10)


def test_warm_start_continues_as_a_local_warm_start(client, make_data):
    data = make_data("multiclass")
    params = {"hidden_layer_sizes": (8,), "solver": "lbfgs", "max_iter": 5,
              "random_state": 0, "warm_start": True}
    Xd, yd, _ = _dask(data.X, data.y, (77, 163))
    got = DaskMLPClassifier(**params, client=client).fit(Xd, yd).fit(Xd, yd)
    ref = MLPClassifier(**params).fit(data.X, data.y).fit(data.X, data.y)
    for a, b in zip(got.coefs_ + got.intercepts_, ref.coefs_ + ref.intercepts_):
        assert_allclose(a, b, rtol=0, atol=1e-10)
    other = make_data("binary")
    Xo, yo, _ = _dask(other.X, other.y, (120, 120))
    with pytest.raises(ValueError, match="warm_start"):
        got.fit(Xo, yo)


def test_lbfgs_model_does_not_depend_on_the_number_of_workers(client, make_data,
                                                              local_dask_cluster):
    data = make_data("multiclass")
    params = {"hidden_layer_sizes": (8,), "solver": "lbfgs", "max_iter": 15,
              "random_state": 0}
    Xd, yd, _ = _dask(data.X, data.y, (60, 60, 60, 60))
    two = DaskMLPClassifier(**params, client=client).fit(Xd, yd)
    with local_dask_cluster(n_workers=1) as cluster, distributed.Client(cluster) as one:
        single = DaskMLPClassifier(**params, client=one).fit(Xd, yd)
    assert_same_model(two, single)
    assert two.n_iter_ == single.n_iter_ and two.loss_ == single.loss_


# --------------------------------------------------------------------------
# Local SGD with model averaging
# --------------------------------------------------------------------------


@pytest.mark.parametrize("params", [
    {"solver": "adam"},
    {"solver": "sgd", "momentum": 0.9, "nesterovs_momentum": True},
    {"solver": "sgd", "learning_rate": "invscaling", "momentum": 0.0},
    {"solver": "adamw", "alpha": 0.01},
    {"solver": "adam", "early_stopping": True},
    {"solver": "adam", "dropout": 0.2},
    {"solver": "adam", "n_jobs": 2},
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_local_sgd_on_one_partition_is_the_local_fit_bit_for_bit(client, make_data,
                                                                 params, dtype):
    data = make_data("multiclass", dtype=dtype)
    params = {**params, "hidden_layer_sizes": (9,), "max_iter": 12, "batch_size": 50,
              "random_state": 0}
    Xd, yd, _ = _dask(data.X, data.y, data.X.shape[0])
    got = DaskMLPClassifier(**params, client=client).fit(Xd, yd)
    ref = MLPClassifier(**params).fit(data.X, data.y)
    assert_same_model(got, ref)
    assert got.n_iter_ == ref.n_iter_ and got.t_ == ref.t_
    assert got.loss_curve_ == ref.loss_curve_
    assert got.validation_scores_ == ref.validation_scores_


def test_local_sgd_with_sample_weight_on_one_partition_is_the_local_fit(client,
                                                                        make_data):
    data = make_data("regression")
    sw = np.random.RandomState(0).uniform(0.5, 2.0, data.n_samples)
    params = {"hidden_layer_sizes": (9,), "max_iter": 8, "random_state": 0}
    Xd, yd, swd = _dask(data.X, data.y, data.n_samples, sw)
    got = DaskMLPRegressor(**params, client=client).fit(Xd, yd, sample_weight=swd)
    ref = MLPRegressor(**params).fit(data.X, data.y, sample_weight=sw)
    assert_same_model(got, ref)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_one_round_on_two_partitions_is_the_average_of_two_local_runs(client,
                                                                      make_data, solver):
    data = make_data("regression")
    X, y = data.X, data.y
    n0 = 100
    params = {"hidden_layer_sizes": (6,), "solver": solver, "batch_size": 32,
              "max_iter": 1}
    Xd, yd, _ = _dask(X, y, (n0, X.shape[0] - n0))
    got = DaskMLPRegressor(**params, random_state=0, client=client).fit(Xd, yd)

    # partition 0: the fit's own random state (initialisation, then shuffles)
    run0 = MLPRegressor(**params, random_state=0).fit(X[:n0], y[:n0])
    # partition 1: the same initial weights, shuffles from the generator
    # seeded by (random_state, 1)
    gen1 = np.random.RandomState(np.random.MT19937(np.random.SeedSequence([0, 1])))
    run1 = MLPRegressor(**params, random_state=gen1, warm_start=True)
    run1._initialize(np.random.RandomState(0), np.empty((0, 1)),
                     [X.shape[1], 6, 1], np.dtype(np.float64))
    run1.fit(X[n0:], y[n0:])

    w0, w1 = n0 / X.shape[0], (X.shape[0] - n0) / X.shape[0]
    expected = w0 * _flat(run0)
    expected += w1 * _flat(run1)
    assert_array_equal(_flat(got), expected)
    assert not np.array_equal(_flat(run0), _flat(run1))
    total = run0.loss_ * n0 + run1.loss_ * (X.shape[0] - n0)
    assert got.loss_ == pytest.approx(total / X.shape[0], rel=1e-12)


def test_local_sgd_converges_on_digits(client):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, random_state=0, stratify=y)
    Xd, yd, _ = _dask(X_tr, y_tr, (400, 400, X_tr.shape[0] - 800))
    # each round a partition takes ~14 steps of 32 rows; the average of
    # three models moves about as far as one of them did
    params = {"hidden_layer_sizes": (64,), "max_iter": 30, "batch_size": 32,
              "random_state": 0}
    est = DaskMLPClassifier(**params, client=client).fit(Xd, yd)
    local = MLPClassifier(**params).fit(X_tr, y_tr)
    assert est.loss_curve_[-1] < 0.15 * est.loss_curve_[0]
    assert est.score(X_te, y_te) > 0.94
    assert est.score(X_te, y_te) > local.score(X_te, y_te) - 0.03
    # half an epoch per round: the same number of rounds goes half as far
    half = DaskMLPClassifier(**params, local_epochs=0.5, client=client).fit(Xd, yd)
    assert est.loss_curve_[-1] < half.loss_curve_[-1] < 0.35 * half.loss_curve_[0]
    assert half.t_ == pytest.approx(est.t_ / 2, rel=0.1)


def test_early_stopping_split_is_global_and_stratified(client, make_data):
    from sklearn.model_selection import train_test_split

    data = make_data("binary")
    order = np.argsort(data.y, kind="stable")  # each partition holds one class
    X, y = data.X[order], data.y[order]
    n0 = int(np.sum(y == 0))
    params = {"hidden_layer_sizes": (8,), "early_stopping": True, "max_iter": 6,
              "random_state": 0, "validation_fraction": 0.2}
    Xd, yd, _ = _dask(X, y, (n0, len(y) - n0))
    got = DaskMLPClassifier(**params, client=client).fit(Xd, yd)
    assert len(got.validation_scores_) == got.n_iter_

    # the split a local fit makes of all the rows: the random state after
    # the initialisation, stratified by the labels (a single-output
    # classifier, as in scikit-learn)
    est = MLPClassifier(**params)
    est.classes_ = np.array([0, 1])
    est._label_binarizer = type("B", (), {"y_type_": "binary"})()
    rng = np.random.RandomState(0)
    est._initialize(rng, np.empty((0, 1)), [X.shape[1], 8, 1], X.dtype)
    _, val_idx = train_test_split(np.arange(len(y)), random_state=rng, test_size=0.2,
                                  stratify=y.reshape(-1, 1).astype(bool))
    assert np.sum(y[val_idx] == 0) == pytest.approx(0.2 * n0, abs=1)  # stratified
    # the fit keeps the best model: its score on those rows is the best one
    assert got.best_validation_score_ == max(got.validation_scores_)
    assert got.score(X[val_idx], y[val_idx]) == got.best_validation_score_
    ref = MLPClassifier(**params).fit(X, y)
    assert ref.score(X[val_idx], y[val_idx]) == ref.best_validation_score_


# --------------------------------------------------------------------------
# The fitted model: local copies, pickles, files, feature names, prediction
# --------------------------------------------------------------------------


def test_to_local_pickles_saves_loads_and_predicts_the_same(client, make_data, tmp_path):
    data = make_data("multiclass")
    Xd, yd, _ = _dask(data.X, data.y, (100, 140))
    est = DaskMLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                            client=client).fit(Xd, yd)
    local = est.to_local()
    assert type(local) is MLPClassifier
    assert_array_equal(local.predict_proba(data.X), est.predict_proba(data.X))
    again = pickle.loads(pickle.dumps(local))
    assert_array_equal(again.predict_proba(data.X), local.predict_proba(data.X))
    path = tmp_path / "model.bp"
    blasprop.save(local, path)
    loaded = blasprop.load(path)
    assert_array_equal(loaded.predict(data.X), local.predict(data.X))
    # the dask estimator pickles without its client
    clone_back = pickle.loads(pickle.dumps(est))
    assert clone_back.client is None
    assert_array_equal(clone_back.predict(data.X), est.predict(data.X))


def test_predictions_on_dask_input_are_lazy_and_blockwise(client, make_data):
    data = make_data("multiclass")
    Xd, yd, _ = _dask(data.X, data.y, (100, 140))
    est = DaskMLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                            client=client).fit(Xd, yd)
    local = est.to_local()
    pred, proba = est.predict(Xd), est.predict_proba(Xd)
    assert isinstance(pred, da.Array) and isinstance(proba, da.Array)
    assert pred.chunks == ((100, 140),) and proba.chunks == ((100, 140), (3,))
    assert_array_equal(pred.compute(), local.predict(data.X))
    assert_allclose(proba.compute(), local.predict_proba(data.X), rtol=1e-12)
    assert_allclose(est.predict_log_proba(Xd).compute(),
                    local.predict_log_proba(data.X), rtol=1e-12)
    assert est.score(Xd, yd) == pytest.approx(local.score(data.X, data.y))

    reg_data = make_data("regression_multi")
    Xr, yr, _ = _dask(reg_data.X, reg_data.y, (100, 140))
    reg = DaskMLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                           client=client).fit(Xr, yr)
    out = reg.predict(Xr)
    assert out.shape == (240, 3)
    assert_allclose(out.compute(), reg.to_local().predict(reg_data.X), rtol=1e-12)
    assert reg.score(Xr, yr) == pytest.approx(reg.to_local().score(reg_data.X,
                                                                   reg_data.y))


def test_weighted_scores_on_dask_input_equal_the_local_scores(client, make_data):
    for task in ("multiclass", "multilabel", "regression_multi", "regression"):
        data = make_data(task)
        sw = np.random.RandomState(0).uniform(0.2, 2.0, data.n_samples)
        Xd, yd, swd = _dask(data.X, data.y, (100, 140), sw)
        dask_cls, _ = _pair(data.is_classifier)
        est = dask_cls(hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                       client=client).fit(Xd, yd)
        local = est.to_local()
        assert est.score(Xd, yd, sample_weight=swd) == pytest.approx(
            local.score(data.X, data.y, sample_weight=sw), rel=1e-12, abs=1e-12)
        # y and weights in memory, X on the cluster
        assert est.score(Xd, data.y, sample_weight=sw) == pytest.approx(
            local.score(data.X, data.y, sample_weight=sw), rel=1e-12, abs=1e-12)


def test_partitions_weigh_what_they_hold_so_tasks_run_where_they_are(client):
    """The scheduler places a partition's tasks by the size of their inputs:
    a validated partition must weigh its arrays, not a few bytes."""
    from dask.sizeof import sizeof

    X = np.random.RandomState(0).normal(size=(5000, 20))
    part = bdask._Part(X, np.zeros((5000, 1)), np.ones(5000))
    assert sizeof(part) >= X.nbytes + 5000 * 8
    csr = sp.random(5000, 20, density=0.1, format="csr", random_state=0)
    part = bdask._Part(csr, np.zeros((5000, 1)), np.empty(0))
    assert sizeof(part) >= csr.data.nbytes + csr.indices.nbytes
    stream = bdask._Stream(5000, True, np.random.RandomState(0))
    assert sizeof(stream) >= 5000 * 8


def test_large_parameters_go_to_each_worker_once_and_fit_the_same(client):
    """Parameters over a megabyte are scattered once per evaluation rather
    than copied into every task; the lbfgs fit is still the local one."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(240, 400))
    y = (X[:, 0] > 0).astype(int)
    params = {"hidden_layer_sizes": (400,), "solver": "lbfgs", "max_iter": 3,
              "random_state": 0}
    assert (400 * 400 + 400 + 400 + 1) * 8 > bdask._EMBED_BYTES
    Xd, yd, _ = _dask(X, y, (120, 120))
    got = DaskMLPClassifier(**params, client=client).fit(Xd, yd)
    ref = MLPClassifier(**params).fit(X, y)
    assert got.n_iter_ == ref.n_iter_
    for a, b in zip(got.coefs_ + got.intercepts_, ref.coefs_ + ref.intercepts_):
        assert_allclose(a, b, rtol=0, atol=1e-10)
    sent = bdask._send(client, np.zeros(200_000))
    assert isinstance(sent[0], distributed.Future)
    assert isinstance(bdask._send(client, np.zeros(10))[0], np.ndarray)


def test_feature_names_from_a_dask_dataframe_survive(client, make_data):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    data = make_data("binary")
    columns = [f"f{i}" for i in range(data.X.shape[1])]
    df = pd.DataFrame(data.X, columns=columns)
    ddf = dd.from_pandas(df, npartitions=3)
    ys = dd.from_pandas(pd.Series(data.y), npartitions=3)
    est = DaskMLPClassifier(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=10,
                            random_state=0, client=client).fit(ddf, ys)
    assert list(est.feature_names_in_) == columns
    local = est.to_local()
    assert list(local.feature_names_in_) == columns
    ref = MLPClassifier(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=10,
                        random_state=0).fit(df, data.y)
    for a, b in zip(est.coefs_, ref.coefs_):
        assert_allclose(a, b, atol=1e-10)
    pred = est.predict(ddf)  # a dask Series, index kept
    assert isinstance(pred, dd.Series)
    assert_array_equal(pred.compute().to_numpy(), local.predict(df))
    with pytest.warns(UserWarning, match="feature names"):
        local.predict(data.X)


# --------------------------------------------------------------------------
# Input that is refused, and the parameters
# --------------------------------------------------------------------------


def test_bad_input_on_a_partition_raises_the_local_error(client, make_data):
    data = make_data("regression")
    X = data.X.copy()
    X[200, 3] = np.nan  # in the second partition
    Xd, yd, _ = _dask(X, data.y, (100, 140))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        DaskMLPRegressor(max_iter=2, client=client).fit(Xd, yd)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MLPRegressor(max_iter=2).fit(X, data.y)
    y_text = np.array(["a", "b"] * 120, dtype=object)
    Xd, yt, _ = _dask(data.X, y_text, (100, 140))
    with pytest.raises(ValueError):
        DaskMLPRegressor(max_iter=2, client=client).fit(Xd, yt)


def test_column_chunked_x_is_rechunked_and_mismatched_y_refused(client, make_data):
    data = make_data("binary")
    Xd = da.from_array(data.X, chunks=(120, 4))  # blocks of 4 columns
    yd = da.from_array(data.y, chunks=120)
    params = {"hidden_layer_sizes": (5,), "solver": "lbfgs", "max_iter": 5,
              "random_state": 0}
    got = DaskMLPClassifier(**params, client=client).fit(Xd, yd)
    ref = MLPClassifier(**params).fit(data.X, data.y)
    for a, b in zip(got.coefs_, ref.coefs_):
        assert_allclose(a, b, atol=1e-10)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        DaskMLPClassifier(**params, client=client).fit(Xd, yd[:-5])
    with pytest.raises(TypeError, match="dask collections"):
        DaskMLPClassifier(**params, client=client).fit(data.X, data.y)


def test_a_cluster_without_workers_is_refused_in_bounded_time(make_data,
                                                              local_dask_cluster,
                                                              monkeypatch):
    data = make_data("binary")
    Xd, yd, _ = _dask(data.X, data.y, (120, 120))
    monkeypatch.setattr(bdask, "_WAIT_FOR_WORKERS", 1)
    with local_dask_cluster(n_workers=0) as cluster, distributed.Client(cluster) as empty:
        start = time.monotonic()
        with pytest.raises(ValueError, match="no workers"):
            DaskMLPClassifier(max_iter=2, client=empty).fit(Xd, yd)
        assert time.monotonic() - start < 20


def test_parameters_clone_and_validation(client):
    est = DaskMLPClassifier(hidden_layer_sizes=(3,), client=client, local_epochs=2)
    params = est.get_params()
    assert params["client"] is client and params["local_epochs"] == 2
    assert set(params) == set(MLPClassifier().get_params()) | {"client", "local_epochs"}
    assert clone(est).get_params()["hidden_layer_sizes"] == (3,)
    Xd = da.zeros((10, 2), chunks=5)
    with pytest.raises(ValueError, match="local_epochs"):
        DaskMLPClassifier(local_epochs=0, client=client).fit(Xd, da.zeros(10, chunks=5))
    with pytest.raises(AttributeError, match="partial_fit"):
        est.partial_fit(Xd, da.zeros(10, chunks=5))
    assert not hasattr(est, "partial_fit")
    # pickling leaves the estimator as it was; clone keeps metadata requests
    pickle.dumps(est)
    assert est.client is client
    with blasprop_routing():
        requested = DaskMLPClassifier(client=client).set_fit_request(sample_weight=True)
        assert clone(requested).get_metadata_routing().fit.requests == {
            "sample_weight": True}


# --------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_a_worker_killed_mid_fit_lets_the_fit_finish_or_fail_in_bounded_time(
        local_dask_cluster, solver):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40_000, 20))
    y = (X[:, :3].sum(axis=1) > 0).astype(int)
    Xd, yd, _ = _dask(X, y, 10_000)
    outcome = {}
    with local_dask_cluster() as cluster, distributed.Client(cluster) as c:
        est = DaskMLPClassifier(hidden_layer_sizes=(32,), solver=solver, max_iter=60,
                                tol=0.0, random_state=0, client=c)

        def fit():
            try:
                est.fit(Xd, yd)
                outcome["fitted"] = True
            except Exception as exc:  # what matters: it returns
                outcome["error"] = exc

        thread = threading.Thread(target=fit, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not hasattr(est, "coefs_") and time.monotonic() < deadline:
            time.sleep(0.05)  # training has started: the weights exist
        time.sleep(0.5)
        pids = c.run(os.getpid)
        victim = sorted(pids.values())[0]
        assert thread.is_alive()  # killed in the middle of the fit
        os.kill(victim, signal.SIGKILL)
        thread.join(timeout=180)
        assert not thread.is_alive(), "the fit hung after a worker was killed"
        assert victim not in c.run(os.getpid).values()
    if "fitted" in outcome:
        assert est.n_iter_ > 0 and est.score(X, y) > 0.9
    else:  # a clear error from Dask (e.g. KilledWorker), not a hang
        assert isinstance(outcome["error"], Exception), outcome


@pytest.mark.slow
def test_the_dask_mlp_example_runs():
    import pathlib
    import subprocess
    import sys

    example = pathlib.Path(__file__).parent.parent / "examples" / "dask_mlp.py"
    done = subprocess.run([sys.executable, str(example), "--rows", "20000"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "cluster: 2 workers" in out
    assert "lbfgs:" in out and "adam: 10 rounds" in out
    assert "loaded model predicts as the dask one: True" in out
    accuracy = float(out.split("lbfgs:")[1].split("test accuracy ")[1].split()[0])
    assert accuracy > 0.9


def test_a_partition_task_takes_read_only_parameters():
    """Arrays a worker deserialises may be read-only: the objective's task
    must take them as they come."""
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(50, 3)), rng.normal(size=50)
    est = MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=1).fit(X, y)
    net = est._network(50, np.float64)
    params = net.pack(est.coefs_, est.intercepts_, np.float64)
    params.flags.writeable = False
    part = bdask._Part(X, y.reshape(-1, 1).copy(), np.empty(0))
    loss, weight, grads = bdask._partition_sums(part, est, [3, 4, 1], params)
    assert weight == 50 and np.isfinite(loss) and np.all(np.isfinite(grads))
