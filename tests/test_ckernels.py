"""The C kernels of csrc/, one by one, against NumPy references.

``blasprop._kernels`` holds a Python-callable twin of every kernel the
compiled core calls (same C function, sizes checked). The references here are
written from the definitions (scikit-learn's formulas for the losses and the
optimizer steps), not from the kernels' code.
"""

import numpy as np
import pytest
from scipy.special import erf, expit

from blasprop import _kernels as K
from blasprop._activations import (
    BINARY_LOG_LOSS,
    HIDDEN_ACTIVATIONS,
    LOG_LOSS,
    OUTPUT_ACTIVATIONS,
    REGRESSION_LOSSES,
)

DTYPES = (np.float64, np.float32)
ACT = {**HIDDEN_ACTIVATIONS, **OUTPUT_ACTIVATIONS}
LOSS = {name: code for name, (code, _) in REGRESSION_LOSSES.items()}
LOSS.update(log_loss=LOG_LOSS, binary_log_loss=BINARY_LOG_LOSS)


def _rtol(dtype):
    return 1e-12 if dtype == np.float64 else 2e-5


# ---------------------------------------------------------------------------
# exp, expm1 and tanh: accuracy in units in the last place

# Where the range reduction is exact: outside it the functions clamp their
# argument to it (exp(1000) is e^709, not infinity), which the activations
# rely on to stay finite.
_DOMAIN = {np.float64: (-708.0, 709.0), np.float32: (-87.0, 88.0)}
# Bounds as the CHANGELOG states them, against the exact value (2,000,000
# arguments of this sampling gave at most 1.41, 2.93 and 2.78 ulp in float64,
# 1.22, 2.34 and 2.49 in float32).
_ULPS = {0: 1.5, 1: 3, 2: 3}


def _reference(fn, x):
    """The exact function value, rounded once at the end: in long double
    for float64 arguments (where it has a wider significand), in float64 for
    float32 arguments."""
    if x.dtype == np.float32:
        wide = x.astype(np.float64)
    else:
        if np.finfo(np.longdouble).nmant < 63:
            pytest.skip("no extended-precision long double on this platform "
                        "to compute a float64 reference in")
        wide = x.astype(np.longdouble)
    return (np.exp, np.expm1, np.tanh)[fn](wide)


def _ulp_error(got, ref, dtype):
    """|got - ref| in units of the last place of ref in dtype."""
    ref_rounded = ref.astype(dtype)
    ulp = np.spacing(np.abs(ref_rounded)).astype(ref.dtype)
    return np.abs(got.astype(ref.dtype) - ref) / ulp


