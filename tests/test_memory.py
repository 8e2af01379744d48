"""Memory: fit and predict read X where it is and never copy it, and float32
stays float32.

Allocations are traced with ``tracemalloc`` (numpy reports its array buffers to
it; the pages of a memory-mapped file are not allocations). A copy of X, even
of its training part or converted to another dtype or index type, would show
as a traced peak near X's size or larger; what blasprop may allocate is
bounded by a quarter of X's size: a few index arrays of one entry per row and
buffers for a chunk of rows.
"""

import gc
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.neural_network as sk_nn
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning

from blasprop import MLPClassifier, MLPRegressor

from ._reference import forward

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N_ROWS, N_FEATURES = 200_000, 100  # float32: 76 MiB
MAX_FRACTION = 0.25  # of X's bytes


def _write_memmap(path, dtype, n_rows, n_features, seed):
    rng = np.random.RandomState(seed)
    mm = np.memmap(path, dtype=dtype, mode="w+", shape=(n_rows, n_features))
    for start in range(0, n_rows, 20_000):
        stop = min(start + 20_000, n_rows)
        mm[start:stop] = rng.standard_normal((stop - start, n_features))
    mm.flush()
    del mm
    return np.memmap(path, dtype=dtype, mode="r", shape=(n_rows, n_features))


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A read-only float32 memmap and targets computed from it chunk by chunk."""
    X = _write_memmap(tmp_path_factory.mktemp("mem") / "X32.dat", np.float32,
                      N_ROWS, N_FEATURES, 0)
    assert not X.flags.writeable
    w = np.random.RandomState(1).standard_normal(N_FEATURES).astype(np.float32)
    y = np.concatenate([X[s:s + 50_000] @ w for s in range(0, N_ROWS, 50_000)])
    y /= np.sqrt(N_FEATURES)
    return X, y.astype(np.float32)


def _nbytes(X):
    if sp.issparse(X):
        return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    return X.nbytes


def traced_peak(fn):
    """(result of fn(), peak bytes traced while it ran)."""
    gc.collect()
    tracemalloc.start()
    try:
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


def _assert_small(peak, X, what):
    assert peak < MAX_FRACTION * _nbytes(X), (
        f"{what}: {peak / 2**20:.1f} MiB traced, X is {_nbytes(X) / 2**20:.1f} MiB "
        f"({peak / _nbytes(X):.0%})"
    )


def _targets(kind, y):
    if kind == "binary":
        return (y > 0).astype(np.int64)
    if kind == "multiclass":
        return np.digitize(y, [-0.5, 0.5])
    return y


FITS = {
    # name: (estimator, target kind)
    "regressor-adam": (lambda: MLPRegressor(hidden_layer_sizes=(16,), max_iter=1,
                                            random_state=0), "regression"),
    "regressor-sgd-early-stopping": (
        lambda: MLPRegressor(hidden_layer_sizes=(16,), solver="sgd", max_iter=1,
                             early_stopping=True, random_state=0), "regression"),
    "regressor-lbfgs": (lambda: MLPRegressor(hidden_layer_sizes=(16,), solver="lbfgs",
                                             max_iter=1, max_fun=3, random_state=0),
                        "regression"),
    "classifier-binary-adam-dropout": (
        lambda: MLPClassifier((16, 8), max_iter=1, dropout=0.1, random_state=0),
        "binary"),
    "classifier-multiclass-sgd-no-shuffle": (
        lambda: MLPClassifier((16,), solver="sgd", max_iter=1, shuffle=False,
                              random_state=0), "multiclass"),
}


@pytest.fixture(scope="module")
def fitted(big):
    """Every estimator of FITS fitted on the memmap, with its traced peak."""
    X, y = big
    out = {}
    for name, (make, kind) in FITS.items():
        est, peak = traced_peak(lambda make=make, kind=kind: make().fit(X, _targets(kind, y)))
        out[name] = (est, peak)
    return out


@pytest.mark.parametrize("name", list(FITS))
def test_fit_on_read_only_memmap_does_not_copy_X(name, big, fitted):
    X, _ = big
    est, peak = fitted[name]
    _assert_small(peak, X, f"fit {name}")
    assert all(a.dtype == np.float32 for a in est.coefs_ + est.intercepts_)
    assert np.isfinite(est.loss_)


@pytest.mark.parametrize("name", list(FITS))
def test_predict_on_read_only_memmap_does_not_copy_X(name, big, fitted):
    X, _ = big
    est, _ = fitted[name]
    methods = ["predict"] + (["predict_proba"] if hasattr(est, "predict_proba") else [])
    for method in methods:
        out, peak = traced_peak(lambda method=method: getattr(est, method)(X))
        _assert_small(peak, X, f"{method} {name}")
        assert out.shape[0] == N_ROWS
        if method == "predict_proba" or isinstance(est, MLPRegressor):
            assert out.dtype == np.float32
    # the values are right: a float64 numpy forward pass on a slice
    head = np.asarray(X[:500], dtype=np.float64)
    expected = forward(est, head)
    got = (est.predict_proba(X[:500]) if hasattr(est, "predict_proba")
           else est.predict(X[:500]).reshape(-1, 1))
    if got.shape[1] == 2 and expected.shape[1] == 1:
        got = got[:, 1:]
    assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_float64_X_on_float32_model_casts_the_weights_not_X(tmp_path, big):
    X32, y = big
    model = MLPRegressor(hidden_layer_sizes=(16,), max_iter=3, random_state=0)
    model.fit(X32[:4000, :50], y[:4000])
    assert model.coefs_[0].dtype == np.float32
    X64 = _write_memmap(tmp_path / "X64.dat", np.float64, N_ROWS, 50, 2)
    out, peak = traced_peak(lambda: model.predict(X64))
    _assert_small(peak, X64, "float64 predict on a float32 model")
    # computed in float64 from X64 and the (exactly cast) float32 weights, as
    # numpy does; a float32 copy of X would be off by ~1e-7 relative
    assert out.dtype == np.float64
    head = np.asarray(X64[:2000])
    assert_allclose(out[:2000], forward(model, head).ravel(), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------
# sparse input
# --------------------------------------------------------------------------


def _sparse(n_rows=100_000, n_features=4000, per_row=64, seed=0):
    """CSR float32 with ``per_row`` sorted entries per row (scipy's int32
    indices), built without a dense intermediate."""
    rng = np.random.RandomState(seed)
    block = n_features // per_row
    indices = (rng.randint(0, block, size=(n_rows, per_row))
               + np.arange(per_row) * block).ravel().astype(np.int32)
    data = rng.standard_normal(n_rows * per_row).astype(np.float32)
    indptr = np.arange(0, n_rows * per_row + 1, per_row, dtype=np.int32)
    X = sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_features))
    y = np.asarray(X[:, :per_row * 4].sum(axis=1)).ravel().astype(np.float32)
    return X, y


@pytest.fixture(scope="module")
def sparse_data():
    return _sparse()


def _as(X, layout):
    if layout == "csr-int32":
        assert X.indices.dtype == np.int32  # scipy's default
        return X
    if layout == "csr-int64":
        X = X.copy()
        X.indices = X.indices.astype(np.int64)
        X.indptr = X.indptr.astype(np.int64)
        return X
    return X.tocsc()


@pytest.mark.parametrize("layout", ["csr-int32", "csr-int64", "csc"])
def test_sparse_fit_and_predict_do_not_copy_X(layout, sparse_data):
    X, y = sparse_data
    X = _as(X, layout)
    # CSR is read in place. CSC is converted to CSR once per fit / predict
    # (documented: batches need row access); that is one sparse copy of X,
    # never a densified one, and nothing more.
    limit = MAX_FRACTION if layout != "csc" else 1 + MAX_FRACTION
    est, peak = traced_peak(
        lambda: MLPRegressor(hidden_layer_sizes=(16,), max_iter=1, random_state=0).fit(X, y)
    )
    assert peak < limit * _nbytes(X), f"fit {layout}: {peak / _nbytes(X):.0%} of X"
    assert est.coefs_[0].dtype == np.float32
    out, peak = traced_peak(lambda: est.predict(X))
    assert peak < limit * _nbytes(X), f"predict {layout}: {peak / _nbytes(X):.0%} of X"
    assert out.dtype == np.float32
    head = X[:300].toarray()
    assert_allclose(out[:300], forward(est, head).ravel(), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------
# float32 stays float32; dtypes of the outputs as scikit-learn's
# --------------------------------------------------------------------------


def _small(task, dtype, sparse):
    rng = np.random.RandomState(0)
    X = rng.standard_normal((120, 6))
    X[rng.uniform(size=X.shape) < 0.5] = 0.0
    X = X.astype(dtype)
    if sparse:
        X = sp.csr_matrix(X)
    y = {"binary": np.arange(120) % 2, "multiclass": np.arange(120) % 3,
         "multilabel": rng.randint(2, size=(120, 3)),
         "regression": rng.standard_normal(120)}[task]
    return X, y


def _outputs(est, X):
    out = {"predict": est.predict(X)}
    if hasattr(est, "predict_proba"):
        out["predict_proba"] = est.predict_proba(X)
        out["predict_log_proba"] = est.predict_log_proba(X)
    return out


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel", "regression"])
def test_float32_input_gives_float32_model_and_outputs(task, solver, sparse):
    X, y = _small(task, np.float32, sparse)
    kw = dict(hidden_layer_sizes=(5,), solver=solver, max_iter=5, random_state=0)
    est = (MLPRegressor if task == "regression" else MLPClassifier)(**kw).fit(X, y)
    for a in est.coefs_ + est.intercepts_:
        assert a.dtype == np.float32
    ours = _outputs(est, X)
    for method, out in ours.items():
        if task == "regression" or method != "predict":  # predict gives labels
            assert out.dtype == np.float32, method
    if solver != "lbfgs":
        # scikit-learn's stochastic solvers keep float32 too: same output
        # dtypes (its lbfgs does not: the L-BFGS result comes back float64)
        ref = (sk_nn.MLPRegressor if task == "regression" else sk_nn.MLPClassifier)(**kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ref.fit(X, y)
        for method, out in _outputs(ref, X).items():
            assert ours[method].dtype == out.dtype, method
        est.partial_fit(X, y)
        assert all(a.dtype == np.float32 for a in est.coefs_ + est.intercepts_)
        assert _outputs(est, X)["predict"].dtype == ours["predict"].dtype


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("model_dtype,X_dtype", [
    (np.float32, np.float64), (np.float64, np.float32),
])
@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_mixed_dtype_prediction_as_sklearn(task, model_dtype, X_dtype, sparse):
    """A model fitted in one dtype predicting input of the other: the output
    dtype and values are scikit-learn's (numpy's promotion: float64 wins)."""
    X_fit, y = _small(task, model_dtype, sparse)
    X_pred, _ = _small(task, X_dtype, sparse)
    kw = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    method = "predict" if task == "regression" else "predict_proba"
    est = (MLPRegressor if task == "regression" else MLPClassifier)(**kw).fit(X_fit, y)
    ref = (sk_nn.MLPRegressor if task == "regression" else sk_nn.MLPClassifier)(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref.fit(X_fit, y)
    sk_out = getattr(ref, method)(X_pred)
    assert sk_out.dtype == np.float64  # float64 wins, as in numpy
    out = getattr(est, method)(X_pred)
    assert out.dtype == sk_out.dtype
    # computed in float64 from the model's weights, as numpy computes it
    expected = forward(est, X_pred.toarray() if sparse else X_pred)
    assert_allclose(out.reshape(expected.shape), expected, rtol=1e-12, atol=1e-12)
