/*
 * Body of the kernels declared in bp_kernels.h, written once for a generic
 * REAL. bp_kernels.c includes this file twice: with REAL = double and
 * S(name) = name##_d, then with REAL = float and S(name) = name##_f.
 * MATH(f) picks the C99 function of the right precision (exp or expf ...).
 * There is deliberately no include guard.
 */

void S(bp_bias_act)(int act, REAL *z, REAL *a, const REAL *b,
                    ptrdiff_t rows, ptrdiff_t cols)
{
    ptrdiff_t i, j;
    for (i = 0; i < rows; ++i) {
        REAL *zr = z + i * cols;
        REAL *ar = a + i * cols;
        switch (act) {
        case BP_IDENTITY:
            for (j = 0; j < cols; ++j) ar[j] = zr[j] + b[j];
            break;
        case BP_LOGISTIC:
            for (j = 0; j < cols; ++j) {
                REAL t = zr[j] + b[j];
                ar[j] = (REAL)1 / ((REAL)1 + MATH(exp)(-t));
            }
            break;
        case BP_TANH:
            for (j = 0; j < cols; ++j) ar[j] = MATH(tanh)(zr[j] + b[j]);
            break;
        case BP_RELU:
            for (j = 0; j < cols; ++j) {
                REAL t = zr[j] + b[j];
                ar[j] = t > 0 ? t : (REAL)0;
            }
            break;
        case BP_LEAKY_RELU:
            for (j = 0; j < cols; ++j) {
                REAL t = zr[j] + b[j];
                ar[j] = t > 0 ? t : (REAL)0.01 * t;
            }
            break;
        case BP_ELU:
            for (j = 0; j < cols; ++j) {
                REAL t = zr[j] + b[j];
                ar[j] = t > 0 ? t : MATH(expm1)(t);
            }
            break;
        case BP_GELU:
            for (j = 0; j < cols; ++j) {
                REAL t = zr[j] + b[j];
                zr[j] = t;
                ar[j] = (REAL)0.5 * t * ((REAL)1 + MATH(erf)(t * (REAL)BP_SQRT1_2));
            }
            break;
        case BP_SILU:
            for (j = 0; j < cols; ++j) {
                REAL t = zr[j] + b[j];
                zr[j] = t;
                ar[j] = t / ((REAL)1 + MATH(exp)(-t));
            }
            break;
        case BP_SOFTPLUS:
            for (j = 0; j < cols; ++j) {
                REAL t = zr[j] + b[j];
                /* log(1 + e^t) without overflow */
                ar[j] = (t > 0 ? t : (REAL)0) + MATH(log1p)(MATH(exp)(-MATH(fabs)(t)));
            }
            break;
        case BP_EXP:
            for (j = 0; j < cols; ++j) ar[j] = MATH(exp)(zr[j] + b[j]);
            break;
        case BP_SOFTMAX: {
            REAL mx, s;
            for (j = 0; j < cols; ++j) ar[j] = zr[j] + b[j];
            mx = ar[0];
            for (j = 1; j < cols; ++j) mx = ar[j] > mx ? ar[j] : mx;
            s = 0;
            for (j = 0; j < cols; ++j) {
                ar[j] = MATH(exp)(ar[j] - mx);
                s += ar[j];
            }
            for (j = 0; j < cols; ++j) ar[j] /= s;
            break;
        }
        default:
            break;
        }
    }
}

void S(bp_act_grad)(int act, const REAL *z, const REAL *a, REAL *delta,
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

void S(bp_colsum_add)(const REAL *x, ptrdiff_t rows, ptrdiff_t cols, REAL *out)
{
    ptrdiff_t i, j;
    for (i = 0; i < rows; ++i) {
        const REAL *xr = x + i * cols;
        for (j = 0; j < cols; ++j) out[j] += xr[j];
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

double S(bp_sumsq)(const REAL *x, ptrdiff_t n)
{
    double s = 0.0;
    ptrdiff_t i;
    for (i = 0; i < n; ++i) s += (double)x[i] * (double)x[i];
    return s;
}

/* Update of p[lo:hi]; `adam` and `coef` are constants at each call site so
 * the compiler emits four branch-free loops. */
static inline double S(bp_step_range)(int adam, int coef, REAL *p, REAL *s1,
                                      REAL *s2, const REAL *g, ptrdiff_t lo,
                                      ptrdiff_t hi, REAL al, REAL sc, REAL eta,
                                      REAL mu, int nesterov, REAL b1, REAL c1,
                                      REAL b2, REAL c2, REAL ep, REAL keep)
{
    double ss = 0.0;
    ptrdiff_t i;
    for (i = lo; i < hi; ++i) {
        /* same order of operations as scikit-learn: (A'delta + alpha W) / n */
        const REAL gi = coef ? (g[i] + al * p[i]) / sc : g[i] / sc;
        if (adam) {
            if (coef) p[i] *= keep;
            s1[i] = b1 * s1[i] + c1 * gi;
            s2[i] = b2 * s2[i] + c2 * (gi * gi);
            p[i] += -eta * s1[i] / (MATH(sqrt)(s2[i]) + ep);
        } else {
            s1[i] = mu * s1[i] - eta * gi;
            p[i] += nesterov ? mu * s1[i] - eta * gi : s1[i];
        }
        if (coef) ss += (double)p[i] * (double)p[i];
    }
    return ss;
}

double S(bp_step)(int solver, REAL *p, REAL *s1, REAL *s2, REAL *g,
                  ptrdiff_t n_coef, ptrdiff_t n, double alpha, double sw_sum,
                  double lr, double momentum, int nesterov, double beta_1,
                  double beta_2, double eps, double decay)
{
    /* One pass over the parameters instead of four (scale the gradient, add
     * the L2 term, step, sum the squares for the next batch's L2 term): at
     * batch size 1 on a small network these passes cost more than the
     * matrix products. */
    const REAL al = (REAL)alpha, sc = (REAL)sw_sum, eta = (REAL)lr;
    const REAL mu = (REAL)momentum, ep = (REAL)eps, keep = (REAL)(1.0 - decay);
    const REAL b1 = (REAL)beta_1, c1 = (REAL)(1.0 - beta_1);
    const REAL b2 = (REAL)beta_2, c2 = (REAL)(1.0 - beta_2);
    double ss;
    if (solver == 0) {
        ss = S(bp_step_range)(0, 1, p, s1, s2, g, 0, n_coef, al, sc, eta, mu,
                              nesterov, b1, c1, b2, c2, ep, keep);
        S(bp_step_range)(0, 0, p, s1, s2, g, n_coef, n, al, sc, eta, mu,
                         nesterov, b1, c1, b2, c2, ep, keep);
    } else {
        ss = S(bp_step_range)(1, 1, p, s1, s2, g, 0, n_coef, al, sc, eta, mu,
                              nesterov, b1, c1, b2, c2, ep, keep);
        S(bp_step_range)(1, 0, p, s1, s2, g, n_coef, n, al, sc, eta, mu,
                         nesterov, b1, c1, b2, c2, ep, keep);
    }
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

int S(bp_all_finite)(const REAL *x, ptrdiff_t n)
{
    ptrdiff_t i;
    for (i = 0; i < n; ++i)
        if (!isfinite(x[i])) return 0;
    return 1;
}
