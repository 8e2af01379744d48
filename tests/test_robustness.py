"""Robustness: random architectures and inputs, bad input of every kind,
absurd sizes and divergence.

* Property-based tests (hypothesis, deterministic: ``derandomize=True``) draw
  an architecture, activation(s), solver, task, dtype, batch size and data.
  Fitting must never crash, the model must not depend on how X is stored (C,
  Fortran, strided, negative strides, read-only, a read-only ``np.memmap``
  file, CSR, CSC), its predictions must match a plain-numpy forward pass, it
  must match scikit-learn wherever scikit-learn supports the configuration,
  and ``check_gradients`` must agree with finite differences.
* Bad input: every scenario runs on scikit-learn and on blasprop in the same
  test; the exception type (and message) must be the same, or both must
  succeed with the same model.
* Absurd sizes run in a subprocess under a 2 GiB address-space limit: a clean
  MemoryError or ValueError, the same as scikit-learn's, nothing large
  allocated first, and never a death by signal.
* Divergence: scikit-learn's "non-finite parameter weights" ValueError, with
  the fitted attributes left consistent.
"""

import itertools
import json
import os
import re
import resource
import signal
import subprocess
import sys
import textwrap
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.neural_network as sk_nn
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import InvalidParameterError

from blasprop import MLPClassifier, MLPRegressor, check_gradients

from ._reference import HIDDEN, forward

SK = SimpleNamespace(MLPClassifier=sk_nn.MLPClassifier, MLPRegressor=sk_nn.MLPRegressor)
BP = SimpleNamespace(MLPClassifier=MLPClassifier, MLPRegressor=MLPRegressor)

ACTIVATIONS = sorted(HIDDEN)  # identity logistic tanh relu leaky_relu elu gelu silu softplus
SK_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
SOLVERS = ("sgd", "adam", "adamw", "lbfgs")
TASKS = (
    "binary", "multiclass", "multilabel", "squared_error", "squared_error_multi",
    "poisson", "huber", "absolute_error",
)
# model must not depend on the layout of X
LAYOUT_TOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}
# blasprop vs scikit-learn (summation order differs), as in test_parity.py
SK_TOL = dict(rtol=1e-6, atol=1e-9)
# blasprop's predictions vs the float64 numpy forward pass of the same weights
FORWARD_TOL = {
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
    np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5),
}
GRAD_TOL = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 2e-3}

# No shrinking: a failure is reported as first found (derandomized, so the
# same every run) instead of spending a minute looking for a smaller one.
PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_BATCH_WARNING = "Got `batch_size` less than 1 or larger than sample size"


# --------------------------------------------------------------------------
# random configurations
# --------------------------------------------------------------------------


@st.composite
def configs(draw, solvers=SOLVERS, tasks=TASKS, activations=ACTIVATIONS,
            dtypes=(np.float64, np.float32), max_rows=40):
    n_hidden = draw(st.integers(1, 3))
    sizes = tuple(draw(st.lists(st.integers(1, 8), min_size=n_hidden,
                                max_size=n_hidden)))
    if len(activations) > 4 and draw(st.booleans()):
        activation = draw(st.lists(st.sampled_from(activations), min_size=n_hidden,
                                   max_size=n_hidden))
    else:
        activation = draw(st.sampled_from(activations))
    solver = draw(st.sampled_from(solvers))
    task = draw(st.sampled_from(tasks))
    n = draw(st.integers(1, max_rows))
    batch_size = draw(st.one_of(
        st.just("auto"), st.just(1), st.integers(1, max_rows),
        st.integers(n + 1, n + 50),
    ))
    return dict(
        sizes=sizes, activation=activation, solver=solver, task=task,
        dtype=np.dtype(draw(st.sampled_from(dtypes))), n=n,
        n_features=draw(st.integers(1, 6)),
        batch_size=batch_size,
        shuffle=draw(st.booleans()),
        zeros=draw(st.sampled_from([0.0, 0.5, 0.9])),
        alpha=draw(st.sampled_from([0.0, 1e-4, 0.3])),
        dropout=draw(st.sampled_from([0.0, 0.0, 0.3])) if solver != "lbfgs" else 0.0,
        seed=draw(st.integers(0, 2**16)),
    )


def _data(cfg):
    rng = np.random.RandomState(cfg["seed"])
    n, f = cfg["n"], cfg["n_features"]
    X = rng.standard_normal((n, f))
    X[rng.uniform(size=X.shape) < cfg["zeros"]] = 0.0
    X = X.astype(cfg["dtype"])
    task = cfg["task"]
    if task == "binary":
        y = rng.randint(2, size=n)
    elif task == "multiclass":
        y = rng.randint(4, size=n)
    elif task == "multilabel":
        y = rng.randint(2, size=(n, 3))
    elif task == "poisson":
        y = rng.poisson(2.0, size=n).astype(float)
    elif task == "squared_error_multi":
        y = rng.standard_normal((n, 2))
    else:
        y = rng.standard_normal(n)
    return X, y


def _estimator(ns, cfg, **extra):
    task = cfg["task"]
    params = dict(
        hidden_layer_sizes=cfg["sizes"], activation=cfg["activation"],
        solver=cfg["solver"], batch_size=cfg["batch_size"], shuffle=cfg["shuffle"],
        alpha=cfg["alpha"], max_iter=3, random_state=0, learning_rate_init=0.01,
    )
    if ns is BP:
        params["dropout"] = cfg["dropout"]
    params.update(extra)
    if task in ("binary", "multiclass", "multilabel"):
        return ns.MLPClassifier(**params)
    loss = "squared_error" if task == "squared_error_multi" else task
    return ns.MLPRegressor(loss=loss, **params)


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=re.escape(_BATCH_WARNING))
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def _flat(est):
    return np.concatenate([a.ravel() for a in est.coefs_ + est.intercepts_])


def _output(est, X):
    """The network's output layer as the public API returns it."""
    if hasattr(est, "predict_proba"):
        proba = est.predict_proba(X)
        if est.n_outputs_ == 1:  # binary: predict_proba adds the 1 - p column
            return proba[:, 1:]
        return proba
    out = est.predict(X)
    return out.reshape(out.shape[0], -1)


_memmap_counter = itertools.count()


def _csr_int64(X):
    M = sp.csr_matrix(X)
    M.indices = M.indices.astype(np.int64)
    M.indptr = M.indptr.astype(np.int64)
    return M


def _read_only_sparse(M):
    """As a sparse matrix memory-mapped by joblib.load(mmap_mode="r") is."""
    for a in (M.data, M.indices, M.indptr):
        a.flags.writeable = False
    return M


