"""The BLAS gateway (_blas.pyx) and its routing policy (_blas_policy.py)
against numpy: each thin wrapper through its memoryview twin, and the
routing function ``gemm`` under every policy, on the shapes that take each
of its routes."""

import contextlib

import numpy as np
import pytest
from blasprop._blas import (
    _axpy_memview,
    _dot_memview,
    _gemm_memview,
    _gemv_memview,
    _ger_memview,
    gemm_memview,
)

from blasprop import _blas
from blasprop._blas_policy import SMALL_KERNEL_LIMITS, Routes, current, use

DTYPES = [(np.float64, 1e-12), (np.float32, 1e-5)]

# the routes, all off (level 2 for vector shapes), all on, and mixed: the
# one SkylakeX OpenBLAS gets, and its opposite
POLICIES = {
    "level-2": Routes(),
    "gemm": Routes(*[True] * 5),
    "skylakex": Routes(True, False, True, True, True),
    "mixed": Routes(False, True, False, True, False),
}


@contextlib.contextmanager
def policy(routes, **limits):
    """The gateway under ``routes`` (and ``limits`` in place of the small
    kernels' own), restored afterwards."""
    saved = _blas.get_policy()
    try:
        _blas.set_policy(**Routes(*routes)._asdict(), **{**SMALL_KERNEL_LIMITS, **limits})
        yield
    finally:
        _blas.set_policy(**saved)


def _bound(dtype, k, *terms):
    """The forward error bound of a k-term sum in ``dtype`` (k u sum |terms|)."""
    return k * np.finfo(dtype).eps * sum(terms)


def _assert_within(got, expected, bound, rtol):
    np.testing.assert_array_less(np.abs(got - expected), bound + rtol * 1e-3)


# ---------------------------------------------------------------------------
# The routing function


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
@pytest.mark.parametrize("vector_gemm_policy", list(POLICIES))
def test_gemm_matches_numpy(dtype, rtol, trans_a, trans_b, m, n, k, beta,
                            vector_gemm_policy):
    # one-row products and rank-one updates take gemv / ger or gemm, and
    # transposed products their small-kernel forms, whichever the BLAS build
    # is faster at (_blas_policy picks): every way
    with policy(POLICIES[vector_gemm_policy]):
        _check_gemm(dtype, rtol, trans_a, trans_b, m, n, k, beta)


def _check_gemm(dtype, rtol, trans_a, trans_b, m, n, k, beta, gemm=gemm_memview,
                pad=0):
    """gemm against numpy; ``pad`` extra columns after each operand's rows
    make every leading dimension larger than its row."""
    rng = np.random.RandomState(m * 100 + n * 10 + k)

    def operand(rows, cols):
        return rng.randn(rows, cols + pad).astype(dtype)[:, :cols]

    A = operand(*((k, m) if trans_a else (m, k)))
    B = operand(*((n, k) if trans_b else (k, n)))
    C = operand(m, n)
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
    gemm(trans_a, trans_b, 0.5, A, B, beta, C)
    np.testing.assert_array_less(np.abs(C - expected), bound + rtol * 1e-3)


@pytest.mark.parametrize("dtype,rtol", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m,n,k", [(1, 1, 5), (1, 6, 1), (6, 1, 1), (1, 6, 4), (6, 1, 4),
                                   (6, 5, 1), (30, 6, 5), (6, 5, 30), (9, 7, 11)])
@pytest.mark.parametrize("routes", list(POLICIES))
def test_gemm_routes_with_small_limits_and_leading_dimensions(dtype, rtol, trans_a, trans_b,
                                                              m, n, k, routes):
    # limits far below the kernels' own take the row-block and copy routes on
    # small shapes, and with padded rows every route reads its leading
    # dimensions and strides from the rows, not the shapes
    with policy(POLICIES[routes], small_max_entries=64, copy_bt_min_rows=2,
                small_kernel_max_madds=64, tn_block_max_madds=64):
        _check_gemm(dtype, rtol, trans_a, trans_b, m, n, k, 0.0, pad=3)
        _check_gemm(dtype, rtol, trans_a, trans_b, m, n, k, 2.0, pad=3)


def test_gemm_rejects_bad_shapes():
    A = np.ones((2, 3))
    with pytest.raises(ValueError, match="incompatible"):
        gemm_memview(False, False, 1.0, A, np.ones((2, 3)), 0.0, np.ones((2, 3)))


