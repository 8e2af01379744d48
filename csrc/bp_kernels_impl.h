/*
 * Body of the kernels declared in bp_kernels.h, written once for a generic
 * REAL. bp_kernels.c includes this file twice: with REAL = double and
 * S(name) = name##_d, then with REAL = float and S(name) = name##_f.
 * MATH(f) picks the C99 function of the right precision (exp or expf ...);
 * REDUCE and EXPM1_REDUCED are the precision's range reduction and
 * polynomial from bp_kernels.c.
 * There is deliberately no include guard.
 */

/* exp, expm1 and tanh from the same reduction x = n ln2 + r. e^r - 1 is
 * summed without its leading 1 so that small arguments keep their relative
 * accuracy; expm1(x) = 2^n (e^r - 1) + (2^n - 1). tanh(x) = -e / (2 + e)
 * with e = expm1(-2|x|), then the sign of x: no cancellation near 0, exactly
 * 1 for large |x|, NaN propagates. */
static inline REAL S(bp_exp)(REAL x)
{
    REAL scale, r = REDUCE(x, &scale);
    return scale * ((REAL)1 + EXPM1_REDUCED(r));
}

static inline REAL S(bp_expm1)(REAL x)
{
    REAL scale, r = REDUCE(x, &scale);
    return scale * EXPM1_REDUCED(r) + (scale - (REAL)1);
}

static inline REAL S(bp_tanh)(REAL x)
{
    REAL ax = x < 0 ? -x : x;
    REAL e = S(bp_expm1)((REAL)-2 * ax);
    REAL t = -e / ((REAL)2 + e);
    return x < 0 ? -t : t;
}

BP_MULTIVERSION void S(bp_vmath)(int fn, const REAL *x, REAL *out, ptrdiff_t n)
{
    ptrdiff_t i;
    switch (fn) {
    case 0:
        for (i = 0; i < n; ++i) out[i] = S(bp_exp)(x[i]);
        break;
    case 1:
        for (i = 0; i < n; ++i) out[i] = S(bp_expm1)(x[i]);
        break;
    default:
        for (i = 0; i < n; ++i) out[i] = S(bp_tanh)(x[i]);
        break;
    }
}

/* x = f(x) in place for one row; one pointer, so every loop vectorises
 * (the libm calls of tanh, elu, gelu, softplus excepted). */
BP_MULTIVERSION static void S(bp_act_inplace)(int act, REAL *x, ptrdiff_t cols)
{
    ptrdiff_t j;
    switch (act) {
    case BP_LOGISTIC:
        for (j = 0; j < cols; ++j) x[j] = (REAL)1 / ((REAL)1 + S(bp_exp)(-x[j]));
        break;
    case BP_TANH:
        for (j = 0; j < cols; ++j) x[j] = S(bp_tanh)(x[j]);
        break;
    case BP_RELU:
        for (j = 0; j < cols; ++j) x[j] = x[j] > 0 ? x[j] : (REAL)0;
        break;
    case BP_LEAKY_RELU:
        for (j = 0; j < cols; ++j) x[j] = x[j] > 0 ? x[j] : (REAL)0.01 * x[j];
        break;
    case BP_ELU:
        for (j = 0; j < cols; ++j) x[j] = x[j] > 0 ? x[j] : S(bp_expm1)(x[j]);
        break;
    case BP_GELU:
        for (j = 0; j < cols; ++j)
            x[j] = (REAL)0.5 * x[j] * ((REAL)1 + MATH(erf)(x[j] * (REAL)BP_SQRT1_2));
        break;
    case BP_SILU:
        for (j = 0; j < cols; ++j) x[j] = x[j] / ((REAL)1 + S(bp_exp)(-x[j]));
        break;
    case BP_SOFTPLUS:
        /* log(1 + e^x) without overflow */
        for (j = 0; j < cols; ++j)
            x[j] = (x[j] > 0 ? x[j] : (REAL)0) + MATH(log1p)(MATH(exp)(-MATH(fabs)(x[j])));
        break;
    case BP_EXP:
        for (j = 0; j < cols; ++j) x[j] = MATH(exp)(x[j]);
        break;
    case BP_SOFTMAX: {
        REAL mx = x[0], s = 0;
        for (j = 1; j < cols; ++j) mx = x[j] > mx ? x[j] : mx;
        for (j = 0; j < cols; ++j) x[j] = S(bp_exp)(x[j] - mx);
        for (j = 0; j < cols; ++j) s += x[j];
        for (j = 0; j < cols; ++j) x[j] /= s;
        break;
    }
    default: /* identity */
        break;
    }
}

