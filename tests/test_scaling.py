"""Scaling out and out of core (docs/scaling.md).

Everything here is checked against the same computation run locally:

- dask-ml's ``Incremental`` (block-by-block ``partial_fit`` on a cluster) and
  ``ParallelPostFit`` (predict over the partitions of a dask array);
- ``GridSearchCV`` under joblib's "dask" backend, and under "ray" when ray is
  installed;
- pickles: about the size of the weights, identical predictions after the
  round trip, and a fitted model shipped to a worker process predicts there
  exactly as it does here;
- several models trained at once in threads (fit releases the GIL);
- training from a read-only ``np.memmap`` without copying X, and a
  ``partial_fit`` loop over chunks stored as .npy files.

The cluster is a ``distributed.LocalCluster`` of two single-threaded worker
*processes* on loopback, so models, data and optimizer state really cross a
process boundary (pickled) between tasks. It binds free ports only (no
dashboard), so a Dask dashboard already running on 8787 does not disturb it;
the fixture holds 8787 itself while the cluster runs to keep that true.

dask, distributed, dask-ml and ray are optional: the tests that need one skip
when it is missing, the others run.
"""

import errno
import importlib.util
import os
import pathlib
import pickle
import socket
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from threadpoolctl import threadpool_info, threadpool_limits

from blasprop import MLPClassifier, MLPRegressor

BLOCK = 100  # rows per dask block
N_BLOCKS = 4


def _classification(n=BLOCK * N_BLOCKS, n_features=10, labels=None):
    X, y = make_classification(
        n_samples=n,
        n_features=n_features,
        n_informative=6,
        n_classes=3,
        random_state=0,
    )
    if labels is not None:
        y = np.asarray(labels, dtype=object)[y]
    return X, y


def _regression(n=BLOCK * N_BLOCKS, n_features=10):
    X, y = make_regression(
        n_samples=n, n_features=n_features, n_informative=6, noise=5.0, random_state=0
    )
    return X, (y - y.mean()) / y.std()


def _weights(est):
    return est.coefs_ + est.intercepts_


def _assert_same_model(a, b, atol):
    wa, wb = _weights(a), _weights(b)
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        assert x.dtype == y.dtype
        assert_allclose(x, y, rtol=0, atol=atol)
    assert a.n_iter_ == b.n_iter_ and a.t_ == b.t_
    if hasattr(b, "loss_curve_"):  # stochastic solvers
        assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-12)


def _max_weight_difference(a, b):
    return max(np.abs(x - y).max() for x, y in zip(_weights(a), _weights(b)))


def _local_partial_fit_loop(est, X, y, order, **kwargs):
    for i in order:
        rows = slice(i * BLOCK, (i + 1) * BLOCK)
        est.partial_fit(X[rows], y[rows], **kwargs)
    return est


def _dask():
    """dask.array and dask-ml's wrappers, or skip the test."""
    da = pytest.importorskip("dask.array")
    wrappers = pytest.importorskip("dask_ml.wrappers")
    return da, wrappers.Incremental, wrappers.ParallelPostFit


def _task_stream(client):
    from distributed import get_task_stream  # importable: the client exists

    return get_task_stream(client)


DASK_DASHBOARD_PORT = 8787