def _arguments(fn, dtype, n=200_000):
    rng = np.random.default_rng(fn)
    lo, hi = _DOMAIN[dtype]
    if fn == 2:  # tanh saturates beyond 20 or so: look closely near 0
        lo, hi = -40.0, 40.0
    wide = rng.uniform(lo, hi, n)
    # small magnitudes, where expm1 and tanh must keep relative accuracy
    tiny = np.finfo(dtype).tiny
    small = np.exp(rng.uniform(np.log(tiny) / 2, 0, n // 2)) * rng.choice([-1, 1], n // 2)
    special = [0.0, -0.0, lo, hi, 1.0, -1.0, np.log(2) / 2, -np.log(2) / 2, 0.5, -0.5]
    return np.concatenate([wide, small, special]).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn,name", [(0, "exp"), (1, "expm1"), (2, "tanh")])
def test_vectorised_math_within_stated_ulps(fn, name, dtype):
    x = _arguments(fn, dtype)
    got = np.empty_like(x)
    K.vmath(fn, x, got)
    err = _ulp_error(got, _reference(fn, x), dtype)
    assert err.max() <= _ULPS[fn], (
        f"{name} {np.dtype(dtype).name}: {err.max():.2f} ulp at x = {x[err.argmax()]!r}"
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_vectorised_math_special_values(dtype):
    x = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30], dtype=dtype)
    out = np.empty_like(x)
    K.vmath(2, x, out)  # tanh
    np.testing.assert_array_equal(out[1:], [1, -1, 1, -1])
    assert np.isnan(out[0])
    K.vmath(1, x, out)  # expm1 goes to -1 below, stays finite above
    assert np.isnan(out[0]) and out[2] == -1 and out[4] == -1
    assert np.isfinite(out[1]) and out[1] > 1e37
    K.vmath(0, x, out)  # exp: clamped to the normal range, never 0 or inf
    assert np.isnan(out[0])
    assert np.isfinite(out[1:]).all() and (out[1:] > 0).all()


# ---------------------------------------------------------------------------
# Activations and their derivatives


def _act_ref(name, z):
    z = z.astype(np.float64)
    return {
        "identity": lambda: z,
        "logistic": lambda: expit(z),
        "tanh": lambda: np.tanh(z),
        "relu": lambda: np.maximum(z, 0),
        "leaky_relu": lambda: np.where(z > 0, z, 0.01 * z),
        "elu": lambda: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
        "gelu": lambda: 0.5 * z * (1 + erf(z / np.sqrt(2))),
        "silu": lambda: z * expit(z),
        "softplus": lambda: np.logaddexp(0, z),
        "exp": lambda: np.exp(z),
        "softmax": lambda: np.exp(z - z.max(axis=1, keepdims=True))
        / np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True),
    }[name]()


def _act_deriv_ref(name, z):
    z = z.astype(np.float64)
    s = expit(z)
    pdf = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    return {
        "identity": lambda: np.ones_like(z),
        "logistic": lambda: s * (1 - s),
        "tanh": lambda: 1 - np.tanh(z) ** 2,
        "relu": lambda: (z > 0).astype(float),
        "leaky_relu": lambda: np.where(z > 0, 1.0, 0.01),
        "elu": lambda: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0))),
        "gelu": lambda: 0.5 * (1 + erf(z / np.sqrt(2))) + z * pdf,
        "silu": lambda: s * (1 + z * (1 - s)),
        "softplus": lambda: s,
    }[name]()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ACT))
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (200, 39), (5, 300)])
def test_activate_matches_numpy(name, dtype, shape):
    rng = np.random.default_rng(0)
    z = rng.normal(scale=3, size=shape).astype(dtype)
    z.flat[0] = 0.0
    a = np.full(shape, np.nan, dtype=dtype)
    K.activate(ACT[name], z, a)
    np.testing.assert_allclose(a, _act_ref(name, z), rtol=_rtol(dtype) * 10,
                               atol=np.finfo(dtype).eps * 4)
    # in place (z is a), as the forward pass calls it
    b = z.copy()
    K.activate(ACT[name], b, b)
    np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(HIDDEN_ACTIVATIONS))
def test_act_grad_matches_numpy(name, dtype):
    rng = np.random.default_rng(1)
    z = rng.normal(scale=3, size=500).astype(dtype)
    z = z[z != 0]  # relu's derivative at exactly 0 is a convention
    a = _act_ref(name, z).astype(dtype)
    delta = rng.normal(size=z.shape).astype(dtype)
    expected = delta.astype(np.float64) * _act_deriv_ref(name, z)
    K.act_grad(HIDDEN_ACTIVATIONS[name], z, a, delta)
    np.testing.assert_allclose(delta, expected, rtol=1e-9 if dtype == np.float64 else 1e-4,
                               atol=np.finfo(dtype).eps * 8)


# ---------------------------------------------------------------------------
# Losses: the sum over rows of (weighted) losses and d loss / d z


