"""Python-callable twins of the C kernels in csrc/, one per kernel.

Each twin checks the sizes of the arrays it is given and calls the kernel
the compiled core calls (``_ckernels.pxd``), for float32 or float64 arrays
alike. They exist so that tests/test_ckernels.py can compare every kernel
with a NumPy reference directly, not only through whole forward and backward
passes; the library itself never calls them.
"""
from cython cimport floating
from libc.stdint cimport uint64_t

from ._ckernels cimport (
    act_grad as _act_grad, activate as _activate, all_finite as _all_finite,
    colsum_add as _colsum_add, decay_sumsq as _decay_sumsq, dot as _dot,
    dropout as _dropout, fill_rows as _fill_rows, finish_grad as _finish_grad,
    loss_delta as _loss_delta, loss_only as _loss_only, mul as _mul,
    step as _step, sumsq as _sumsq, bp_vmath_d, bp_vmath_f, bp_step_settings,
)


cdef int _same(Py_ssize_t a, Py_ssize_t b, str what) except -1:
    if a != b:
        raise ValueError(f"{what}: sizes {a} and {b} differ")
    return 0


def vmath(int fn, const floating[::1] x, floating[::1] out):
    """out = exp (fn 0), expm1 (1) or tanh (2) of x, as the activations
    compute them."""
    _same(x.shape[0], out.shape[0], "x and out")
    if fn < 0 or fn > 2:
        raise ValueError("fn must be 0 (exp), 1 (expm1) or 2 (tanh)")
    if x.shape[0] == 0:
        return
    if floating is double:
        bp_vmath_d(fn, &x[0], &out[0], x.shape[0])
    else:
        bp_vmath_f(fn, &x[0], &out[0], x.shape[0])


def fill_rows(floating[:, ::1] z, const floating[::1] b):
    """z[i, :] = b for every row."""
    _same(z.shape[1], b.shape[0], "columns of z and b")
    if z.shape[0] > 0 and z.shape[1] > 0:
        _fill_rows(&z[0, 0], &b[0], z.shape[0], z.shape[1])


def activate(int act, const floating[:, ::1] z, floating[:, ::1] a):
    """a = f(z) for the activation code ``act`` (softmax by rows)."""
    _same(z.shape[0], a.shape[0], "rows of z and a")
    _same(z.shape[1], a.shape[1], "columns of z and a")
    if z.shape[0] > 0 and z.shape[1] > 0:
        _activate(act, &z[0, 0], &a[0, 0], z.shape[0], z.shape[1])


def act_grad(int act, const floating[::1] z, const floating[::1] a,
             floating[::1] delta):
    """delta *= f'(z), elementwise."""
    _same(z.shape[0], delta.shape[0], "z and delta")
    _same(a.shape[0], delta.shape[0], "a and delta")
    if delta.shape[0] > 0:
        _act_grad(act, &z[0], &a[0], &delta[0], delta.shape[0])


def loss_delta(int loss, const floating[:, ::1] p, const floating[:, ::1] y,
               const floating[::1] sw, floating[:, ::1] delta,
               double huber_delta=1.0):
    """Sum of the (weighted) losses of the rows; writes d loss / d z into
    delta. ``sw`` of length 0 means no weights."""
    _check_loss_args(p, y, sw)
    _same(p.shape[0], delta.shape[0], "rows of p and delta")
    _same(p.shape[1], delta.shape[1], "columns of p and delta")
    if p.shape[0] == 0 or p.shape[1] == 0:
        return 0.0
    return _loss_delta(loss, p.shape[0], p.shape[1], &p[0, 0], &y[0, 0],
                       &sw[0] if sw.shape[0] > 0 else NULL, &delta[0, 0],
                       huber_delta)


def loss_only(int loss, const floating[:, ::1] p, const floating[:, ::1] y,
              const floating[::1] sw, double huber_delta=1.0):
    """The same sum as ``loss_delta``, without the gradient."""
    _check_loss_args(p, y, sw)
    if p.shape[0] == 0 or p.shape[1] == 0:
        return 0.0
    return _loss_only(loss, p.shape[0], p.shape[1], &p[0, 0], &y[0, 0],
                      &sw[0] if sw.shape[0] > 0 else NULL, huber_delta)