@pytest.mark.parametrize("gemm", [gemm_memview, _gemm_memview])
def test_gemm_twins_reject_what_blas_cannot_take(gemm):
    A, B, C = np.ones((2, 3)), np.ones((3, 4)), np.ones((2, 4))
    with pytest.raises(ValueError, match="empty"):
        gemm(False, False, 1.0, np.ones((2, 0)), np.ones((0, 4)), 0.0, C)
    with pytest.raises(ValueError, match="contiguous"):
        gemm(False, False, 1.0, np.ones((2, 6))[:, ::2], B, 0.0, C)
    with pytest.raises(ValueError, match="contiguous"):
        gemm(False, False, 1.0, A, B, 0.0, np.ones((4, 2)).T)
    with pytest.raises(ValueError, match="apart"):
        gemm(False, False, 1.0, A[::-1], B, 0.0, C)
    with pytest.raises((TypeError, ValueError)):  # one dtype throughout
        gemm(False, False, 1.0, A, B.astype(np.float32), 0.0, C)


# ---------------------------------------------------------------------------
# The thin wrappers


@pytest.mark.parametrize("dtype,rtol", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 100])
@pytest.mark.parametrize("incx,incy", [(1, 1), (2, 3)])
def test_dot_matches_numpy(dtype, rtol, n, incx, incy):
    rng = np.random.RandomState(n)
    x = rng.randn(n * incx).astype(dtype)[::incx]
    y = rng.randn(n * incy).astype(dtype)[::incy]
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    got = _dot_memview(x, y)
    _assert_within(got, x64 @ y64, _bound(dtype, n, np.abs(x64) @ np.abs(y64)), rtol)


@pytest.mark.parametrize("dtype,rtol", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 100])
@pytest.mark.parametrize("incx,incy", [(1, 1), (3, 2)])
@pytest.mark.parametrize("alpha", [1.0, -0.5])
def test_axpy_matches_numpy(dtype, rtol, n, incx, incy, alpha):
    rng = np.random.RandomState(n)
    x = rng.randn(n * incx).astype(dtype)[::incx]
    y_base = rng.randn(n * incy).astype(dtype)
    y = y_base[::incy]
    expected = alpha * x.astype(np.float64) + y.astype(np.float64)
    bound = _bound(dtype, 2, np.abs(alpha * x.astype(np.float64)) + np.abs(y.astype(np.float64)))
    untouched = np.delete(y_base, np.arange(0, n * incy, incy)).copy()
    _axpy_memview(alpha, x, y)
    _assert_within(y, expected, bound, rtol)
    # the stride leaves the elements between untouched
    np.testing.assert_array_equal(np.delete(y_base, np.arange(0, n * incy, incy)), untouched)


@pytest.mark.parametrize("dtype,rtol", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("m,n", [(1, 1), (1, 9), (9, 1), (13, 7)])
@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("inc", [1, 2])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.5)])
def test_gemv_matches_numpy(dtype, rtol, trans_a, m, n, pad, inc, alpha, beta):
    rng = np.random.RandomState(m * 10 + n)
    A = rng.randn(m, n + pad).astype(dtype)[:, :n]
    opA = (A.T if trans_a else A).astype(np.float64)
    rows, cols = opA.shape
    x = rng.randn(cols * inc).astype(dtype)[::inc]
    y = rng.randn(rows * inc).astype(dtype)[::inc]
    if beta == 0:
        y[:] = np.nan  # beta = 0 overwrites
    expected = alpha * (opA @ x.astype(np.float64))
    bound = _bound(dtype, cols, np.abs(alpha) * (np.abs(opA) @ np.abs(x.astype(np.float64))))
    if beta != 0:
        expected += beta * y.astype(np.float64)
        bound += 2 * np.finfo(dtype).eps * np.abs(beta * y.astype(np.float64))
    _gemv_memview(trans_a, alpha, A, x, beta, y)
    _assert_within(y, expected, bound, rtol)