def _loss_ref(name, p, y, sw, delta):
    eps = np.finfo(p.dtype).eps  # the clip of the log losses, in p's dtype
    p, y = p.astype(np.float64), y.astype(np.float64)
    k = p.shape[1]
    r = p - y
    if name == "squared_error":
        rows, grad = 0.5 * (r ** 2).mean(axis=1), r / k
    elif name == "huber":
        ar = np.abs(r)
        quad = ar <= delta
        rows = np.where(quad, 0.5 * r ** 2, delta * (ar - 0.5 * delta)).mean(axis=1)
        grad = np.where(quad, r, delta * np.sign(r)) / k
    elif name == "absolute_error":
        rows, grad = np.abs(r).mean(axis=1), np.sign(r) / k
    elif name == "poisson":
        with np.errstate(divide="ignore", invalid="ignore"):
            ylog = np.where(y > 0, y * np.log(y / p), 0.0)
        rows, grad = (ylog + p - y).sum(axis=1), r
    else:  # log losses, p clipped as scikit-learn clips it
        pc = np.clip(p, eps, 1 - eps)
        if name == "log_loss":
            rows = -(np.where(y != 0, y * np.log(pc), 0.0)).sum(axis=1)
        else:
            rows = -(np.where(y != 0, y * np.log(pc), 0.0)
                     + np.where(y != 1, (1 - y) * np.log(1 - pc), 0.0)).sum(axis=1)
        grad = r
    w = np.ones(p.shape[0]) if sw is None else sw.astype(np.float64)
    return (w * rows).sum(), grad * w[:, None]


def _loss_data(name, dtype, rows, cols, rng):
    if name == "log_loss":
        z = rng.normal(size=(rows, cols))
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        y = np.eye(cols)[rng.integers(0, cols, rows)]
    elif name == "binary_log_loss":
        p = expit(rng.normal(size=(rows, cols)))
        y = rng.integers(0, 2, (rows, cols)).astype(float)
    elif name == "poisson":
        p = np.exp(rng.normal(size=(rows, cols)))
        y = rng.poisson(2.0, (rows, cols)).astype(float)
    else:
        p = rng.normal(size=(rows, cols))
        y = rng.normal(size=(rows, cols))
    return p.astype(dtype), y.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(LOSS))
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_and_delta_match_numpy(name, dtype, weighted):
    rng = np.random.default_rng(2)
    cols = 2 if name == "binary_log_loss" else 3
    p, y = _loss_data(name, dtype, 50, cols, rng)
    sw = rng.uniform(0.1, 3, 50).astype(dtype) if weighted else np.empty(0, dtype)
    delta = np.full_like(p, np.nan)
    total = K.loss_delta(LOSS[name], p, y, sw, delta, huber_delta=0.7)
    only = K.loss_only(LOSS[name], p, y, sw, huber_delta=0.7)
    ref_total, ref_delta = _loss_ref(name, p, y, sw if weighted else None, 0.7)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(total, ref_total, rtol=rtol)
    assert only == total
    np.testing.assert_allclose(delta, ref_delta, rtol=rtol * 10, atol=np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["log_loss", "binary_log_loss"])
def test_log_losses_clip_certain_wrong_predictions(name, dtype):
    # p of exactly 0 or 1 on the wrong class: -log(eps) per wrong entry, as
    # scikit-learn clips, never infinity
    p = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=dtype)
    y = np.array([[1.0, 0.0], [1.0, 0.0]], dtype=dtype)
    wrong = 1 if name == "log_loss" else 2
    total = K.loss_only(LOSS[name], p, y, np.empty(0, dtype))
    np.testing.assert_allclose(total, -wrong * np.log(np.finfo(dtype).eps)
                               - (0 if name == "log_loss" else 2 * np.log1p(-np.finfo(dtype).eps)),
                               rtol=1e-6)


# ---------------------------------------------------------------------------
# Reductions and elementwise helpers


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 5), (200, 1), (200, 39), (17, 64), (9, 65), (256, 512)])
def test_colsum_add(dtype, shape):
    rng = np.random.default_rng(3)
    x = rng.normal(size=shape).astype(dtype)
    out = rng.normal(size=shape[1]).astype(dtype)
    expected = out.astype(np.float64) + x.astype(np.float64).sum(axis=0)
    K.colsum_add(x, out)
    np.testing.assert_allclose(out, expected, rtol=_rtol(dtype) * 100, atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 7, 8, 15, 16, 17, 39, 512, 513, 5000])
