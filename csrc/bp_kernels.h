/*
 * blasprop elementwise kernels: activations, losses, optimizer steps.
 *
 * Plain C11, no Python.h. Every function exists twice, with the suffix _d
 * (double) and _f (float); both are generated from bp_kernels_impl.h.
 * Matrices are row-major and contiguous. The matrix products themselves are
 * not here: they go to BLAS from the Cython layer (src/blasprop/_blas.pyx).
 */
#ifndef BP_KERNELS_H
#define BP_KERNELS_H

#include <stddef.h>

/* The codes below are the only definition of each: src/blasprop/_codes.pxd
 * exposes them to Cython and Python (cpdef enum), and every Python map of
 * names to codes is derived from the member names (BP_LEAKY_RELU is
 * "leaky_relu"). */

/* Activation codes. Hidden layers may use any of the first nine; output
 * layers use identity, logistic, softmax or exp. */
enum bp_activation {
    BP_IDENTITY = 0,
    BP_LOGISTIC = 1,
    BP_TANH = 2,
    BP_RELU = 3,
    BP_LEAKY_RELU = 4,
    BP_ELU = 5,
    BP_GELU = 6,
    BP_SILU = 7,
    BP_SOFTPLUS = 8,
    BP_SOFTMAX = 9,
    BP_EXP = 10
};

/* Loss codes, each paired with its output activation by the Python layer. */
enum bp_loss {
    BP_SQUARED_ERROR = 0,   /* identity output, half squared error, mean over outputs */
    BP_LOG_LOSS = 1,        /* softmax output, multiclass cross-entropy */
    BP_BINARY_LOG_LOSS = 2, /* logistic output, binary / multilabel cross-entropy */
    BP_POISSON = 3,         /* exp output, half Poisson deviance, sum over outputs */
    BP_HUBER = 4,           /* identity output, Huber, mean over outputs */
    BP_ABSOLUTE_ERROR = 5   /* identity output, absolute error, mean over outputs */
};

/* Solver codes of the training epoch. bp_step takes BP_SGD or BP_ADAM;
 * AdamW is BP_ADAM's step with a weight decay. */
enum bp_solver {
    BP_SGD = 0,
    BP_ADAM = 1,
    BP_ADAMW = 2
};

#include <stdint.h>

/* Next uniform double in [0, 1) from a splitmix64 stream. */
double bp_uniform(uint64_t *state);

/* 1 when the derivative of the activation needs the pre-activation z
 * (it cannot be computed from the output a alone). */
int bp_act_needs_z(int act);

/* The settings of one optimizer step (bp_step). */
typedef struct bp_step_settings {
    int solver;        /* 0: SGD, 1: Adam (AdamW when decay > 0) */
    double lr;         /* this step's rate (Adam's bias correction folded in) */
    double momentum;   /* SGD; 0 is plain SGD */
    int nesterov;      /* SGD */
    double beta_1;     /* Adam */
    double beta_2;
    double eps;
    double alpha;      /* L2 penalty added to the weights' gradient */
    double decay;      /* AdamW: the weights are first multiplied by 1 - decay */
} bp_step_settings;