/* The first row, then copies of what is filled so far, doubling: a few long
 * memcpy calls rather than one per row, which costs a call per short row. */
void S(bp_fill_rows)(REAL *z, const REAL *b, ptrdiff_t rows, ptrdiff_t cols)
{
    ptrdiff_t done = 1, k;
    if (rows < 1) return;
    memcpy(z, b, (size_t)cols * sizeof(REAL));
    while (done < rows) {
        k = rows - done < done ? rows - done : done;
        memcpy(z + done * cols, z, (size_t)(k * cols) * sizeof(REAL));
        done += k;
    }
}

void S(bp_activate)(int act, const REAL *z, REAL *a, ptrdiff_t rows, ptrdiff_t cols)
{
    ptrdiff_t i;
    /* z keeps the pre-activation for the backward pass of gelu and silu */
    if (z != a) memcpy(a, z, (size_t)(rows * cols) * sizeof(REAL));
    if (act == BP_SOFTMAX) {
        for (i = 0; i < rows; ++i) S(bp_act_inplace)(act, a + i * cols, cols);
    } else {
        /* elementwise: one long loop over the whole block, not one short
         * loop per row (39-wide rows spent most of their time in the vector
         * loop's prologue and scalar remainder) */
        S(bp_act_inplace)(act, a, rows * cols);
    }
}

BP_MULTIVERSION void S(bp_act_grad)(int act, const REAL *z, const REAL *a, REAL *delta,
                    ptrdiff_t n)
{
    ptrdiff_t i;
    switch (act) {
    case BP_LOGISTIC:
        for (i = 0; i < n; ++i) delta[i] *= a[i] * ((REAL)1 - a[i]);
        break;
    case BP_TANH:
        for (i = 0; i < n; ++i) delta[i] *= (REAL)1 - a[i] * a[i];
        break;
    case BP_RELU:
        for (i = 0; i < n; ++i) if (a[i] == 0) delta[i] = 0;
        break;
    case BP_LEAKY_RELU:
        for (i = 0; i < n; ++i) if (!(a[i] > 0)) delta[i] *= (REAL)0.01;
        break;
    case BP_ELU:
        /* f'(z) = e^z = f(z) + 1 for z <= 0 */
        for (i = 0; i < n; ++i) if (!(a[i] > 0)) delta[i] *= a[i] + (REAL)1;
        break;
    case BP_GELU:
        for (i = 0; i < n; ++i) {
            REAL t = z[i];
            REAL cdf = (REAL)0.5 * ((REAL)1 + MATH(erf)(t * (REAL)BP_SQRT1_2));
            REAL pdf = MATH(exp)((REAL)-0.5 * t * t) * (REAL)BP_INV_SQRT_2PI;
            delta[i] *= cdf + t * pdf;
        }
        break;
    case BP_SILU:
        for (i = 0; i < n; ++i) {
            REAL sg = (REAL)1 / ((REAL)1 + MATH(exp)(-z[i]));
            delta[i] *= sg * ((REAL)1 + z[i] * ((REAL)1 - sg));
        }
        break;
    case BP_SOFTPLUS:
        /* f'(z) = sigmoid(z) = 1 - e^{-f(z)} */
        for (i = 0; i < n; ++i) delta[i] *= -MATH(expm1)(-a[i]);
        break;
    default: /* identity */
        break;
    }
}