def _csr_unsorted_with_zeros(X):
    """Every entry stored (zeros too), each row's entries in reverse order."""
    n, f = X.shape
    indptr = np.arange(0, n * f + 1, f)
    indices = np.tile(np.arange(f)[::-1], n)
    data = X[:, ::-1].ravel()
    M = sp.csr_matrix((data, indices, indptr), shape=X.shape)
    assert (f == 1 or not M.has_sorted_indices) and M.nnz == X.size
    return M


def _layouts(X, directory):
    """The same values stored in every way blasprop reads."""
    n, f = X.shape
    big = np.full((2 * n + 1, 3 * f + 2), np.nan, dtype=X.dtype)
    big[1::2, 2::3] = X
    strided = big[1::2, 2::3]
    rev = np.ascontiguousarray(X[::-1, ::-1])[::-1, ::-1]
    readonly = X.copy()
    readonly.flags.writeable = False
    path = os.path.join(directory, f"X{next(_memmap_counter)}.dat")
    mm = np.memmap(path, dtype=X.dtype, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    del mm
    layouts = {
        "C": np.ascontiguousarray(X),
        "F": np.asfortranarray(X),
        "strided": strided,
        "negative-strides": rev,
        "read-only": readonly,
        "memmap": np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape),
        "csr": sp.csr_matrix(X),
        "csc": sp.csc_matrix(X),
        "csr_array": sp.csr_array(X),
        "csr-int64-indices": _csr_int64(X),
        "csr-int64-read-only": _read_only_sparse(_csr_int64(X)),
        "csc-read-only": _read_only_sparse(sp.csc_matrix(X)),
        "csr-unsorted-explicit-zeros": _csr_unsorted_with_zeros(X),
    }
    assert strided.strides == (2 * big.strides[0], 3 * X.itemsize)
    assert n == 1 or rev.strides[0] < 0
    return layouts


@pytest.fixture(scope="module")
def memmap_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("memmaps"))


@pytest.mark.slow
@PROPERTY_SETTINGS
@given(cfg=configs())
def test_model_does_not_depend_on_memory_layout(cfg, memmap_dir):
    X, y = _data(cfg)
    tol = LAYOUT_TOL[cfg["dtype"]]
    ref = ref_out = None
    for name, Xl in _layouts(X, memmap_dir).items():
        est = _fit(_estimator(BP, cfg), Xl, y)
        assert all(c.dtype == cfg["dtype"] for c in est.coefs_ + est.intercepts_), name
        params = _flat(est)
        assert np.isfinite(params).all(), name
        out = _output(est, Xl)
        assert out.dtype == cfg["dtype"], name
        if ref is None:
            ref, ref_out = params, out
            # independent check of the fitted model's outputs: numpy forward pass
            assert_allclose(out, forward(est, X), **FORWARD_TOL[cfg["dtype"]])
            continue
        scale = max(1.0, float(np.max(np.abs(ref))))
        assert np.max(np.abs(params - ref)) <= tol * scale, name
        out_scale = max(1.0, float(np.max(np.abs(ref_out))))
        assert np.max(np.abs(out - ref_out)) <= tol * out_scale, name


@PROPERTY_SETTINGS
@given(cfg=configs(solvers=("sgd", "adam", "lbfgs"), activations=SK_ACTIVATIONS,
                   tasks=("binary", "multiclass", "multilabel", "squared_error",
                          "poisson"),
                   dtypes=(np.float64,)))
def test_random_configurations_match_sklearn(cfg, memmap_dir):
    X, y = _data(cfg)
    cfg = dict(cfg, dropout=0.0)
    sk = _fit(_estimator(SK, cfg), X, y)
    for name in ("C", "csr"):
        Xl = sp.csr_matrix(X) if name == "csr" else X
        bp = _fit(_estimator(BP, cfg), Xl, y)
        assert bp.n_iter_ == sk.n_iter_
        for a, b in zip(bp.coefs_ + bp.intercepts_, sk.coefs_ + sk.intercepts_):
            assert_allclose(a, b, **SK_TOL, err_msg=name)
        assert_allclose(_output(bp, Xl), _output(sk, X), **SK_TOL, err_msg=name)


KINKED = ("relu", "leaky_relu")
HUBER_DELTA = 0.5


def _distance_to_kinks(est, X, y, task):
    """How close the fitted network is to a point where the loss is not
    differentiable (a relu / leaky_relu pre-activation at 0, an absolute or
    Huber residual at 0 / delta), computed with numpy; central differences
    are meaningless within eps of such a point."""
    n_hidden = len(est.coefs_) - 1
    acts = est.activation
    acts = [acts] * n_hidden if isinstance(acts, str) else list(acts)
    dense = np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)
    a = dense
    distance = np.inf
    for i in range(n_hidden):
        z = a @ est.coefs_[i].astype(np.float64) + est.intercepts_[i]
        if acts[i] in KINKED:
            distance = min(distance, float(np.min(np.abs(z))))
        a = HIDDEN[acts[i]](z)
    if task in ("absolute_error", "huber"):
        residual = np.abs(forward(est, dense).ravel() - np.ravel(y))
        if task == "huber":
            residual = np.abs(residual - HUBER_DELTA)
        distance = min(distance, float(np.min(residual)))
    return distance