#define BP_DECLARE(REAL, S)                                                        \
    /* z[i, :] = b for every row: the bias, placed before the layer's gemm    \
     * adds A W onto it (beta = 1). */                                           \
    void bp_fill_rows_##S(REAL *z, const REAL *b, ptrdiff_t rows,                 \
                          ptrdiff_t cols);                                        \
    /* a = f(z) for a rows x cols block; z is kept when z != a. */               \
    void bp_activate_##S(int act, const REAL *z, REAL *a, ptrdiff_t rows,         \
                         ptrdiff_t cols);                                         \
    /* delta *= f'(z) elementwise, from z or from a = f(z). */                    \
    void bp_act_grad_##S(int act, const REAL *z, const REAL *a, REAL *delta,      \
                         ptrdiff_t n);                                            \
    /* Loss of a batch and its gradient with respect to the output layer's       \
     * pre-activation. Returns sum_i w_i l_i (w_i = 1 without weights) and        \
     * writes delta[i, k] = w_i d l_i / d z_ik. */                                \
    double bp_loss_delta_##S(int loss, ptrdiff_t rows, ptrdiff_t cols,            \
                             const REAL *p, const REAL *y, const REAL *sw,        \
                             REAL *delta, double huber_delta);                    \
    /* Loss only (no gradient), same definition as bp_loss_delta. */              \
    double bp_loss_##S(int loss, ptrdiff_t rows, ptrdiff_t cols,                  \
                       const REAL *p, const REAL *y, const REAL *sw,              \
                       double huber_delta);                                       \
    /* out[j] += sum_i x[i, j] */                                                 \
    void bp_colsum_add_##S(const REAL *x, ptrdiff_t rows, ptrdiff_t cols,         \
                           REAL *out);                                            \
    /* g[:n_coef] = (g + alpha p) * scale; g[n_coef:n] *= scale */                \
    void bp_finish_grad_##S(REAL *g, const REAL *p, ptrdiff_t n_coef,             \
                            ptrdiff_t n, double alpha, double scale);             \
    /* sum of squares of x[:n], accumulated in double */                          \
    double bp_sumsq_##S(const REAL *x, ptrdiff_t n);                              \
    /* sum of x[i] y[i] over [0, n), accumulated in double (short vectors) */     \
    double bp_dot_##S(const REAL *x, const REAL *y, ptrdiff_t n);                 \
    /* x *= c; returns the sum of squares of x before, in double */             \
    double bp_decay_sumsq_##S(REAL *x, ptrdiff_t n, REAL c);                      \
    /* Fused mini-batch step: g = (g + alpha p) / sw_sum on the weights       \
     * (g / sw_sum on the intercepts), then the SGD (BP_SGD) or Adam /       \
     * AdamW (BP_ADAM) update of p, with the settings in *opt. Returns      \
     * sum(p[:n_coef]^2) after the update, the next batch's L2 term. */     \
    double bp_step_##S(const bp_step_settings *opt, REAL *p, REAL *s1,        \
                       REAL *s2, REAL *g, ptrdiff_t n_coef, ptrdiff_t n,      \
                       double sw_sum);                                        \
    /* Inverted dropout: mask[i] = 0 with probability p, else 1/(1-p);      \
     * out[i] = in[i] * mask[i]. Draws from *state. */                        \
    void bp_dropout_##S(const REAL *in, REAL *out, REAL *mask, ptrdiff_t n,    \
                        double p, uint64_t *state);                           \
    /* x[i] *= m[i] */                                                        \
    void bp_mul_##S(REAL *x, const REAL *m, ptrdiff_t n);                     \
    /* 1 if all of x[:n] is finite */                                             \
    int bp_all_finite_##S(const REAL *x, ptrdiff_t n);                            \
    /* out = exp (fn 0), expm1 (fn 1) or tanh (fn 2) of x, by the vectorised     \
     * functions the activations use: how their accuracy is tested. */          \
    void bp_vmath_##S(int fn, const REAL *x, REAL *out, ptrdiff_t n);

BP_DECLARE(double, d)
BP_DECLARE(float, f)

#undef BP_DECLARE

/* Ask for the cache lines of [p, p + bytes) ahead of use (a hint; nothing
 * where the compiler has no prefetch builtin). */
static inline void bp_prefetch(const void *p, ptrdiff_t bytes)
{
#if defined(__GNUC__) || defined(__clang__)
    const char *c = (const char *)p;
    ptrdiff_t i;
    for (i = 0; i < bytes; i += 64) __builtin_prefetch(c + i, 0, 3);
    __builtin_prefetch(c + bytes - 1, 0, 3);
    /* a prefetch is no side effect, so GCC would delete every call to a
     * function that only prefetches (it did); an empty asm is one */
    __asm__ __volatile__("");
#else
    (void)p;
    (void)bytes;
#endif
}

#endif /* BP_KERNELS_H */