@pytest.mark.parametrize("dtype,rtol", DTYPES)
@pytest.mark.parametrize("m,n", [(1, 1), (1, 9), (9, 1), (13, 7)])
@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("incx,incy", [(1, 1), (2, 3)])
@pytest.mark.parametrize("alpha", [1.0, -0.5])
def test_ger_matches_numpy(dtype, rtol, m, n, pad, incx, incy, alpha):
    rng = np.random.RandomState(m * 10 + n)
    x = rng.randn(m * incx).astype(dtype)[::incx]
    y = rng.randn(n * incy).astype(dtype)[::incy]
    A_base = rng.randn(m, n + pad).astype(dtype)
    A = A_base[:, :n]
    padding = A_base[:, n:].copy()
    outer = alpha * np.outer(x.astype(np.float64), y.astype(np.float64))
    expected = outer + A.astype(np.float64)
    bound = _bound(dtype, 2, np.abs(outer) + np.abs(A.astype(np.float64)))
    _ger_memview(alpha, x, y, A)
    _assert_within(A, expected, bound, rtol)
    np.testing.assert_array_equal(A_base[:, n:], padding)


@pytest.mark.parametrize("dtype,rtol", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (1, 7, 3), (5, 1, 4), (13, 9, 1), (33, 17, 65)])
@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_plain_gemm_matches_numpy(dtype, rtol, trans_a, trans_b, m, n, k, pad, beta):
    _check_gemm(dtype, rtol, trans_a, trans_b, m, n, k, beta, gemm=_gemm_memview, pad=pad)


def test_wrapper_twins_reject_bad_vectors():
    x, y, A = np.ones(3), np.ones(4), np.ones((3, 4))
    with pytest.raises(ValueError, match="incompatible"):
        _dot_memview(x, y)
    with pytest.raises(ValueError, match="incompatible"):
        _axpy_memview(1.0, x, y)
    with pytest.raises(ValueError, match="incompatible"):
        _gemv_memview(False, 1.0, A, x, 0.0, np.ones(3))
    with pytest.raises(ValueError, match="incompatible"):
        _ger_memview(1.0, y, x, A)
    with pytest.raises(ValueError, match="empty"):
        _dot_memview(np.ones(0), np.ones(0))
    with pytest.raises(ValueError, match="stride"):
        _dot_memview(x[::-1], x)
    with pytest.raises(ValueError, match="contiguous"):
        _ger_memview(1.0, x, np.ones(2), A[:, ::2])


# ---------------------------------------------------------------------------
# The policy


def test_policy_is_set_by_name_and_read_back():
    saved = _blas.get_policy()
    assert set(saved) == set(Routes._fields) | set(SMALL_KERNEL_LIMITS)
    try:
        use(Routes(rows_gemm_float=True, small_kernels=True))
        assert current() == Routes(False, True, False, False, True)
        assert {k: _blas.get_policy()[k] for k in SMALL_KERNEL_LIMITS} == SMALL_KERNEL_LIMITS
    finally:
        _blas.set_policy(**saved)
    assert _blas.get_policy() == saved


def test_set_policy_refuses_missing_and_bad_fields():
    full = {**Routes()._asdict(), **SMALL_KERNEL_LIMITS}
    saved = _blas.get_policy()
    with pytest.raises(TypeError):
        _blas.set_policy(**{k: v for k, v in full.items() if k != "small_kernels"})
    with pytest.raises(TypeError):
        _blas.set_policy(**full, small_kernel=True)
    with pytest.raises(TypeError):
        _blas.set_policy(*full.values())  # named fields only
    with pytest.raises(ValueError, match="small_max_entries"):
        _blas.set_policy(**{**full, "small_max_entries": 64 * 64 + 1})  # the copy buffer's size
    with pytest.raises(ValueError, match="copy_bt_min_rows"):
        _blas.set_policy(**{**full, "copy_bt_min_rows": -1})
    with pytest.raises(ValueError, match="small_kernel_max_madds"):
        _blas.set_policy(**{**full, "small_kernel_max_madds": 100})
    with pytest.raises(ValueError, match="tn_block_max_madds"):
        _blas.set_policy(**{**full, "tn_block_max_madds": 0})
    assert _blas.get_policy() == saved  # a refused policy changes nothing


def test_check_blas_int():
    from blasprop._blas import BLAS_INT_MAX, check_blas_int

    assert BLAS_INT_MAX in (2**31 - 1, 2**63 - 1)
    check_blas_int(BLAS_INT_MAX, "n")
    with pytest.raises(OverflowError, match="n .* exceeds"):
        check_blas_int(BLAS_INT_MAX + 1, "n")


def test_routes_follow_the_small_matrix_kernels():
    from blasprop._blas_policy import routes_for

    assert routes_for(False) == Routes()  # level 2, no small-kernel forms
    # float one-row products stay on sgemv even with the small kernels
    assert routes_for(True) == POLICIES["skylakex"]