@settings(PROPERTY_SETTINGS, max_examples=60)
@given(cfg=configs(), sparse=st.booleans())
def test_check_gradients_agrees(cfg, sparse):
    X, y = _data(cfg)
    acts = [cfg["activation"]] if isinstance(cfg["activation"], str) else cfg["activation"]
    kinked = set(acts) & set(KINKED) or cfg["task"] in ("huber", "absolute_error")
    if kinked:
        cfg = dict(cfg, dropout=0.0)  # keep the kink check below exact
    if sparse:
        X = sp.csr_matrix(X)
    # fitted for one iteration, as check_gradients does with an unfitted model
    est = _estimator(BP, cfg, max_iter=1)
    if cfg["task"] == "huber":
        est.set_params(huber_delta=HUBER_DELTA)
    _fit(est, X, y)
    if kinked:
        assume(_distance_to_kinks(est, X, y, cfg["task"]) > 1e-4)
    tol = GRAD_TOL[cfg["dtype"]]
    errors = check_gradients(est, X, y)
    assert errors.shape == (len(cfg["sizes"]) + 1,)
    if not np.all(errors < tol):
        # A layer whose gradient is tiny next to the loss (e.g. the first
        # layer when X is mostly zeros) sees the rounding of the loss, about
        # 1e-16 * loss / eps, at the default eps=1e-6. A wrong backward pass
        # is wrong at every step: the best of two steps must be within tol.
        errors = np.minimum(errors, check_gradients(est, X, y, eps=1e-5))
    assert np.all(errors < tol), errors


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
@pytest.mark.parametrize("X_kind", ["dense", "csr-int32", "csr-int64", "csc"])
def test_read_only_everything_as_sklearn(X_kind, solver):
    """X, y and sample_weight all read-only, as joblib.load(mmap_mode="r")
    gives them (sparse: data, indices and indptr read-only)."""
    rng = np.random.RandomState(0)
    X = rng.standard_normal((60, 5))
    X[rng.uniform(size=X.shape) < 0.5] = 0.0
    y = X[:, 0] - X[:, 1] + 0.1 * rng.standard_normal(60)
    sw = rng.uniform(0.5, 2.0, 60)
    if X_kind == "dense":
        Xr = X.copy()
        Xr.flags.writeable = False
    else:
        Xr = {"csr-int32": sp.csr_matrix, "csr-int64": _csr_int64,
              "csc": sp.csc_matrix}[X_kind](X)
        _read_only_sparse(Xr)
    for a in (y, sw):
        a.flags.writeable = False
    kw = dict(hidden_layer_sizes=(4,), solver=solver, max_iter=20, random_state=0)
    ref = sk_nn.MLPRegressor(**kw)  # sklearn on writeable copies
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref.fit(X, y.copy(), sample_weight=sw.copy())
        est = MLPRegressor(**kw).fit(Xr, y, sample_weight=sw)
        est.partial_fit(Xr, y, sample_weight=sw)
        ref.partial_fit(X, y.copy(), sample_weight=sw.copy())
    for a, b in zip(est.coefs_ + est.intercepts_, ref.coefs_ + ref.intercepts_):
        assert_allclose(a, b, **SK_TOL)
    assert_allclose(est.predict(Xr), ref.predict(X), **SK_TOL)


# --------------------------------------------------------------------------
# bad input: same exception as scikit-learn
# --------------------------------------------------------------------------

_INVALID_PARAM = re.compile(
    r"^(The '\w+' parameter of \w+ must be )(.*)(\. Got .* instead\.)$", re.S
)