/* One term of the loss and, when delta is not NULL, its derivative. */
static double S(bp_loss_impl)(int loss, ptrdiff_t rows, ptrdiff_t cols,
                              const REAL *p, const REAL *y, const REAL *sw,
                              REAL *delta, double huber_delta)
{
    const REAL eps = BP_EPS;
    const REAL inv_cols = (REAL)1 / (REAL)cols;
    double total = 0.0;
    ptrdiff_t i, j;
    for (i = 0; i < rows; ++i) {
        const REAL *pr = p + i * cols;
        const REAL *yr = y + i * cols;
        REAL *dr = delta ? delta + i * cols : NULL;
        const REAL w = sw ? sw[i] : (REAL)1;
        double li = 0.0;
        for (j = 0; j < cols; ++j) {
            const REAL r = pr[j] - yr[j];
            REAL g = r;
            switch (loss) {
            case BP_SQUARED_ERROR:
                li += 0.5 * (double)r * (double)r;
                g = r * inv_cols;
                break;
            case BP_LOG_LOSS: {
                REAL pc = pr[j] < eps ? eps : (pr[j] > 1 - eps ? 1 - eps : pr[j]);
                if (yr[j] != 0) li -= (double)yr[j] * log((double)pc);
                break;
            }
            case BP_BINARY_LOG_LOSS: {
                REAL pc = pr[j] < eps ? eps : (pr[j] > 1 - eps ? 1 - eps : pr[j]);
                if (yr[j] != 0) li -= (double)yr[j] * log((double)pc);
                if (yr[j] != 1) li -= (1.0 - (double)yr[j]) * log(1.0 - (double)pc);
                break;
            }
            case BP_POISSON:
                if (yr[j] != 0) li += (double)yr[j] * log((double)yr[j] / (double)pr[j]);
                li += (double)pr[j] - (double)yr[j];
                break;
            case BP_HUBER: {
                double ar = fabs((double)r);
                if (ar <= huber_delta) {
                    li += 0.5 * ar * ar;
                } else {
                    li += huber_delta * (ar - 0.5 * huber_delta);
                    g = r > 0 ? (REAL)huber_delta : (REAL)-huber_delta;
                }
                g *= inv_cols;
                break;
            }
            case BP_ABSOLUTE_ERROR:
                li += fabs((double)r);
                g = (r > 0 ? (REAL)1 : (r < 0 ? (REAL)-1 : (REAL)0)) * inv_cols;
                break;
            default:
                break;
            }
            if (dr) dr[j] = sw ? g * w : g;
        }
        if (loss == BP_SQUARED_ERROR || loss == BP_HUBER || loss == BP_ABSOLUTE_ERROR)
            li /= (double)cols;
        total += (double)w * li;
    }
    return total;
}

double S(bp_loss_delta)(int loss, ptrdiff_t rows, ptrdiff_t cols,
                        const REAL *p, const REAL *y, const REAL *sw,
                        REAL *delta, double huber_delta)
{
    return S(bp_loss_impl)(loss, rows, cols, p, y, sw, delta, huber_delta);
}

double S(bp_loss)(int loss, ptrdiff_t rows, ptrdiff_t cols,
                  const REAL *p, const REAL *y, const REAL *sw,
                  double huber_delta)
{
    return S(bp_loss_impl)(loss, rows, cols, p, y, sw, NULL, huber_delta);
}

/* Narrow blocks (up to BP_COLSUM_NARROW columns) are summed sixteen columns
 * at a time in local accumulators: adding each row into out[] makes every
 * row wait for the previous row's store. Each column is still summed row by
 * row from 0, in the order of the plain loop. Wide blocks keep the plain
 * loop, which streams the rows; column blocks would stride over them. */
#define BP_COLSUM_NARROW 64

BP_MULTIVERSION void S(bp_colsum_add)(const REAL *x, ptrdiff_t rows, ptrdiff_t cols, REAL *out)
{
    ptrdiff_t i, j, k, w;
    if (rows == 1 || cols > BP_COLSUM_NARROW) {
        for (i = 0; i < rows; ++i) {
            const REAL *xr = x + i * cols;
            for (j = 0; j < cols; ++j) out[j] += xr[j];
        }
        return;
    }
    for (j = 0; j < cols; j += 16) {
        REAL acc[16] = {0};
        const REAL *xc = x + j;
        w = cols - j < 16 ? cols - j : 16;
        if (w == 16) {
            for (i = 0; i < rows; ++i)
                for (k = 0; k < 16; ++k) acc[k] += xc[i * cols + k];
        } else {
            for (i = 0; i < rows; ++i)
                for (k = 0; k < w; ++k) acc[k] += xc[i * cols + k];
        }
        for (k = 0; k < w; ++k) out[j + k] += acc[k];
    }
}

void S(bp_finish_grad)(REAL *g, const REAL *p, ptrdiff_t n_coef, ptrdiff_t n,
                       double alpha, double scale)
{
    /* Same order of operations as scikit-learn: (A'delta + alpha W) / sw_sum. */
    const REAL al = (REAL)alpha, sc = (REAL)scale;
    ptrdiff_t i;
    for (i = 0; i < n_coef; ++i) g[i] = (g[i] + al * p[i]) / sc;
    for (; i < n; ++i) g[i] /= sc;
}