@pytest.fixture(scope="module")
def dashboard_port_taken():
    """Port 8787 on 127.0.0.1 held by a plain socket for the whole module, as
    a Dask dashboard already running would hold it. True if this fixture
    holds it, False if another process already did."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", DASK_DASHBOARD_PORT))
        sock.listen()
        held = True
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            sock.close()
            raise
        held = False  # someone else has it: the situation to survive
    try:
        yield held
    finally:
        sock.close()


@pytest.fixture(scope="module")
def client(dashboard_port_taken, local_dask_cluster):
    distributed = pytest.importorskip("distributed")
    with local_dask_cluster() as cluster, distributed.Client(cluster) as c:
        yield c


def test_the_cluster_runs_while_the_dask_dashboard_port_is_taken(client, dashboard_port_taken):
    # 8787 really is taken while the cluster runs ...
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with probe, pytest.raises(OSError) as exc:
        probe.bind(("127.0.0.1", DASK_DASHBOARD_PORT))
    assert exc.value.errno == errno.EADDRINUSE
    # ... and the cluster did not need it: every server on loopback, on
    # another port
    info = client.scheduler_info()
    assert client.scheduler.address.startswith("tcp://127.0.0.1:")
    assert not client.scheduler.address.endswith(f":{DASK_DASHBOARD_PORT}")
    assert DASK_DASHBOARD_PORT not in info["services"].values()
    if client.dashboard_link:
        assert client.dashboard_link.startswith("http://127.0.0.1:")
    assert len(info["workers"]) == 2
    for address in info["workers"]:
        assert address.startswith("tcp://127.0.0.1:")
    assert client.submit(sum, [1, 2, 3], pure=False).result() == 6


# --------------------------------------------------------------------------
# dask-ml Incremental: partial_fit block by block on the cluster
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_incremental_classifier_equals_the_local_partial_fit_loop(client):
    da, Incremental, _ = _dask()
    X, y = _classification()
    classes = np.unique(y)
    est = MLPClassifier(
        hidden_layer_sizes=(16,), batch_size=32, learning_rate_init=0.01, random_state=0
    )
    inc = Incremental(est, shuffle_blocks=False)
    inc.fit(da.from_array(X, chunks=BLOCK), da.from_array(y, chunks=BLOCK), classes=classes)

    assert not hasattr(est, "coefs_")  # the wrapper trained a clone
    local = _local_partial_fit_loop(clone(est), X, y, range(N_BLOCKS), classes=classes)
    _assert_same_model(inc.estimator_, local, atol=1e-12)
    assert_array_equal(inc.estimator_.classes_, local.classes_)
    assert_array_equal(inc.predict(X), local.predict(X))

    # The comparison is sensitive: the same blocks in another order differ.
    reordered = _local_partial_fit_loop(
        clone(est), X, y, reversed(range(N_BLOCKS)), classes=classes
    )
    assert _max_weight_difference(reordered, local) > 1e-4

    # partial_fit on the wrapper continues from the trained model: Adam's
    # moments and step count travel with the pickled estimator between tasks.
    inc.partial_fit(da.from_array(X, chunks=BLOCK), da.from_array(y, chunks=BLOCK))
    local = _local_partial_fit_loop(local, X, y, range(N_BLOCKS))
    _assert_same_model(inc.estimator_, local, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_incremental_regressor_equals_the_local_partial_fit_loop(client, dtype):
    da, Incremental, _ = _dask()
    X, y = _regression()
    X, y = X.astype(dtype), y.astype(dtype)
    est = MLPRegressor(
        hidden_layer_sizes=(12, 6),
        solver="sgd",
        momentum=0.9,
        batch_size=25,
        learning_rate_init=0.01,
        random_state=1,
    )
    inc = Incremental(est, shuffle_blocks=False)
    inc.fit(da.from_array(X, chunks=(BLOCK, -1)), da.from_array(y, chunks=BLOCK))

    local = _local_partial_fit_loop(clone(est), X, y, range(N_BLOCKS))
    assert inc.estimator_.coefs_[0].dtype == dtype  # float32 stays float32
    _assert_same_model(inc.estimator_, local, atol=1e-12 if dtype == np.float64 else 1e-6)
    assert _max_weight_difference(
        _local_partial_fit_loop(clone(est), X, y, [1, 0, 2, 3]), local
    ) > 1e-4


# --------------------------------------------------------------------------
# dask-ml ParallelPostFit: predict over the partitions of a dask array
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_parallel_post_fit_classifier_predicts_like_local(client, dtype):
    da, _, ParallelPostFit = _dask()
    X, y = _classification(n=1000, labels=["ant", "bee", "cat"])
    X = X.astype(dtype)
    est = MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, random_state=0)
    local = clone(est).fit(X, y)
    ppf = ParallelPostFit(est).fit(X, y)  # numpy in: fits ``est`` here, in place
    _assert_same_model(ppf.estimator, local, atol=0)

    dX = da.from_array(X, chunks=(137, -1))  # 8 partitions, the last one short
    assert dX.numblocks[0] == 8
    with _task_stream(client) as tasks:
        pred = ppf.predict(dX).compute()
        proba = ppf.predict_proba(dX).compute()
    assert len(tasks.data) >= 16  # every partition ran on the cluster
    # exactly what the same model predicts here for the same partitions
    parts = [slice(lo, lo + 137) for lo in range(0, len(X), 137)]
    assert_array_equal(pred, np.concatenate([local.predict(X[p]) for p in parts]))
    assert proba.dtype == dtype
    assert_array_equal(proba, np.vstack([local.predict_proba(X[p]) for p in parts]))
    # and what it predicts for all of X at once, up to rounding (a product's
    # rounding may depend on how many rows it has)
    assert_array_equal(pred, local.predict(X))
    tol = 1e-13 if dtype == np.float64 else 1e-5
    assert_allclose(proba, local.predict_proba(X), rtol=tol, atol=tol)
    # not a constant model: the comparison means something
    assert len(np.unique(pred)) == 3


def test_parallel_post_fit_wraps_a_model_fitted_elsewhere(client):
    da, _, ParallelPostFit = _dask()
    X, y = _regression(n=900)
    local = MLPRegressor(hidden_layer_sizes=(16,), max_iter=30, random_state=0)
    local.fit(X, y)
    ppf = ParallelPostFit(pickle.loads(pickle.dumps(local)))  # no fit needed
    pred = ppf.predict(da.from_array(X, chunks=(200, -1))).compute()
    parts = [slice(lo, lo + 200) for lo in range(0, len(X), 200)]
    assert_array_equal(pred, np.concatenate([local.predict(X[p]) for p in parts]))
    assert_allclose(pred, local.predict(X), rtol=1e-13, atol=1e-13)
    assert np.std(pred) > 0.1


# --------------------------------------------------------------------------
# Hyper-parameter search: joblib backends
# --------------------------------------------------------------------------


def _grid_search():
    return GridSearchCV(
        MLPRegressor(max_iter=40, learning_rate_init=0.01, random_state=0),
        {"hidden_layer_sizes": [(4,), (16,)], "alpha": [1e-4, 3.0]},
        cv=3,
    )


def _assert_same_search(remote, local):
    scores = local.cv_results_["mean_test_score"]
    assert np.ptp(scores) > 0.01  # the candidates differ, so a mix-up would show
    assert_allclose(remote.cv_results_["mean_test_score"], scores, rtol=1e-12, atol=0)
    assert_allclose(
        remote.cv_results_["std_test_score"], local.cv_results_["std_test_score"],
        rtol=1e-10, atol=1e-15,
    )
    assert remote.best_params_ == local.best_params_
    _assert_same_model(remote.best_estimator_, local.best_estimator_, atol=1e-12)


def test_grid_search_on_the_dask_joblib_backend_equals_the_default(client):
    X, y = _regression(n=150, n_features=6)
    local = _grid_search().fit(X, y)
    with _task_stream(client) as tasks, joblib.parallel_backend("dask"):
        remote = _grid_search().fit(X, y)
    assert len(tasks.data) > 0  # the fits ran on the cluster
    _assert_same_search(remote, local)


@pytest.mark.slow
def test_grid_search_on_the_ray_joblib_backend_equals_the_default():
    ray = pytest.importorskip("ray")
    from ray.util.joblib import register_ray

    X, y = _regression(n=150, n_features=6)
    local = _grid_search().fit(X, y)
    ray.init(
        address="local",  # a new local instance, never an existing cluster
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",  # loopback only; its ports are free ones
    )
    try:
        register_ray()
        with joblib.parallel_backend("ray"):
            remote = _grid_search().fit(X, y)
    finally:
        ray.shutdown()
    _assert_same_search(remote, local)


# --------------------------------------------------------------------------
# Pickles: small, exact, and safe to ship to workers
# --------------------------------------------------------------------------

# Arrays of the size of the weights that a stochastic solver keeps so that
# partial_fit / warm_start continue exactly after unpickling (tests/test_api.py
# checks that they do): SGD's velocities, Adam's two moment vectors.
_OPTIMIZER_STATE = {"lbfgs": 0, "sgd": 1, "adam": 2}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("solver", ["lbfgs", "sgd", "adam"])
def test_pickle_is_about_the_size_of_the_weights(solver, dtype):
    # a [50, 100, 100, 10] network
    X, y = make_classification(
        n_samples=300, n_features=50, n_informative=20, n_classes=10, random_state=0
    )
    X = X.astype(dtype)
    est = MLPClassifier(
        hidden_layer_sizes=(100, 100), solver=solver, max_iter=5, random_state=0
    ).fit(X, y)
    assert [est.coefs_[0].shape[0]] + [c.shape[1] for c in est.coefs_] == [50, 100, 100, 10]
    weights = sum(a.nbytes for a in _weights(est))
    assert weights == (50 * 100 + 100 * 100 + 100 * 10 + 210) * np.dtype(dtype).itemsize

    blob = pickle.dumps(est)
    # the weights once, plus the optimizer's state (kept so that partial_fit
    # continues exactly after unpickling); no stale copy of the initial
    # weights without early stopping
    bound = (1 + _OPTIMIZER_STATE[solver]) * weights + 8192
    assert len(blob) < bound, (len(blob), weights, len(blob) / weights)
    # and no larger than scikit-learn's pickle of the same model
    shared = SkMLPClassifier().get_params().keys()
    reference = SkMLPClassifier(**{k: v for k, v in est.get_params().items()
                                   if k in shared}).fit(X, y)
    assert len(blob) <= len(pickle.dumps(reference)), (len(blob), len(pickle.dumps(reference)))

    loaded = pickle.loads(blob)
    assert loaded.coefs_[0].dtype == dtype
    assert_array_equal(loaded.predict(X), est.predict(X))
    assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))
    if solver != "lbfgs":
        # training continues after unpickling exactly as without the pickle
        again = pickle.loads(blob)
        for model in (est, again):
            model.set_params(warm_start=True, max_iter=3)
            model.fit(X, y)
        assert_array_equal(again.coefs_[0], est.coefs_[0])


def test_fitted_model_ships_to_a_worker_process_and_predicts_there_like_here(client):
    assert client.submit(os.getpid, pure=False).result() != os.getpid()
    X, y = _classification(n=500)
    for dtype in (np.float64, np.float32):
        Xd = X.astype(dtype)
        est = MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=40, random_state=0)
        est.fit(Xd, y)
        assert_array_equal(client.submit(est.predict, Xd).result(), est.predict(Xd))
        proba = client.submit(est.predict_proba, Xd).result()
        assert proba.dtype == dtype
        assert_array_equal(proba, est.predict_proba(Xd))
        # and an unfitted one trains there into the same model as here
        remote = client.submit(clone(est).fit, Xd, y).result()
        _assert_same_model(remote, est, atol=1e-12 if dtype == np.float64 else 1e-6)


# --------------------------------------------------------------------------
# One machine: threads
# --------------------------------------------------------------------------


def test_models_trained_in_parallel_threads_equal_sequential_fits():
    X, y = _classification(n=2000, n_features=20)
    X32 = X.astype(np.float32)
    configs = [
        (MLPClassifier(hidden_layer_sizes=(32,), max_iter=15, random_state=0), X),
        (MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=15, random_state=1), X32),
        (MLPClassifier(solver="sgd", max_iter=15, random_state=2), X),
        (MLPClassifier(solver="lbfgs", max_iter=30, random_state=3), X),
        (MLPClassifier(early_stopping=True, max_iter=15, random_state=4), X),
        (MLPClassifier(dropout=0.2, max_iter=15, random_state=5), X32),
    ]
    sequential = [clone(est).fit(data, y) for est, data in configs]
    with ThreadPoolExecutor(3) as pool:  # all share the same X arrays
        threaded = list(pool.map(lambda c: clone(c[0]).fit(c[1], y), configs))
    for (est, _), a, b in zip(configs, threaded, sequential):
        # The stochastic solvers run entirely in blasprop's kernels: equal to
        # the bit. L-BFGS also runs SciPy's L-BFGS-B, whose level-1 BLAS sums
        # depend on OpenBLAS's thread count, which a limit set in one Python
        # thread does not fix for another: equal up to summation order.
        _assert_same_model(a, b, atol=0 if est.solver != "lbfgs" else 1e-10)


def _blas_thread_counts():
    return {
        info["filepath"]: info["num_threads"]
        for info in threadpool_info()
        if info["user_api"] == "blas"
    }


def _set_blas_threads(n):
    """Set the process's BLAS threads without keeping control of them.

    threadpoolctl lets one Python thread at a time own OpenBLAS's process-wide
    setting while it holds a limit; setting it from a thread that then ends
    leaves no owner behind, as at the start of a program.
    """
    t = threading.Thread(target=threadpool_limits, kwargs=dict(limits=n, user_api="blas"))
    t.start()
    t.join()


def test_overlapping_fits_in_threads_leave_the_blas_thread_count_as_it_was():
    # Two small fits (one BLAS thread by blasprop's policy) overlap in a fixed
    # order, driven by their epoch callbacks: B starts while A runs, A ends
    # while B runs. Afterwards the process must have its BLAS threads back.
    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    if any(i.get("threading_layer") == "openmp" for i in blas):
        pytest.skip("an OpenMP-threaded BLAS takes limits per thread: no shared count")
    X, y = _classification(n=400)
    a_running, b_running, a_done = (threading.Event() for _ in range(3))

    def wait(event):
        assert event.wait(60), "the other fit did not get there"

    def once(action):
        calls = []

        def callback(est, info):
            if not calls:
                calls.append(info)
                action()
            return False

        return callback

    small = dict(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    fit_a = MLPClassifier(
        callbacks=[once(lambda: (a_running.set(), wait(b_running)))], **small
    )
    fit_b = MLPClassifier(
        callbacks=[once(lambda: (b_running.set(), wait(a_done)))], **small
    )

    def run_a():
        fit_a.fit(X, y)
        a_done.set()

    def run_b():
        wait(a_running)
        fit_b.fit(X, y)

    original = _blas_thread_counts()
    assert original
    _set_blas_threads(2)
    try:
        before = _blas_thread_counts()
        assert set(before.values()) == {2}
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(run_a), pool.submit(run_b)]
            for f in futures:
                f.result()
        after = _blas_thread_counts()
    finally:
        _set_blas_threads(max(original.values()))
    assert fit_a.n_iter_ == fit_b.n_iter_ == 3
    assert after == before


# --------------------------------------------------------------------------
# Out of core
# --------------------------------------------------------------------------


@pytest.mark.parametrize("early_stopping", [False, True])
def test_fit_on_a_read_only_memmap_equals_in_memory_and_never_copies_x(
    tmp_path, early_stopping
):
    n, n_features = 10_000, 512  # 20 MB of float32
    rng = np.random.RandomState(0)
    X = rng.standard_normal((n, n_features)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(np.int64)
    np.save(tmp_path / "X.npy", X)
    X_mm = np.load(tmp_path / "X.npy", mmap_mode="r")
    assert isinstance(X_mm, np.memmap) and not X_mm.flags.writeable

    params = dict(
        hidden_layer_sizes=(16,), max_iter=2, batch_size=256,
        early_stopping=early_stopping, random_state=0,
    )
    in_memory = MLPClassifier(**params).fit(X, y)
    tracemalloc.start()
    try:
        from_disk = MLPClassifier(**params).fit(X_mm, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # numpy reports its allocations to tracemalloc: a copy of X would be 20 MB
    assert peak < X.nbytes / 2, (peak, X.nbytes)
    assert from_disk.coefs_[0].dtype == np.float32
    _assert_same_model(from_disk, in_memory, atol=0)
    assert_array_equal(from_disk.predict_proba(X_mm), in_memory.predict_proba(X))


def test_partial_fit_over_npy_chunks_on_disk_equals_the_in_memory_loop(tmp_path):
    X, y = _regression(n=1200, n_features=8)
    X = X.astype(np.float32)
    bounds = [0, 300, 700, 1000, 1200]  # chunks of different sizes
    for k, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        np.save(tmp_path / f"X_{k}.npy", X[lo:hi])
        np.save(tmp_path / f"y_{k}.npy", y[lo:hi])

    est = MLPRegressor(hidden_layer_sizes=(16,), batch_size=64, random_state=0)
    from_disk, in_memory = clone(est), clone(est)
    for _ in range(2):  # two epochs
        for k, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
            from_disk.partial_fit(
                np.load(tmp_path / f"X_{k}.npy", mmap_mode="r"),
                np.load(tmp_path / f"y_{k}.npy"),
            )
            in_memory.partial_fit(X[lo:hi].copy(), y[lo:hi])
    assert from_disk.coefs_[0].dtype == np.float32
    _assert_same_model(from_disk, in_memory, atol=0)
    assert from_disk.t_ == 2 * 1200


# --------------------------------------------------------------------------
# The examples that docs/scaling.md points to, on small data
# --------------------------------------------------------------------------

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _load_example(name):
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dask_example_runs_on_the_cluster(client, monkeypatch, capsys):
    _dask()  # the example imports dask.array and dask_ml at its top
    example = _load_example("scaling_dask")
    monkeypatch.setattr(example, "BLOCK", 400)  # 8 blocks of 400 rows
    X, y, dX, dy = example.data()
    assert X.dtype == np.float32 and dX.numblocks[0] == 8
    fitted, diff = example.incremental(X, y, dX, dy, epochs=2)
    assert diff <= 1e-6 and fitted.coefs_[0].dtype == np.float32
    assert example.parallel_post_fit(fitted, X, dX)
    assert example.grid_search(X, y)
    assert example.ship_to_a_worker(client, fitted, X)
    assert "Incremental: 2 passes over 8 blocks" in capsys.readouterr().out


def test_the_out_of_core_example_runs(tmp_path, monkeypatch):
    example = _load_example("out_of_core")
    monkeypatch.setattr(example, "CHUNK_ROWS", 5_000)
    x_path, y_path, chunks = example.write_data(tmp_path, 20_000, 16)
    assert len(chunks) == 4
    X = np.load(x_path, mmap_mode="r")
    assert X.shape == (20_000, 16) and X.dtype == np.float32
    assert_array_equal(np.concatenate([np.load(c[0]) for c in chunks]), X)
    clf, _ = example.fit_from_memmap(x_path, y_path)
    assert clf.coefs_[0].dtype == np.float32 and clf.best_validation_score_ > 0.8
    best, score = example.fit_from_chunks(chunks)
    assert score > 0.8 and score == best.score(np.load(chunks[-1][0]), np.load(chunks[-1][1]))