cdef int _check_loss_args(const floating[:, ::1] p, const floating[:, ::1] y,
                          const floating[::1] sw) except -1:
    _same(p.shape[0], y.shape[0], "rows of p and y")
    _same(p.shape[1], y.shape[1], "columns of p and y")
    if sw.shape[0] > 0:
        _same(p.shape[0], sw.shape[0], "rows of p and sw")
    return 0


def colsum_add(const floating[:, ::1] x, floating[::1] out):
    """out[j] += sum_i x[i, j]."""
    _same(x.shape[1], out.shape[0], "columns of x and out")
    if x.shape[0] > 0 and x.shape[1] > 0:
        _colsum_add(&x[0, 0], x.shape[0], x.shape[1], &out[0])


def finish_grad(floating[::1] g, const floating[::1] p, Py_ssize_t n_coef,
                double alpha, double scale):
    """g[:n_coef] = (g + alpha p) / scale; g[n_coef:] /= scale."""
    _same(g.shape[0], p.shape[0], "g and p")
    if n_coef < 0 or n_coef > g.shape[0]:
        raise ValueError("n_coef out of range")
    if g.shape[0] > 0:
        _finish_grad(&g[0], &p[0], n_coef, g.shape[0], alpha, scale)


def sumsq(const floating[::1] x):
    """Sum of squares, accumulated in double."""
    return _sumsq(&x[0], x.shape[0]) if x.shape[0] > 0 else 0.0


def dot(const floating[::1] x, const floating[::1] y):
    """Sum of x[i] y[i], accumulated in double."""
    _same(x.shape[0], y.shape[0], "x and y")
    return _dot(&x[0], &y[0], x.shape[0]) if x.shape[0] > 0 else 0.0


def decay_sumsq(floating[::1] x, floating c):
    """x *= c; returns the sum of squares of x before."""
    return _decay_sumsq(&x[0], x.shape[0], c) if x.shape[0] > 0 else 0.0


def step(int solver, floating[::1] p, floating[::1] s1, floating[::1] s2,
         floating[::1] g, Py_ssize_t n_coef, double alpha, double sw_sum,
         double lr, double momentum=0.0, bint nesterov=False,
         double beta_1=0.9, double beta_2=0.999, double eps=1e-8,
         double decay=0.0):
    """One optimizer step of p in place: SGD (solver 0, velocity s1) or Adam
    (solver 1, moments s1 and s2). Returns the sum of squares of
    p[:n_coef] after the step."""
    _same(p.shape[0], g.shape[0], "p and g")
    _same(p.shape[0], s1.shape[0], "p and s1")
    if solver != 0:
        _same(p.shape[0], s2.shape[0], "p and s2")
    elif s2.shape[0] < 1:
        raise ValueError("s2 needs at least one element")
    if solver not in (0, 1):
        raise ValueError("solver must be 0 (sgd) or 1 (adam)")
    if n_coef < 0 or n_coef > p.shape[0]:
        raise ValueError("n_coef out of range")
    if p.shape[0] == 0:
        return 0.0
    cdef bp_step_settings opt
    opt.solver = solver
    opt.lr = lr
    opt.momentum = momentum
    opt.nesterov = nesterov
    opt.beta_1 = beta_1
    opt.beta_2 = beta_2
    opt.eps = eps
    opt.alpha = alpha
    opt.decay = decay
    return _step(&opt, &p[0], &s1[0], &s2[0], &g[0], n_coef, p.shape[0], sw_sum)


def dropout(const floating[::1] inp, floating[::1] out, floating[::1] mask,
            double p, unsigned long long seed):
    """Inverted dropout of inp into out with the mask it draws; returns the
    state of the random stream after the draws."""
    cdef uint64_t state = seed
    _same(inp.shape[0], out.shape[0], "inp and out")
    _same(inp.shape[0], mask.shape[0], "inp and mask")
    if not 0.0 <= p < 1.0:
        raise ValueError("p must be in [0, 1)")
    if inp.shape[0] > 0:
        _dropout(&inp[0], &out[0], &mask[0], inp.shape[0], p, &state)
    return state


def mul(floating[::1] x, const floating[::1] m):
    """x *= m, elementwise."""
    _same(x.shape[0], m.shape[0], "x and m")
    if x.shape[0] > 0:
        _mul(&x[0], &m[0], x.shape[0])


def all_finite(const floating[::1] x):
    """True when no value of x is NaN or infinite."""
    return True if x.shape[0] == 0 else bool(_all_finite(&x[0], x.shape[0]))