/* Parameters per block for the step and the decay: each block is summed
 * while it is still in L1. */
#define BP_STEP_BLOCK 512

/* Sum of x[i] y[i] in double with `parts` partial sums (a constant at each
 * call site), added as a tree at the end: a single accumulator would wait on
 * the latency of each addition (GCC does not reorder a floating-point sum by
 * itself), and the fixed order keeps the AVX2 and AVX-512 clones' results
 * the same. Sixteen (four AVX2 registers) for the sums of squares of blocks
 * of parameters, inlined into the step and the decay so that they get their
 * clones; eight for the short vectors of bp_dot. */
static inline double S(bp_dot_parts)(const REAL *x, const REAL *y, ptrdiff_t n,
                                     int parts)
{
    double acc[16] = {0.0}, s = 0.0;
    ptrdiff_t i, k, h;
    for (i = 0; i + parts <= n; i += parts)
        for (k = 0; k < parts; ++k) acc[k] += (double)x[i + k] * (double)y[i + k];
    for (; i < n; ++i) s += (double)x[i] * (double)y[i];
    for (h = parts / 2; h > 0; h /= 2)
        for (k = 0; k < h; ++k) acc[k] += acc[k + h];
    return s + acc[0];
}

static inline double S(bp_sumsq_inline)(const REAL *x, ptrdiff_t n)
{
    return S(bp_dot_parts)(x, x, n, 16);
}

double S(bp_sumsq)(const REAL *x, ptrdiff_t n)
{
    return S(bp_sumsq_inline)(x, n);
}

/* The short vectors of the scaled SGD update's bookkeeping (a layer's
 * units, several of them a row at batch size 1): eight partial sums (one
 * AVX-512 or two AVX2 registers), added as a tree, so that the reduction's
 * latency does not dominate a vector this short. */
BP_MULTIVERSION double S(bp_dot)(const REAL *x, const REAL *y, ptrdiff_t n)
{
    return S(bp_dot_parts)(x, y, n, 8);
}

BP_MULTIVERSION double S(bp_decay_sumsq)(REAL *x, ptrdiff_t n, REAL c)
{
    ptrdiff_t b, e, i;
    double ss = 0.0;
    for (b = 0; b < n; b = e) {
        e = n - b > BP_STEP_BLOCK ? b + BP_STEP_BLOCK : n;
        ss += S(bp_sumsq_inline)(x + b, e - b);
        for (i = b; i < e; ++i) x[i] *= c;
    }
    return ss;
}

/* Update of p[lo:hi]; `adam`, `coef` and `scaled` are constants at each call
 * site so the compiler emits branch-free loops. `scaled` is 0 when the
 * batch's weight sum is exactly 1 (batch size 1 without weights): x / 1 == x,
 * and skipping the division is most of the step's cost there. The weights are
 * updated a block at a time and their squares summed (the next batch's L2
 * term) while the block is still in L1, instead of a second pass over all
 * the weights that would read them back from L2. */
/* A step's settings in the kernel's float type, worked out once per step. */
typedef struct S(bp_step_consts) {
    REAL al, sc, eta, mu, b1, c1, b2, c2, ep, keep;
    int nesterov;      /* -1: plain SGD (momentum 0) */
} S(bp_step_consts);

static inline double S(bp_step_range)(int adam, int coef, int scaled,
                                      const S(bp_step_consts) *k, REAL *p, REAL *s1,
                                      REAL *s2, const REAL *g, ptrdiff_t lo, ptrdiff_t hi)
{
    /* in locals: the loops write through p, s1 and s2, which the compiler
     * cannot tell apart from *k */
    const REAL al = k->al, sc = k->sc, eta = k->eta, mu = k->mu;
    const REAL b1 = k->b1, c1 = k->c1, b2 = k->b2, c2 = k->c2, ep = k->ep, keep = k->keep;
    const int nesterov = k->nesterov;
    ptrdiff_t i, b, e;
    double ss = 0.0;
    for (b = lo; b < hi; b = e) {
        e = hi - b > BP_STEP_BLOCK ? b + BP_STEP_BLOCK : hi;
        for (i = b; i < e; ++i) {
            /* same order of operations as scikit-learn: (A'delta + alpha W) / n */
            REAL gi = coef ? g[i] + al * p[i] : g[i];
            if (scaled) gi /= sc;
            if (adam) {
                if (coef) p[i] *= keep;
                s1[i] = b1 * s1[i] + c1 * gi;
                s2[i] = b2 * s2[i] + c2 * (gi * gi);
                p[i] += -eta * s1[i] / (MATH(sqrt)(s2[i]) + ep);
            } else if (nesterov < 0) {
                /* momentum 0: sklearn's update is 0 * v - lr g = -(lr g) either
                 * way, and the velocity is never read again */
                p[i] += -(eta * gi);
            } else {
                s1[i] = mu * s1[i] - eta * gi;
                p[i] += nesterov ? mu * s1[i] - eta * gi : s1[i];
            }
        }
        if (coef) ss += S(bp_sumsq_inline)(p + b, e - b);
    }
    return ss;
}