def test_sums_of_products(dtype, n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=n).astype(dtype)
    y = rng.normal(size=n).astype(dtype)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    # accumulated in double: within double rounding of the exact sums
    np.testing.assert_allclose(K.sumsq(x), x64 @ x64, rtol=1e-13)
    np.testing.assert_allclose(K.dot(x, y), x64 @ y64, rtol=1e-12, atol=1e-12)
    before = x.copy()
    ss = K.decay_sumsq(x, dtype(0.75))
    np.testing.assert_allclose(ss, x64 @ x64, rtol=1e-13)
    np.testing.assert_array_equal(x, before * dtype(0.75))


@pytest.mark.parametrize("dtype", DTYPES)
def test_fill_rows_mul_finish_grad(dtype):
    rng = np.random.default_rng(4)
    b = rng.normal(size=13).astype(dtype)
    for rows in (1, 2, 3, 7, 64, 100):
        z = np.full((rows, 13), np.nan, dtype=dtype)
        K.fill_rows(z, b)
        np.testing.assert_array_equal(z, np.tile(b, (rows, 1)))
    x = rng.normal(size=40).astype(dtype)
    m = rng.normal(size=40).astype(dtype)
    expected = x * m
    K.mul(x, m)
    np.testing.assert_array_equal(x, expected)
    g = rng.normal(size=30).astype(dtype)
    p = rng.normal(size=30).astype(dtype)
    expected = g.copy()
    expected[:20] = (g[:20] + dtype(0.01) * p[:20]) / dtype(7)
    expected[20:] = g[20:] / dtype(7)
    K.finish_grad(g, p, 20, 0.01, 7.0)
    np.testing.assert_allclose(g, expected, rtol=_rtol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 15, 16, 255, 256, 257, 1000])
