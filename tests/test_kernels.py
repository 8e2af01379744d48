"""The forward kernels against numpy (the BLAS gateway: test_blas.py)."""

import numpy as np
import pytest
import scipy.sparse as sp

from blasprop import MLPClassifier, MLPRegressor

from ._reference import HIDDEN, forward

DTYPES = [(np.float64, 1e-12), (np.float32, 1e-5)]


def _fitted(est, X, y):
    return est.set_params(max_iter=3, random_state=0).fit(X, y)


@pytest.mark.parametrize("dtype,rtol", DTYPES)
@pytest.mark.parametrize("activation", sorted(HIDDEN))
def test_forward_matches_numpy_every_activation(activation, dtype, rtol):
    rng = np.random.RandomState(0)
    X = rng.randn(40, 6).astype(dtype)
    y = rng.randint(3, size=40)
    clf = _fitted(MLPClassifier(hidden_layer_sizes=(8, 5), activation=activation,
                                solver="sgd"), X, y)
    np.testing.assert_allclose(clf.predict_proba(X), forward(clf, X),
                               rtol=rtol * 10, atol=rtol)
    reg = _fitted(MLPRegressor(hidden_layer_sizes=(4,), activation=activation), X,
                  rng.randn(40, 2))
    np.testing.assert_allclose(reg.predict(X), forward(reg, X), rtol=rtol * 10,
                               atol=rtol)


def test_per_layer_activations_forward():
    rng = np.random.RandomState(1)
    X, y = rng.randn(30, 4), rng.rand(30) + 0.1
    reg = _fitted(MLPRegressor(loss="poisson", hidden_layer_sizes=(5, 6, 3),
                               activation=["gelu", "tanh", "softplus"]), X, y)
    np.testing.assert_allclose(reg.predict(X), forward(reg, X).ravel(), rtol=1e-12)