def _run(scenario, ns):
    """(exception type, message) or (None, result); warnings as a list."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy overflow in sklearn
        try:
            result = scenario(ns)
            outcome = (None, result)
        except Exception as exc:  # noqa: BLE001 - compared with sklearn's
            outcome = (type(exc), str(exc))
    return outcome, sorted({(w.category.__name__, str(w.message)) for w in caught})


def _family(exc_type):
    """The exception class a user would catch: numpy's private ufunc and
    allocation errors (``_UFuncNoLoopError``, ``_ArrayMemoryError``) count as
    the builtin they derive from (TypeError, MemoryError)."""
    for cls in exc_type.__mro__:
        if not cls.__name__.startswith("_") and not cls.__module__.startswith(
            "numpy._core"
        ):
            return cls
    return exc_type


def _same_message(bp_msg, sk_msg, exc_type):
    if bp_msg == sk_msg:
        return True
    if exc_type is InvalidParameterError:
        # blasprop may allow more values (activations, solvers): the parameter,
        # the class and the rejected value must still be reported identically
        b, s = _INVALID_PARAM.match(bp_msg), _INVALID_PARAM.match(sk_msg)
        return bool(b and s and (b[1], b[3]) == (s[1], s[3]))
    return False


def _result_arrays(result):
    if result is None:
        return []
    if isinstance(result, (MLPClassifier, MLPRegressor, sk_nn.MLPClassifier,
                           sk_nn.MLPRegressor)):
        return result.coefs_ + result.intercepts_
    return [np.asarray(result)]


def _record(**outcome):
    """With BLASPROP_OUTCOMES=path, append what a case did to that file (JSON
    lines; ``python tests/outcomes_table.py path`` makes the table of
    docs/bad-input.md from it). Without it, nothing."""
    path = os.environ.get("BLASPROP_OUTCOMES")
    if path:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"test": test, **outcome}) + "\n")


def _outcome(exc_type, value):
    if exc_type is None:
        return "no error"
    first = str(value).strip().splitlines()[0] if str(value).strip() else ""
    return f"{_family(exc_type).__name__}: {first[:110]}"


def assert_same_as_sklearn(scenario, expect_error=True):
    (sk_type, sk_val), sk_warn = _run(scenario, SK)
    (bp_type, bp_val), bp_warn = _run(scenario, BP)
    _record(blasprop=_outcome(bp_type, bp_val), sklearn=_outcome(sk_type, sk_val),
            warnings=sorted({w[0] for w in bp_warn}))
    if expect_error:
        assert sk_type is not None, "sklearn raised nothing: the scenario is wrong"
    same_type = bp_type is sk_type or (
        bp_type is not None and sk_type is not None
        and _family(bp_type) is _family(sk_type)
    )
    assert same_type, (
        f"\nblasprop: {bp_type.__name__ if bp_type else 'no error'}: {bp_val!r:.300}"
        f"\nsklearn:  {sk_type.__name__ if sk_type else 'no error'}: {sk_val!r:.300}"
    )
    if sk_type is not None and _family(sk_type) is sk_type:
        # a message of scikit-learn's own (not an accident inside numpy)
        assert _same_message(bp_val, sk_val, sk_type), (
            f"\nblasprop: {bp_val!r}\nsklearn:  {sk_val!r}"
        )
    elif sk_type is None:  # both succeeded: the same model / output
        for a, b in zip(_result_arrays(bp_val), _result_arrays(sk_val)):
            assert_allclose(a, b, **SK_TOL)
    assert bp_warn == sk_warn


def _xy(n=40, n_features=5):
    rng = np.random.RandomState(0)
    X = rng.standard_normal((n, n_features))
    return X, np.arange(n) % 2, X[:, 0] + 0.5 * X[:, 1]


X0, YC, YR = _xy()
SMALL = dict(hidden_layer_sizes=(4,), max_iter=5, random_state=0)


def _with(X, i, j, value):
    """A copy of 2-D X with X[i, j] = value (upcast to hold it)."""
    X = X.astype(object if value is None else np.result_type(X, type(value)))
    X[i, j] = value
    return X


def _float32(X):
    with np.errstate(over="ignore"):  # the cast itself overflows to inf
        return X.astype(np.float32)


def _memmap_with_nan(tmp):
    path = os.path.join(tmp, "nan.dat")
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=X0.shape)
    mm[:] = X0
    mm[7, 2] = np.nan
    mm.flush()
    return np.memmap(path, dtype=np.float32, mode="r", shape=X0.shape)


def _pandas_frames():
    pd = pytest.importorskip("pandas")
    strings = pd.DataFrame(X0).assign(s=["a", "b"] * 20)
    nullable = pd.DataFrame(X0).astype("Float64")
    nullable.iloc[3, 1] = pd.NA
    return strings, nullable


# X (fit): name -> function of X returning the bad X
BAD_X = {
    "nan": lambda: _with(X0, 3, 1, np.nan),
    "inf": lambda: _with(X0, 3, 1, np.inf),
    "-inf": lambda: _with(X0, 3, 1, -np.inf),
    "nan-float32": lambda: _with(X0.astype(np.float32), 0, 0, np.nan),
    "inf-fortran": lambda: np.asfortranarray(_with(X0, 39, 4, np.inf)),
    "nan-strided": lambda: _with(np.repeat(X0, 2, axis=1), 5, 6, np.nan)[:, ::2],
    "nan-csr": lambda: sp.csr_matrix(_with(X0, 3, 1, np.nan)),
    "inf-csc": lambda: sp.csc_matrix(_with(X0, 3, 1, np.inf)),
    "huge-float64-as-float32": lambda: _float32(_with(X0, 3, 1, 1e300)),
    "no-samples": lambda: X0[:0],
    "no-features": lambda: X0[:, :0],
    "no-samples-csr": lambda: sp.csr_matrix((0, 5)),
    "1-D": lambda: X0[:, 0],
    "3-D": lambda: X0[:, :, None],
    "scalar": lambda: 3.0,
    "None": lambda: None,
    "strings": lambda: np.char.add(X0.astype(str), "x"),
    "numeric-strings": lambda: X0.astype(str),
    "object-strings": lambda: (X0.astype(str).astype(object) + "a"),
    "object-None": lambda: _with(X0, 2, 2, None),
    "complex": lambda: X0 + 1j,
    "complex-csr": lambda: sp.csr_matrix(X0 + 1j),
    "structured": lambda: np.zeros(40, dtype=[("a", "f8"), ("b", "f8")]),
    "ragged-list": lambda: [[1.0, 2.0], [3.0]] * 20,
    "pandas-string-column": lambda: _pandas_frames()[0],
    "pandas-NA": lambda: _pandas_frames()[1],
}


ACCEPTED_X = {"numeric-strings"}  # converted to float by scikit-learn


@pytest.mark.parametrize("kind", ["MLPClassifier", "MLPRegressor"])
@pytest.mark.parametrize("case", list(BAD_X))
def test_bad_X_in_fit(kind, case):
    Xb = BAD_X[case]()
    y = YC if kind == "MLPClassifier" else YR
    assert_same_as_sklearn(
        lambda ns: getattr(ns, kind)(**SMALL).fit(Xb, y),
        expect_error=case not in ACCEPTED_X,
    )


def test_nan_in_memmap(tmp_path):
    Xb = _memmap_with_nan(str(tmp_path))
    assert_same_as_sklearn(lambda ns: ns.MLPRegressor(**SMALL).fit(Xb, YR))


# y (fit): (kind, bad y); None means the scenario succeeds in sklearn
BAD_Y = {
    "too-short": ("MLPRegressor", lambda: YR[:-1]),
    "too-long-clf": ("MLPClassifier", lambda: np.r_[YC, 1]),
    "empty": ("MLPRegressor", lambda: YR[:0]),
    "3-D": ("MLPRegressor", lambda: YR[:, None, None]),
    "nan-regression": ("MLPRegressor", lambda: _with(YR[:, None], 4, 0, np.nan).ravel()),
    "inf-regression": ("MLPRegressor", lambda: _with(YR[:, None], 4, 0, np.inf).ravel()),
    "nan-classifier": ("MLPClassifier", lambda: np.where(YC == 1, np.nan, 0.0)),
    "complex": ("MLPRegressor", lambda: YR + 1j),
    "strings-regression": ("MLPRegressor", lambda: np.array(["a", "b"] * 20)),
    "object-strings-regression": (
        "MLPRegressor", lambda: np.array(["a", "b"] * 20, dtype=object)),
    "numeric-strings-regression": ("MLPRegressor", lambda: YR.astype(str)),
    "numeric-object-strings-regression": (
        "MLPRegressor", lambda: YR.astype(str).astype(object)),
    "continuous-classifier": ("MLPClassifier", lambda: np.linspace(0, 1, 40)),
    "mixed-label-types": ("MLPClassifier", lambda: np.array(["a", 1] * 20, dtype=object)),
    "labels-with-None": ("MLPClassifier", lambda: np.array(["a", None] * 20, dtype=object)),
    "multioutput-multiclass": ("MLPClassifier", lambda: np.c_[YC, np.arange(40) % 3]),
}


ACCEPTED_Y = {"numeric-object-strings-regression"}  # converted by y_numeric


@pytest.mark.parametrize("case", list(BAD_Y))
def test_bad_y_in_fit(case):
    kind, make_y = BAD_Y[case]
    yb = make_y()
    assert_same_as_sklearn(
        lambda ns: getattr(ns, kind)(**SMALL).fit(X0, yb),
        expect_error=case not in ACCEPTED_Y,
    )


# sample_weight: name -> (bad weights, sklearn raises?)
BAD_SAMPLE_WEIGHT = {
    "nan": (lambda: _with(np.ones((40, 1)), 3, 0, np.nan).ravel(), True),
    "inf": (lambda: _with(np.ones((40, 1)), 3, 0, np.inf).ravel(), True),
    "all-zero": (lambda: np.zeros(40), True),
    "too-short": (lambda: np.ones(39), True),
    "2-D": (lambda: np.ones((40, 2)), True),
    "strings": (lambda: np.array(["a"] * 40), True),
    "complex": (lambda: np.ones(40) + 1j, True),
    "negative": (lambda: -np.linspace(0.5, 2.0, 40), False),
    "some-negative": (lambda: np.where(np.arange(40) % 3 == 0, -1.0, 1.0), False),
    "scalar": (lambda: 2.0, False),
    "list": (lambda: [1.0, 2.0] * 20, False),
}


@pytest.mark.parametrize("kind", ["MLPClassifier", "MLPRegressor"])
@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
@pytest.mark.parametrize("case", list(BAD_SAMPLE_WEIGHT))
def test_bad_sample_weight(kind, solver, case):
    make_sw, raises = BAD_SAMPLE_WEIGHT[case]
    sw = make_sw()
    y = YC if kind == "MLPClassifier" else YR
    assert_same_as_sklearn(
        lambda ns: getattr(ns, kind)(solver=solver, **SMALL).fit(X0, y, sample_weight=sw),
        expect_error=raises,
    )


# predict / predict_proba / score on a fitted model: name -> bad X
BAD_PREDICT_X = {
    "too-few-features": lambda: X0[:, :3],
    "too-many-features": lambda: np.c_[X0, X0],
    "too-few-features-csr": lambda: sp.csr_matrix(X0[:, :3]),
    "nan": lambda: _with(X0, 0, 0, np.nan),
    "inf-float32": lambda: _with(X0, 0, 0, np.inf).astype(np.float32),
    "nan-csc": lambda: sp.csc_matrix(_with(X0, 0, 0, np.nan)),
    "no-samples": lambda: X0[:0],
    "1-D": lambda: X0[0],
    "3-D": lambda: X0[:, :, None],
    "strings": lambda: X0.astype(str).astype(object) + "x",
    "complex": lambda: X0 + 1j,
}


@pytest.mark.parametrize(
    "kind,method",
    [("MLPClassifier", "predict"), ("MLPClassifier", "predict_proba"),
     ("MLPRegressor", "predict"), ("MLPRegressor", "score")],
)
@pytest.mark.parametrize("case", list(BAD_PREDICT_X))
def test_bad_X_in_predict(kind, method, case):
    Xb = BAD_PREDICT_X[case]()
    y = YC if kind == "MLPClassifier" else YR

    def scenario(ns):
        est = getattr(ns, kind)(**SMALL).fit(X0, y)
        args = (Xb, y) if method == "score" else (Xb,)
        return getattr(est, method)(*args)

    assert_same_as_sklearn(scenario)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "partial_fit-then-predict"])
def test_unfitted(method):
    def scenario(ns):
        est = ns.MLPClassifier(**SMALL)
        if method == "partial_fit-then-predict":
            est = ns.MLPClassifier(solver="lbfgs", **SMALL)
            est.partial_fit(X0, YC, classes=[0, 1])
        return getattr(est, method.split("-")[-1])(X0)

    assert_same_as_sklearn(scenario)


# partial_fit sequences: name -> list of (kind, kwargs of a call)
PARTIAL_FIT = {
    "unseen-label-later": [dict(classes=[0, 1]), dict(y=np.arange(40) % 3)],
    "unseen-label-first-call": [dict(classes=[0])],
    "no-classes-first-call": [dict()],
    "classes-changed": [dict(classes=[0, 1]), dict(classes=[0, 2])],
    "string-classes-int-labels": [dict(classes=["a", "b"])],
    "wrong-features-later": [dict(classes=[0, 1]), dict(X=X0[:, :4])],
    "one-class-declared": [dict(classes=[0], y=np.zeros(40, int))],
    "subset-of-classes": [dict(classes=[0, 1, 2]), dict(y=np.zeros(40, int))],
    "nan-later": [dict(classes=[0, 1]), dict(X=_with(X0, 1, 1, np.nan))],
}


@pytest.mark.parametrize("case", list(PARTIAL_FIT))
def test_bad_partial_fit(case):
    calls = PARTIAL_FIT[case]

    def scenario(ns):
        est = ns.MLPClassifier(solver="sgd", **SMALL)
        for call in calls:
            kw = {"classes": call["classes"]} if "classes" in call else {}
            est.partial_fit(call.get("X", X0), call.get("y", YC), **kw)
        return est.predict_proba(X0)

    assert_same_as_sklearn(
        scenario, expect_error=case not in ("one-class-declared", "subset-of-classes")
    )


@pytest.mark.parametrize("kind", ["MLPClassifier", "MLPRegressor"])
def test_partial_fit_wrong_features_after_fit(kind):
    y = YC if kind == "MLPClassifier" else YR

    def scenario(ns):
        est = getattr(ns, kind)(solver="adam", **SMALL).fit(X0, y)
        est.partial_fit(X0[:, :2], y)

    assert_same_as_sklearn(scenario)


def test_one_class_fit():
    y = np.full(40, 7)
    assert_same_as_sklearn(
        lambda ns: ns.MLPClassifier(**SMALL).fit(X0, y).predict_proba(X0),
        expect_error=False,
    )


# parameters, invalid or absurd but cheap: name -> (kwargs, sklearn raises?)
PARAMS = {
    "alpha-negative": (dict(alpha=-1.0), True),
    "alpha-nan": (dict(alpha=np.nan), True),
    "alpha-inf": (dict(alpha=np.inf), True),
    "alpha-1e300": (dict(alpha=1e300), None),
    "hidden-0": (dict(hidden_layer_sizes=0), True),
    "hidden-(5,0)": (dict(hidden_layer_sizes=(5, 0)), True),
    "hidden-negative": (dict(hidden_layer_sizes=(-3,)), True),
    "hidden-float": (dict(hidden_layer_sizes=(3.5,)), True),
    "hidden-string": (dict(hidden_layer_sizes="5"), True),
    "hidden-nan": (dict(hidden_layer_sizes=(np.nan,)), True),
    "hidden-2-D": (dict(hidden_layer_sizes=[[3, 4]]), True),
    "hidden-bool": (dict(hidden_layer_sizes=True), True),
    "hidden-empty-tuple": (dict(hidden_layer_sizes=()), False),
    "hidden-empty-list": (dict(hidden_layer_sizes=[]), False),
    "batch_size-0": (dict(batch_size=0), True),
    "batch_size-negative": (dict(batch_size=-5), True),
    "batch_size-float": (dict(batch_size=2.5), True),
    "batch_size-huge": (dict(batch_size=10**15), False),
    "learning_rate_init-0": (dict(learning_rate_init=0.0), True),
    "learning_rate_init-inf": (dict(learning_rate_init=np.inf), True),
    "momentum-nan": (dict(momentum=np.nan), True),
    "max_iter-0": (dict(max_iter=0), True),
    "max_iter-huge-tol-huge": (dict(max_iter=10**12, tol=1e300), False),
    "validation_fraction-1": (dict(validation_fraction=1.0, early_stopping=True), True),
    "validation_fraction-0.999": (
        dict(validation_fraction=0.999, early_stopping=True), True),
    "activation-bogus": (dict(activation="bogus"), True),
    "solver-bogus": (dict(solver="bogus"), True),
    "n_iter_no_change-0": (dict(n_iter_no_change=0), True),
    "epsilon-0": (dict(epsilon=0.0), True),
    "beta_2-1": (dict(beta_2=1.0), True),
    "random_state-string": (dict(random_state="seed"), True),
    "max_fun-0": (dict(max_fun=0, solver="lbfgs"), True),
}


@pytest.mark.parametrize("kind", ["MLPClassifier", "MLPRegressor"])
@pytest.mark.parametrize("case", list(PARAMS))
def test_bad_or_absurd_parameters(kind, case):
    params, raises = PARAMS[case]
    y = YC if kind == "MLPClassifier" else YR
    kw = {**SMALL, **params}

    def scenario(ns):
        est = getattr(ns, kind)(**kw).fit(X0, y)
        return _output(est, X0)

    assert_same_as_sklearn(scenario, expect_error=bool(raises))


# --------------------------------------------------------------------------
# absurd sizes: a memory-limited subprocess
# --------------------------------------------------------------------------

MEMORY_LIMIT = 2 << 30  # 2 GiB of address space
# resident memory a failing fit may touch before its error
MAX_RESIDENT_BEFORE_ERROR = 64 << 20

ABSURD = {
    # name: (estimator kwargs, X)
    "hidden-(1e9,1e9)-adam": (dict(hidden_layer_sizes=(10**9, 10**9)), "dense"),
    "hidden-(1e9,1e9)-lbfgs": (
        dict(hidden_layer_sizes=(10**9, 10**9), solver="lbfgs"), "dense"),
    "hidden-(1e9,1e9)-float32": (dict(hidden_layer_sizes=(10**9, 10**9)), "float32"),
    "hidden-(2**62,)": (dict(hidden_layer_sizes=(2**62,)), "dense"),
    "hidden-(1e5,1e5)-sgd": (
        dict(hidden_layer_sizes=(10**5, 10**5), solver="sgd"), "dense"),
    "hidden-(20000,20000)": (dict(hidden_layer_sizes=(20000, 20000)), "dense"),
    "hidden-(1e8,)*3": (dict(hidden_layer_sizes=[10**8] * 3), "dense"),
    "sparse-1e9-features": (dict(hidden_layer_sizes=(3,)), "sparse"),
    "batch_size-1e15": (dict(hidden_layer_sizes=(3,), batch_size=10**15), "dense"),
    "batch_size-1e15-sparse": (
        dict(hidden_layer_sizes=(3,), batch_size=10**15), "sparse-small"),
}

# One subprocess runs every case (blasprop, then scikit-learn) and prints a
# JSON line before and after each; a death by signal names the case it died in.
# Resident memory is measured with VmHWM, reset per case through
# /proc/self/clear_refs (tracemalloc cannot be used: numpy traces the size of
# a failed allocation as if it had succeeded).
_ABSURD_SCRIPT = textwrap.dedent(
    """
    import json, sys, time, warnings
    import numpy as np, scipy.sparse as sp
    import sklearn.neural_network as sk
    import blasprop
    warnings.simplefilter("ignore")
    cases = json.loads(sys.argv[1])
    rng = np.random.RandomState(0)
    X = rng.standard_normal((40, 5))
    y = np.arange(40) % 2

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024

    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def data(kind):
        if kind == "dense":
            return X
        if kind == "float32":
            return X.astype(np.float32)
        n_features = 10**9 if kind == "sparse" else 7
        rows = np.arange(40)
        return sp.csr_matrix(
            (np.ones(40), (rows, (rows * 7919) % n_features)),
            shape=(40, n_features),
        )

    for name, (params, kind) in cases.items():
        for lib_name, lib in (("blasprop", blasprop), ("sklearn", sk)):
            Xd = data(kind)
            est = lib.MLPClassifier(max_iter=2, random_state=0, **eval(params))
            print(json.dumps({"case": name, "lib": lib_name, "start": True}), flush=True)
            can_reset = reset_peak()
            before = status("VmRSS")
            t = time.perf_counter()
            try:
                est.fit(Xd, y)
                outcome = None
            except Exception as exc:
                outcome = [c.__name__ for c in type(exc).__mro__]
            elapsed = time.perf_counter() - t
            peak = status("VmHWM") - before if can_reset else None
            print(json.dumps({"case": name, "lib": lib_name, "outcome": outcome,
                              "resident": peak, "seconds": elapsed}), flush=True)
    """
)


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@pytest.fixture(scope="module")
def absurd_results():
    cases = {name: (repr(params), kind) for name, (params, kind) in ABSURD.items()}
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", _ABSURD_SCRIPT, json.dumps(cases)],
        capture_output=True, text=True, timeout=300, preexec_fn=_limit_memory, env=env,
    )
    records = [json.loads(line) for line in proc.stdout.splitlines()
               if line.startswith("{")]
    return proc, records


def _caught_as(mro_names):
    """Name of the builtin a user catches (MemoryError for _ArrayMemoryError)."""
    if mro_names is None:
        return None
    return next(n for n in mro_names if not n.startswith("_") and n != "UFuncTypeError")


@pytest.mark.parametrize("case", list(ABSURD))
def test_absurd_sizes_fail_cleanly(case, absurd_results):
    proc, records = absurd_results
    started = [r for r in records if r.get("start")]
    done = {(r["case"], r["lib"]): r for r in records if "start" not in r}
    assert proc.returncode >= 0, (
        f"the subprocess died of {signal.Signals(-proc.returncode).name} in "
        f"{started[-1] if started else 'startup'}\n{proc.stderr[-2000:]}"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    bp, sk = done[(case, "blasprop")], done[(case, "sklearn")]
    _record(blasprop=_caught_as(bp["outcome"]) or "no error",
            sklearn=_caught_as(sk["outcome"]) or "no error",
            seconds=round(bp["seconds"], 3), resident=bp["resident"])
    assert _caught_as(bp["outcome"]) == _caught_as(sk["outcome"]), (bp, sk)
    if bp["outcome"] is not None:
        assert _caught_as(bp["outcome"]) in ("MemoryError", "ValueError"), bp
        if bp["resident"] is not None:
            assert bp["resident"] < MAX_RESIDENT_BEFORE_ERROR, bp


# --------------------------------------------------------------------------
# divergence
# --------------------------------------------------------------------------


def _unscaled(kind, dtype=np.float64):
    rng = np.random.RandomState(0)
    X = (rng.uniform(size=(60, 4)) * [1e3, 1e4, 1e5, 1e6]).astype(dtype)
    y = (np.arange(60) % 2 if kind == "MLPClassifier"
         else X[:, 0].astype(np.float64) * 1e3 + 7)
    return X, y


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["MLPClassifier", "MLPRegressor"])
def test_divergence_raises_like_sklearn(kind, dtype):
    X, y = _unscaled(kind, dtype)
    fitted = {}

    def scenario(ns):
        est = getattr(ns, kind)(hidden_layer_sizes=(8,), solver="sgd",
                                learning_rate_init=1e10, max_iter=20, random_state=0)
        fitted[ns is BP] = est
        est.fit(X, y)

    if kind == "MLPRegressor":
        # the documented case: sklearn raises its non-finite-weights error
        (sk_type, sk_msg), _ = _run(scenario, SK)
        assert sk_type is ValueError and "non-finite parameter weights" in sk_msg
    assert_same_as_sklearn(scenario, expect_error=False)
    for est in fitted.values():
        assert est.n_iter_ == len(est.loss_curve_)
        assert est.t_ == est.n_iter_ * X.shape[0]
        assert len(est.coefs_) == 2 and len(est.intercepts_) == 2


@pytest.mark.parametrize("kind", ["MLPClassifier", "MLPRegressor"])
def test_divergence_in_partial_fit(kind):
    X, y = _unscaled(kind)
    kw = {"classes": [0, 1]} if kind == "MLPClassifier" else {}

    def scenario(ns):
        est = getattr(ns, kind)(hidden_layer_sizes=(8,), solver="sgd",
                                learning_rate_init=1e10, random_state=0)
        for _ in range(5):
            est.partial_fit(X, y, **kw)

    assert_same_as_sklearn(scenario, expect_error=False)


def test_model_still_usable_after_divergence():
    """After the ValueError, the estimator is refitted normally."""
    X, y = _unscaled("MLPRegressor")
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", max_iter=20, random_state=0)
    est = MLPRegressor(learning_rate_init=1e10, **kw)
    with pytest.raises(ValueError, match="non-finite parameter weights"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
    Xs = (X - X.mean(0)) / X.std(0)
    ys = (y - y.mean()) / y.std()
    est.set_params(learning_rate_init=1e-3).fit(Xs, ys)
    sk = sk_nn.MLPRegressor(learning_rate_init=1e-3, **kw).fit(Xs, ys)
    for a, b in zip(est.coefs_, sk.coefs_):
        assert_allclose(a, b, **SK_TOL)


# --------------------------------------------------------------------------
# malformed sparse matrices: scipy checks nothing once a matrix exists (its
# attributes can be replaced or edited in place) and neither do its format
# converters; blasprop checks indptr and the indices in O(nnz) before any
# kernel (or converter) reads them
# --------------------------------------------------------------------------

MALFORMED = ("index-out-of-range", "index-far-out-of-range", "negative-index",
             "indptr-decreasing", "indptr0-nonzero", "indptr-too-short",
             "indptr-end-beyond-nnz")


def _malformed(fmt, case, index_dtype, dtype):
    rng = np.random.RandomState(0)
    X = rng.standard_normal((40, 5)).astype(dtype)
    X[np.abs(X) < 0.6] = 0.0
    M = (sp.csr_matrix if fmt == "csr" else sp.csc_matrix)(X)
    M.indices = M.indices.astype(index_dtype)
    M.indptr = M.indptr.astype(index_dtype)
    n_minor = X.shape[1] if fmt == "csr" else X.shape[0]
    ind, ptr = M.indices, M.indptr
    if case == "index-out-of-range":
        ind[len(ind) // 2] = n_minor
    elif case == "index-far-out-of-range":
        ind[-1] = 10**6
    elif case == "negative-index":
        ind[3] = -1
    elif case == "indptr-decreasing":
        ptr[2] = ptr[3] + 1
    elif case == "indptr0-nonzero":
        ptr[0] = 1
    elif case == "indptr-too-short":
        M.indptr = ptr[:-1]
    elif case == "indptr-end-beyond-nnz":
        ptr[-1] = len(ind) + 3
    return M


@pytest.fixture(scope="module")
def fitted_on_valid():
    """(kind, dtype) -> an estimator fitted on valid data of that dtype."""
    fitted = {}
    for kind, y in (("MLPClassifier", YC), ("MLPRegressor", YR)):
        for dtype in (np.float64, np.float32):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                fitted[kind, dtype] = getattr(BP, kind)(**SMALL).fit(X0.astype(dtype), y)
    return fitted


SPARSE_METHODS = ("fit", "partial_fit", "predict", "predict_proba", "score",
                  "check_gradients")


def _call_on_malformed(method, M, dtype, fitted):
    kind = "MLPRegressor" if method == "score" else "MLPClassifier"
    y = YC if kind == "MLPClassifier" else YR
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if method == "fit":
            return MLPClassifier(**SMALL).fit(M, y)
        if method == "partial_fit":
            return MLPClassifier(solver="sgd", **SMALL).partial_fit(M, y, classes=[0, 1])
        est = fitted[kind, dtype]
        if method == "check_gradients":
            return check_gradients(est, M, y)
        if method == "score":
            return est.score(M, y)
        return getattr(est, method)(M)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("case", MALFORMED)
@pytest.mark.parametrize("method", SPARSE_METHODS)
def test_malformed_sparse_raises_value_error(method, case, fmt, index_dtype, dtype,
                                             fitted_on_valid):
    M = _malformed(fmt, case, index_dtype, dtype)
    with pytest.raises(ValueError, match=f"malformed {fmt.upper()} matrix"):
        _call_on_malformed(method, M, dtype, fitted_on_valid)


@pytest.mark.parametrize("method", SPARSE_METHODS)
def test_well_formed_sparse_still_accepted(method, fitted_on_valid):
    """The same matrices untouched (the control of the test above)."""
    for fmt in ("csr", "csc"):
        M = _malformed(fmt, None, np.int64, np.float64)
        _call_on_malformed(method, M, np.float64, fitted_on_valid)


def _coo_or_bsr(case):
    rng = np.random.RandomState(0)
    X = rng.standard_normal((40, 6))
    X[np.abs(X) < 0.6] = 0.0
    if case.startswith("coo"):
        M = sp.coo_matrix(X)
        if case == "coo-row-out-of-range":
            M.row[4] = 40
        elif case == "coo-negative-column":
            M.col[0] = -2
        else:  # more row indices than values
            M.row = np.r_[M.row, 0]
        return M
    M = sp.bsr_matrix(X, blocksize=(2, 2))
    if case == "bsr-block-column-out-of-range":
        M.indices[1] = 3  # 6 columns are 3 block columns: 0 to 2
    else:
        M.indptr[1] = M.indptr[2] + 1
    return M


@pytest.mark.parametrize("case", ["coo-row-out-of-range", "coo-negative-column",
                                  "coo-rows-longer-than-data",
                                  "bsr-block-column-out-of-range", "bsr-indptr-decreasing"])
@pytest.mark.parametrize("method", ["fit", "predict"])
def test_malformed_coo_and_bsr_raise_before_conversion(case, method):
    """scipy's COO and BSR to CSR converters write where the indices say:
    the structure is checked before scikit-learn's validation converts."""
    M = _coo_or_bsr(case)
    X = np.random.RandomState(1).standard_normal((40, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPRegressor(**SMALL)
        if method == "predict":
            est.fit(X, YR)
        with pytest.raises(ValueError, match="malformed (COO|BSR) matrix"):
            est.fit(M, YR) if method == "fit" else est.predict(M)


# --------------------------------------------------------------------------
# fitted attributes changed by hand: a clear ValueError, never a crash
# --------------------------------------------------------------------------


def _hstack(a):
    return np.concatenate([a, a], axis=-1)


BROKEN_ATTRIBUTES = {
    "coefs0-square": lambda e: e.coefs_.__setitem__(0, np.zeros((3, 3))),
    "coefs0-fewer-inputs": lambda e: e.coefs_.__setitem__(0, e.coefs_[0][:3]),
    "coefs0-more-inputs": lambda e: e.coefs_.__setitem__(0, np.vstack([e.coefs_[0]] * 2)),
    "coefs0-wider-than-intercepts": lambda e: e.coefs_.__setitem__(0, _hstack(e.coefs_[0])),
    "intercepts0-short": lambda e: e.intercepts_.__setitem__(0, e.intercepts_[0][:-1]),
    "intercepts0-2-D": lambda e: e.intercepts_.__setitem__(0, e.intercepts_[0][None]),
    "output-wider": lambda e: (e.coefs_.__setitem__(-1, _hstack(e.coefs_[-1])),
                               e.intercepts_.__setitem__(-1, _hstack(e.intercepts_[-1]))),
    "layer-dropped": lambda e: setattr(e, "coefs_", e.coefs_[:-1]),
    "no-layers": lambda e: (setattr(e, "coefs_", []), setattr(e, "intercepts_", [])),
    "coefs0-1-D": lambda e: e.coefs_.__setitem__(0, e.coefs_[0].ravel()),
    "coefs0-complex": lambda e: e.coefs_.__setitem__(0, e.coefs_[0] + 0j),
    "coefs0-strings": lambda e: e.coefs_.__setitem__(0, e.coefs_[0].astype(str)),
    "coefs-an-array": lambda e: setattr(e, "coefs_", e.coefs_[0]),
    "out_activation-unknown": lambda e: setattr(e, "out_activation_", "bogus"),
}
CLASSIFIER_BROKEN = {
    "out_activation-softmax-on-binary": lambda e: setattr(e, "out_activation_", "softmax"),
    "binarizer-of-three-classes": lambda e: setattr(
        e, "_label_binarizer", __import__("sklearn.preprocessing").preprocessing
        .LabelBinarizer().fit([0, 1, 2])),
    "binarizer-unfitted": lambda e: setattr(
        e, "_label_binarizer",
        __import__("sklearn.preprocessing").preprocessing.LabelBinarizer()),
}


_PREDICTING = {"MLPClassifier": ("predict", "predict_proba", "score"),
               "MLPRegressor": ("predict", "score")}


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("case,kind,method", [
    (case, kind, method)
    for case in list(BROKEN_ATTRIBUTES) + list(CLASSIFIER_BROKEN)
    for kind in (_PREDICTING if case in BROKEN_ATTRIBUTES else ["MLPClassifier"])
    for method in _PREDICTING[kind]
])
def test_fitted_attributes_broken_by_hand(case, kind, method, sparse):
    y = YC if kind == "MLPClassifier" else YR
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = getattr(BP, kind)(hidden_layer_sizes=(4, 3), max_iter=5,
                                random_state=0).fit(X0, y)
    {**BROKEN_ATTRIBUTES, **CLASSIFIER_BROKEN}[case](est)
    X = sp.csr_matrix(X0) if sparse else X0
    args = (X, y) if method == "score" else (X,)
    with pytest.raises(ValueError, match="fitted attributes are inconsistent"):
        getattr(est, method)(*args)


@pytest.mark.parametrize("how", ["partial_fit-classifier", "partial_fit-regressor",
                                 "warm_start-regressor"])
@pytest.mark.parametrize("case", list(BROKEN_ATTRIBUTES))
def test_training_on_from_attributes_broken_by_hand(case, how):
    """partial_fit and warm_start continue from the fitted attributes: they
    are checked as a predict checks them, and the parameter vector is never
    built from arrays that do not fill it."""
    kind = "MLPClassifier" if how.endswith("classifier") else "MLPRegressor"
    y = YC if kind == "MLPClassifier" else YR
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = getattr(BP, kind)(hidden_layer_sizes=(4, 3), max_iter=5, solver="sgd",
                                random_state=0, warm_start=how.startswith("warm")).fit(X0, y)
        BROKEN_ATTRIBUTES[case](est)
        with pytest.raises(ValueError, match="inconsistent|same network shape"):
            if how.startswith("warm"):
                est.fit(X0, y)
            else:
                est.partial_fit(X0, y)


@pytest.mark.parametrize("how", ["partial_fit", "warm_start"])
def test_refused_continuation_leaves_the_model_usable(how):
    """Training on from a fitted model with targets of another width is
    refused, and the model keeps predicting as before (n_outputs_ and the
    weights are left as they were)."""
    from blasprop import MLPRegressor

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 4)), rng.normal(size=50)
    est = MLPRegressor(hidden_layer_sizes=(5,), max_iter=5, random_state=0,
                       warm_start=how == "warm_start").fit(X, y)
    before = est.predict(X)
    with pytest.raises(ValueError, match="same network shape"):
        getattr(est, "partial_fit" if how == "partial_fit" else "fit")(
            X, rng.normal(size=(50, 2)))
    assert est.n_outputs_ == 1
    np.testing.assert_array_equal(est.predict(X), before)
