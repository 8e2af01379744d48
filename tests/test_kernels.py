"""The BLAS gateway and the forward kernels against numpy."""

import numpy as np
import pytest
import scipy.sparse as sp

from blasprop import MLPClassifier, MLPRegressor
from blasprop._blas import gemm_memview, set_vector_gemm, vector_gemm

from ._reference import HIDDEN, forward

DTYPES = [(np.float64, 1e-12), (np.float32, 1e-5)]


@pytest.mark.parametrize("dtype,rtol", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
@pytest.mark.parametrize(
    "m,n,k",
    # vector shapes take the dot / axpy / gemv / ger paths of the gateway
    [(1, 1, 1), (1, 1, 6), (1, 7, 3), (5, 1, 4), (13, 9, 1), (1, 9, 1), (7, 1, 1),
     (33, 17, 65),
     # past 64^3 multiply-adds with a small C: A'B in row blocks
     (39, 39, 200), (7, 5, 7500),
     # B' copied: 64 x 64 (the largest copied) and 65 x 64 (not copied);
     # 16 rows (the fewest copied)
     (200, 64, 64), (200, 65, 64), (16, 9, 5),
     # A op(B) in blocks of rows within 10^6 multiply-adds: 657 rows of
     # 39 x 39 (one block), 658 (two), 1,315 (three); 245 rows of 64 x 64
     # (blocks of 244); 65 x 64 is not cut
     (657, 39, 39), (658, 39, 39), (1315, 39, 39), (245, 64, 64), (300, 65, 64)],
)
@pytest.mark.parametrize("vector_gemm_policy", ["level-2", "gemm"])
def test_gemm_matches_numpy(dtype, rtol, trans_a, trans_b, m, n, k, beta,
                            vector_gemm_policy):
    # one-row products and rank-one updates take gemv / ger or gemm, and
    # transposed products their small-kernel forms, whichever the BLAS build
    # is faster at (blasprop._base picks): both ways
    saved = vector_gemm()
    set_vector_gemm(*[vector_gemm_policy == "gemm"] * 5)
    try:
        _check_gemm(dtype, rtol, trans_a, trans_b, m, n, k, beta)
    finally:
        set_vector_gemm(*saved)


def _check_gemm(dtype, rtol, trans_a, trans_b, m, n, k, beta):
    rng = np.random.RandomState(m * 100 + n * 10 + k)
    A = rng.randn(*((k, m) if trans_a else (m, k))).astype(dtype)
    B = rng.randn(*((n, k) if trans_b else (k, n))).astype(dtype)
    C = rng.randn(m, n).astype(dtype)
    if beta == 0:
        C[:] = np.nan  # beta = 0 must overwrite, not multiply, what is there
    opA = (A.T if trans_a else A).astype(np.float64)
    opB = (B.T if trans_b else B).astype(np.float64)
    expected = 0.5 * (opA @ opB)
    # the forward error bound of a k-term sum in the dtype (k u |A||B|),
    # whatever the order BLAS sums in, plus the rounding of beta C
    bound = k * np.finfo(dtype).eps * 0.5 * (np.abs(opA) @ np.abs(opB))
    if beta != 0:
        expected += beta * C.astype(np.float64)
        bound += 2 * np.finfo(dtype).eps * np.abs(beta * C.astype(np.float64))
    gemm_memview(trans_a, trans_b, 0.5, A, B, beta, C)
    np.testing.assert_array_less(np.abs(C - expected), bound + rtol * 1e-3)


def test_gemm_rejects_bad_shapes():
    A = np.ones((2, 3))
    with pytest.raises(ValueError, match="incompatible"):
        gemm_memview(False, False, 1.0, A, np.ones((2, 3)), 0.0, np.ones((2, 3)))


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