@pytest.mark.parametrize("layout", ["C", "F", "strided", "readonly", "csr", "csc"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_memory_layout_does_not_change_results(layout, dtype):
    rng = np.random.RandomState(3)
    base = rng.randn(60, 12).astype(dtype)
    y = rng.randint(2, size=60)
    if layout == "F":
        X = np.asfortranarray(base)
    elif layout == "strided":
        wide = np.zeros((60, 24), dtype=dtype)
        wide[:, ::2] = base
        X = wide[:, ::2]
    elif layout == "readonly":
        X = base.copy()
        X.setflags(write=False)
    elif layout in ("csr", "csc"):
        base[np.abs(base) < 0.8] = 0
        X = sp.csr_matrix(base) if layout == "csr" else sp.csc_matrix(base)
    else:
        X = base
    kw = dict(hidden_layer_sizes=(6,), max_iter=5, random_state=0, batch_size=16)
    ref = MLPClassifier(**kw).fit(base, y)
    got = MLPClassifier(**kw).fit(X, y)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for a, b in zip(ref.coefs_ + ref.intercepts_, got.coefs_ + got.intercepts_):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(got.predict_proba(X), ref.predict_proba(base),
                               rtol=rtol, atol=rtol)


# --------------------------------------------------------------------------
# The compiled entry points check every size they rely on before releasing
# the GIL: a mismatch is a ValueError naming what does not match, and
# nothing is read or written out of bounds (nor changed at all).

UNITS = [6, 5, 2]
CAP = 8


def _layout(units=UNITS, cap=CAP, acts=(1, 0)):
    from blasprop import _core

    # logistic hidden layer, identity output, squared error
    return _core.Layout(units, list(acts), 0, 1.0, cap)


def _kernel_args(dtype, sparse):
    from blasprop._codes import bp_solver

    from blasprop import _core

    rng = np.random.RandomState(0)
    layout = _layout()
    X = rng.randn(20, UNITS[0]).astype(dtype)
    if sparse:
        X[np.abs(X) < 0.5] = 0
        X = sp.csr_matrix(X)
    P = layout.n_params
    return dict(
        layout=layout,
        ws=_core.Workspace(layout, dtype, UNITS[0], sparse),
        X=_core.Input(X),
        Y=rng.randn(20, UNITS[-1]).astype(dtype),
        sw=rng.uniform(0.5, 2, 20).astype(dtype),
        order=rng.permutation(20).astype(np.intp),
        batch_size=4,
        params=(0.1 * rng.randn(P)).astype(dtype),
        grads=np.zeros(P, dtype),
        state1=np.zeros(P, dtype),
        state2=np.zeros(P, dtype),
        solver=bp_solver.BP_ADAM,
        rows=np.arange(0, 20, 3, dtype=np.intp),
        out=np.zeros((7, UNITS[-1]), dtype),
        Y_rows=rng.randn(7, UNITS[-1]).astype(dtype),
        sw_rows=np.ones(7, dtype),
    )


def _epoch(a):
    from blasprop import _core

    solver = _core.Solver(a["solver"], 1e-3, momentum=0.9, nesterov=True, beta_1=0.9,
                          beta_2=0.999, epsilon=1e-8, alpha=1e-4, t=0)
    return _core.epoch(a["layout"], a["ws"], a["X"], a["Y"], a["sw"], a["order"],
                       a["batch_size"], a["params"], a["grads"], a["state1"],
                       a["state2"], solver, -1)


def _objective(a):
    from blasprop import _core

    return _core.objective(a["layout"], a["ws"], a["X"], a["Y"], a["sw"], a["params"],
                           a["grads"], 1e-4)


def _predict(a):
    from blasprop import _core

    return _core.predict_rows(a["layout"], a["ws"], a["X"], a["params"], a["rows"],
                              a["out"], a["Y_rows"], a["sw_rows"])


ENTRY_POINTS = {"epoch": _epoch, "objective": _objective, "predict": _predict}


def _other_X(dtype, sparse, n_features):
    from blasprop import _core

    X = np.random.RandomState(1).randn(20, n_features).astype(dtype)
    return _core.Input(sp.csr_matrix(X) if sparse else X)


def _other_ws(dtype, sparse, **layout_kw):
    from blasprop import _core

    return _core.Workspace(_layout(**layout_kw), dtype, UNITS[0], sparse)


# name -> (entry points it applies to, override(args, dtype, sparse), match)
MISMATCHES = {
    "X-narrower": (ENTRY_POINTS, lambda a, d, s: {"X": _other_X(d, s, 4)},
                   "X has 4 features.*input layer has 6"),
    "X-wider": (ENTRY_POINTS, lambda a, d, s: {"X": _other_X(d, s, 9)},
                "X has 9 features.*input layer has 6"),
    "Y-fewer-rows": (("epoch", "objective"), lambda a, d, s: {"Y": a["Y"][:19]},
                     r"Y has shape \(19, 2\), expected \(20, 2\)"),
    "Y-more-columns": (("epoch", "objective"),
                       lambda a, d, s: {"Y": np.zeros((20, 3), d)},
                       r"Y has shape \(20, 3\), expected \(20, 2\)"),
    "Y-one-column": (("epoch", "objective"), lambda a, d, s: {"Y": a["Y"][:, :1].copy()},
                     r"Y has shape \(20, 1\)"),
    "sw-short": (("epoch", "objective"), lambda a, d, s: {"sw": a["sw"][:19]},
                 "sample_weight has 19 entries, expected 20"),
    "sw-long": (("epoch", "objective"), lambda a, d, s: {"sw": np.ones(21, d)},
                "sample_weight has 21 entries"),
    "params-short": (ENTRY_POINTS, lambda a, d, s: {"params": a["params"][:-1]},
                     "params has"),
    "params-long": (ENTRY_POINTS, lambda a, d, s: {"params": np.zeros(a["params"].size + 7, d)},
                    "params has"),
    "grads-short": (("epoch", "objective"), lambda a, d, s: {"grads": a["grads"][:3]},
                    "grads has 3 entries"),
    "state1-short": (("epoch",), lambda a, d, s: {"state1": a["state1"][:-1]}, "state1"),
    "state2-short-adam": (("epoch",), lambda a, d, s: {"state2": np.zeros(1, d)}, "state2"),
    "unknown-solver": (("epoch",), lambda a, d, s: {"solver": 7}, "solver code 7"),
    "batch-over-cap": (("epoch",), lambda a, d, s: {"batch_size": CAP + 1}, "batch_size 9"),
    "batch-zero": (("epoch",), lambda a, d, s: {"batch_size": 0}, "batch_size 0"),
    "order-past-end": (("epoch",),
                       lambda a, d, s: {"order": np.r_[a["order"][:-1], 20].astype(np.intp)},
                       r"order\[19\] is 20, not a row of X"),
    "order-negative": (("epoch",),
                       lambda a, d, s: {"order": np.r_[-1, a["order"][1:]].astype(np.intp)},
                       r"order\[0\] is -1"),
    "order-huge": (("epoch",),
                   lambda a, d, s: {"order": np.full(3, 2**40, np.intp)}, "order"),
    "rows-past-end": (("predict",),
                      lambda a, d, s: {"rows": np.r_[a["rows"][:-1], 20].astype(np.intp)},
                      r"rows\[6\] is 20, not a row of X"),
    "rows-negative": (("predict",),
                      lambda a, d, s: {"rows": np.r_[a["rows"][:-1], -3].astype(np.intp)},
                      r"rows\[6\] is -3"),
    "out-rows": (("predict",), lambda a, d, s: {"out": np.zeros((6, 2), d)},
                 r"out has shape \(6, 2\), expected \(7, 2\)"),
    "out-columns": (("predict",), lambda a, d, s: {"out": np.zeros((7, 3), d)},
                    r"out has shape \(7, 3\)"),
    "predict-Y-shape": (("predict",), lambda a, d, s: {"Y_rows": np.zeros((7, 1), d)},
                        r"Y has shape \(7, 1\)"),
    "predict-sw-length": (("predict",), lambda a, d, s: {"sw_rows": np.ones(5, d)},
                          "sample_weight has 5 entries"),
    "workspace-smaller-cap": (ENTRY_POINTS, lambda a, d, s: {"ws": _other_ws(d, s, cap=2)},
                              "Workspace built for another Layout"),
    "workspace-narrower-layers": (ENTRY_POINTS,
                                  lambda a, d, s: {"ws": _other_ws(d, s, units=[6, 2, 2])},
                                  "Workspace built for another Layout"),
    "workspace-other-dtype": (
        ENTRY_POINTS,
        lambda a, d, s: {"ws": _other_ws(np.float32 if d == np.float64 else np.float64, s)},
        "dtype mismatch"),
}

CASES = [(name, entry) for name, (entries, _, _) in MISMATCHES.items() for entry in entries]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("name,entry", CASES)
def test_entry_points_refuse_mismatched_arguments(name, entry, sparse, dtype):
    a = _kernel_args(dtype, sparse)
    call = ENTRY_POINTS[entry]
    call(dict(a))  # the arguments as built fit together
    _, override, match = MISMATCHES[name]
    bad = dict(a, **override(a, dtype, sparse))
    arrays = {k: bad[k].copy() for k in ("params", "state1", "state2", "out")}
    with pytest.raises(ValueError, match=match):
        call(bad)
    for k, before in arrays.items():  # refused before anything was written
        np.testing.assert_array_equal(bad[k], before, err_msg=k)


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("arg", ["layout", "ws", "X", "params"])
def test_entry_points_refuse_none(entry, arg):
    a = _kernel_args(np.float64, False)
    a[arg] = None
    with pytest.raises(TypeError):
        ENTRY_POINTS[entry](a)


def test_layout_and_workspace_cannot_be_changed_under_the_kernels():
    from blasprop import _core

    layout = _layout()
    for name in ("units", "coef_off", "icpt_off", "act_off", "z_off", "act"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(layout, name)[0] = 1000
    with pytest.raises(RuntimeError, match="once"):
        layout.__init__([6, 50, 2], [1, 0], 0, 1.0, 4096)
    ws = _core.Workspace(layout, np.float64, 6, False)
    with pytest.raises(RuntimeError, match="once"):
        ws.__init__(_layout(cap=1), np.float64, 6, False)
    X_in = _core.Input(np.ones((3, 6)))
    with pytest.raises(RuntimeError, match="once"):
        X_in.__init__(np.ones((1, 2)))
    with pytest.raises(AttributeError):
        ws.xbuf = np.zeros(1)


@pytest.mark.parametrize("units,acts,loss,match", [
    ([6, 0, 2], [1, 0], 0, "at least one unit"),
    ([6, 5, -1], [1, 0], 0, "at least one unit"),
    ([6, 5, 2], [1, 11], 0, "activation code"),
    ([6, 5, 2], [-1, 0], 0, "activation code"),
    ([6, 5, 2], [1, 0], 6, "loss code"),
    ([6, 5, 2], [1], 0, "one activation per layer"),
    ([[6, 5, 2]], [1, 0], 0, "1-D"),
])
def test_layout_refuses_what_the_kernels_cannot_run(units, acts, loss, match):
    from blasprop import _core

    with pytest.raises(ValueError, match=match):
        _core.Layout(units, acts, loss, 1.0, 4)


# --------------------------------------------------------------------------
# Sizes beyond BLAS's integer: OverflowError before anything of that size is
# allocated (traced by tracemalloc, which numpy reports its buffers to).

def _peak_traced(fn):
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("units,cap", [
    ([6, 2**31, 1], 4),            # a layer as wide as blas_int cannot hold
    ([2**31, 3, 1], 4),            # the input width (a leading dimension)
    ([6, 5, 2**31 + 5], 1),        # the output width
    ([6, 5, 1], 2**31),            # the rows of a chunk or batch
    ([6, 5, 1], 2**40),
])
def test_blas_dimension_overflow_is_refused_before_allocating(units, cap):
    from blasprop import _blas, _core

    if _blas.BLAS_INT_MAX > 2**31:
        pytest.skip("SciPy's BLAS takes 64-bit integers here")
    peak = _peak_traced(lambda: pytest.raises(
        OverflowError, _core.Layout, units, [1] * (len(units) - 2) + [0], 0, 1.0, cap))
    assert peak < 1 << 20


def test_buffer_sizes_beyond_memory_are_refused():
    """Each dimension within blas_int, their products beyond Py_ssize_t's bytes."""
    from blasprop import _core

    peak = _peak_traced(lambda: pytest.raises(
        OverflowError, _core.Layout, [2**30] * 5, [1, 1, 1, 0], 0, 1.0, 2**30))
    assert peak < 1 << 20


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_further_apart_than_blas_int_are_gathered(tmp_path, dtype):
    """A dense X whose rows are more than 2**31 - 1 elements apart (a narrow
    view of a very wide file) cannot be handed to BLAS in place: its leading
    dimension would be narrowed to a negative number. The file is sparse on
    disk: only the pages of the rows read are ever touched."""
    from blasprop._blas import BLAS_INT_MAX

    if BLAS_INT_MAX > 2**31:
        pytest.skip("SciPy's BLAS takes 64-bit integers here")
    width = 2**31 + 16
    path = tmp_path / "wide.bin"
    with open(path, "wb") as f:
        f.truncate(4 * width * np.dtype(dtype).itemsize)
    mm = np.memmap(path, dtype=dtype, mode="r+", shape=(4, width))
    rng = np.random.RandomState(0)
    mm[:, :5] = rng.randn(4, 5)
    X = mm[:, :5]
    assert X.strides[0] // X.itemsize > BLAS_INT_MAX
    Xc = np.ascontiguousarray(X)
    est = MLPRegressor(hidden_layer_sizes=(3,), max_iter=3, random_state=0,
                       batch_size=2).fit(Xc, rng.randn(4))
    expected = forward(est, Xc).ravel()
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(est.predict(X), expected, rtol=tol, atol=tol)
    # and training reads the same rows as from the contiguous copy
    kw = dict(hidden_layer_sizes=(3,), max_iter=3, random_state=0, batch_size=4,
              shuffle=False)
    a = MLPRegressor(**kw).fit(X, np.arange(4.0))
    b = MLPRegressor(**kw).fit(Xc, np.arange(4.0))
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(p, q, rtol=tol, atol=tol)
    del mm, X