def test_all_finite_finds_every_position(dtype, n):
    x = np.ones(n, dtype=dtype)
    assert K.all_finite(x)
    for bad in (np.nan, np.inf, -np.inf):
        for pos in sorted({0, n // 2, n - 1, min(n - 1, 255), min(n - 1, 256)}):
            y = x.copy()
            y[pos] = bad
            assert not K.all_finite(y), (bad, pos)
    big = np.full(n, np.finfo(dtype).max, dtype=dtype)
    assert K.all_finite(big)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_masks(dtype):
    n, p = 100_000, 0.3
    inp = np.random.default_rng(5).normal(size=n).astype(dtype)
    out, mask = np.empty_like(inp), np.empty_like(inp)
    state = K.dropout(inp, out, mask, p, 12345)
    keep = dtype(1 / (1 - p))
    assert set(np.unique(mask)) <= {dtype(0), keep}
    assert abs((mask == 0).mean() - p) < 0.01
    np.testing.assert_array_equal(out, inp * mask)
    out2, mask2 = np.empty_like(inp), np.empty_like(inp)
    assert K.dropout(inp, out2, mask2, p, 12345) == state  # same seed, same stream
    np.testing.assert_array_equal(mask2, mask)
    K.dropout(inp, out2, mask2, p, 54321)
    assert not np.array_equal(mask2, mask)


# ---------------------------------------------------------------------------
# Optimizer steps against scikit-learn's update rules


def _sgd_ref(p, v, g, n_coef, alpha, sw_sum, lr, momentum, nesterov):
    g = g.copy()
    g[:n_coef] += alpha * p[:n_coef]
    g /= sw_sum
    v = momentum * v - lr * g
    p = p + (momentum * v - lr * g if nesterov else v)
    return p, v


def _adam_ref(p, m, s, g, n_coef, alpha, sw_sum, lr_t, b1, b2, eps, decay):
    g = g.copy()
    g[:n_coef] += alpha * p[:n_coef]
    g /= sw_sum
    p = p.copy()
    p[:n_coef] *= 1 - decay
    m = b1 * m + (1 - b1) * g
    s = b2 * s + (1 - b2) * g * g
    return p - lr_t * m / (np.sqrt(s) + eps), m, s


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sw_sum", [1.0, 32.0])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_step(dtype, sw_sum, momentum, nesterov):
    rng = np.random.default_rng(6)
    n, n_coef = 1300, 1100  # several of the step's 512-parameter blocks
    p, v, g = (rng.normal(size=n).astype(dtype) for _ in range(3))
    ref_p, ref_v = _sgd_ref(p.astype(np.float64), v.astype(np.float64),
                            g.astype(np.float64), n_coef, 1e-3, sw_sum, 0.01,
                            momentum, nesterov)
    ss = K.step(0, p, v, np.zeros(1, dtype), g, n_coef, 1e-3, sw_sum, 0.01,
                momentum, nesterov)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(p, ref_p, rtol=rtol, atol=1e-6 if dtype == np.float32 else 0)
    if momentum:
        np.testing.assert_allclose(v, ref_v, rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(ss, (ref_p[:n_coef] ** 2).sum(), rtol=rtol * 10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sw_sum", [1.0, 200.0])
@pytest.mark.parametrize("decay", [0.0, 1e-3])
def test_adam_step(dtype, sw_sum, decay):
    rng = np.random.default_rng(7)
    n, n_coef = 1300, 1100
    p, g = rng.normal(size=n).astype(dtype), rng.normal(size=n).astype(dtype)
    m = rng.normal(scale=0.1, size=n).astype(dtype)
    s = rng.uniform(0, 0.1, n).astype(dtype)
    alpha = 0.0 if decay else 1e-4
    ref_p, ref_m, ref_s = _adam_ref(*(a.astype(np.float64) for a in (p, m, s, g)),
                                    n_coef, alpha, sw_sum, 1e-3, 0.9, 0.999, 1e-8, decay)
    ss = K.step(1, p, m, s, g, n_coef, alpha, sw_sum, 1e-3, beta_1=0.9,
                beta_2=0.999, eps=1e-8, decay=decay)
    rtol = 1e-11 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(m, ref_m, rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(s, ref_s, rtol=rtol, atol=1e-8)
    np.testing.assert_allclose(p, ref_p, rtol=rtol, atol=1e-6 if dtype == np.float32 else 0)
    np.testing.assert_allclose(ss, (ref_p[:n_coef] ** 2).sum(), rtol=rtol * 10)


# ---------------------------------------------------------------------------
# The twins check sizes before calling C


def test_twins_refuse_mismatched_sizes():
    a, b = np.zeros(5), np.zeros(6)
    m = np.zeros((3, 4))
    with pytest.raises(ValueError):
        K.vmath(0, a, b)
    with pytest.raises(ValueError):
        K.vmath(3, a, a)
    with pytest.raises(ValueError):
        K.dot(a, b)
    with pytest.raises(ValueError):
        K.activate(1, m, np.zeros((3, 5)))
    with pytest.raises(ValueError):
        K.loss_delta(0, m, np.zeros((3, 5)), np.empty(0), m)
    with pytest.raises(ValueError):
        K.loss_only(0, m, m, np.ones(2))
    with pytest.raises(ValueError):
        K.colsum_add(m, np.zeros(3))
    with pytest.raises(ValueError):
        K.step(1, a, a, b, a, 5, 0.0, 1.0, 0.1)
    with pytest.raises(ValueError):
        K.step(0, a, a, a, a, 6, 0.0, 1.0, 0.1)
    with pytest.raises(ValueError):
        K.dropout(a, a, b, 0.5, 1)
    with pytest.raises(ValueError):
        K.dropout(a, a, a, 1.0, 1)
    with pytest.raises(ValueError):
        K.finish_grad(a, b, 2, 0.0, 1.0)
    with pytest.raises(ValueError):  # float32 and float64 mixed
        K.mul(a, a.astype(np.float32))