BP_MULTIVERSION double S(bp_step)(const bp_step_settings *opt, REAL *p, REAL *s1,
                                  REAL *s2, REAL *g, ptrdiff_t n_coef, ptrdiff_t n,
                                  double sw_sum)
{
    /* One pass over the parameters instead of four (scale the gradient, add
     * the L2 term, step, sum the squares for the next batch's L2 term): at
     * batch size 1 on a small network these passes cost more than the
     * matrix products. */
    const int solver = opt->solver;
    S(bp_step_consts) k;
    double ss = 0.0;
    k.al = (REAL)opt->alpha;
    k.sc = (REAL)sw_sum;
    k.eta = (REAL)opt->lr;
    k.mu = (REAL)opt->momentum;
    k.b1 = (REAL)opt->beta_1;
    k.c1 = (REAL)(1.0 - opt->beta_1);
    k.b2 = (REAL)opt->beta_2;
    k.c2 = (REAL)(1.0 - opt->beta_2);
    k.ep = (REAL)opt->eps;
    k.keep = (REAL)(1.0 - opt->decay);
    k.nesterov = solver == 0 && opt->momentum == 0.0 ? -1 : opt->nesterov;
#define BP_STEP(ADAM, COEF, SCALED, LO, HI) \
    S(bp_step_range)(ADAM, COEF, SCALED, &k, p, s1, s2, g, LO, HI)
    if (solver == 0 && sw_sum == 1.0) {
        ss = BP_STEP(0, 1, 0, 0, n_coef);
        BP_STEP(0, 0, 0, n_coef, n);
    } else if (solver == 0) {
        ss = BP_STEP(0, 1, 1, 0, n_coef);
        BP_STEP(0, 0, 1, n_coef, n);
    } else if (sw_sum == 1.0) {
        ss = BP_STEP(1, 1, 0, 0, n_coef);
        BP_STEP(1, 0, 0, n_coef, n);
    } else {
        ss = BP_STEP(1, 1, 1, 0, n_coef);
        BP_STEP(1, 0, 1, n_coef, n);
    }
#undef BP_STEP
    return ss;
}

void S(bp_dropout)(const REAL *in, REAL *out, REAL *mask, ptrdiff_t n,
                   double p, uint64_t *state)
{
    const REAL keep = (REAL)(1.0 / (1.0 - p));
    ptrdiff_t i;
    for (i = 0; i < n; ++i) {
        mask[i] = bp_uniform(state) < p ? (REAL)0 : keep;
        out[i] = in[i] * mask[i];
    }
}

void S(bp_mul)(REAL *x, const REAL *m, ptrdiff_t n)
{
    ptrdiff_t i;
    for (i = 0; i < n; ++i) x[i] *= m[i];
}

/* x * 0 is 0 for finite x and NaN for infinity and NaN: a block's sixteen
 * partial sums of it are all 0 exactly when the block is finite. Written so
 * that it vectorises (an early exit per element did not: a tenth of the
 * seed network's predict, which checks its input this way). */
BP_MULTIVERSION int S(bp_all_finite)(const REAL *x, ptrdiff_t n)
{
    ptrdiff_t b, i, k;
    for (b = 0; b + 256 <= n; b += 256) {
        REAL acc[16] = {0}, s = 0;
        for (i = b; i < b + 256; i += 16)
            for (k = 0; k < 16; ++k) acc[k] += x[i + k] * (REAL)0;
        for (k = 0; k < 16; ++k) s += acc[k];
        if (s != 0) return 0;
    }
    for (i = b; i < n; ++i)
        if (!isfinite(x[i])) return 0;
    return 1;
}
