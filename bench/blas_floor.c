/*
 * The BLAS floor of the seed workload: one epoch's matrix products alone,
 * made through SciPy's OpenBLAS with the shapes, transposes and call kinds
 * blasprop's gateway (src/blasprop/_blas.pyx) uses for them ([39, 39, 39, 1],
 * 10,000 rows, float64, plain SGD updated in the backward pass, one thread),
 * and nothing else: no activations, loss, gather, bias, column sums or
 * shuffle. blasprop's epoch cannot be faster than this while every product
 * goes through BLAS, so (reference library's epoch) / (this) bounds the
 * speedup any BLAS-based implementation of blasprop's design can show.
 *
 * POLICY is the gateway's choice for the loaded BLAS (see
 * blasprop._blas_policy.current): "level2" (gemv, ger, dot, axpy for vector
 * shapes; BLAS builds without small-matrix kernels) or "small" (one-row
 * products and rank-one updates to gemm, Bᵀ copied to an untransposed block,
 * Aᵀ·B summed over row blocks of at most 64³ multiply-adds).
 *
 *   cc -O2 bench/blas_floor.c -o /tmp/blas_floor -ldl
 *   /tmp/blas_floor LIBSCIPY_OPENBLAS BATCH [level2|small]
 *
 * bench/seed.py builds and runs it (see floor.py). Prints the best of 7
 * epochs, in seconds, on one line. A measurement, not a test.
 */
#define _POSIX_C_SOURCE 199309L
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void gemm_t(const char *, const char *, const int *, const int *, const int *,
                    const double *, const double *, const int *, const double *,
                    const int *, const double *, double *, const int *);
typedef void gemv_t(const char *, const int *, const int *, const double *, const double *,
                    const int *, const double *, const int *, const double *, double *,
                    const int *);
typedef void ger_t(const int *, const int *, const double *, const double *, const int *,
                   const double *, const int *, double *, const int *);
typedef double dot_t(const int *, const double *, const int *, const double *, const int *);
typedef void axpy_t(const int *, const double *, const double *, const int *, double *,
                    const int *);

static gemm_t *gemm_;
static gemv_t *gemv_;
static ger_t *ger_;
static dot_t *dot_;
static axpy_t *axpy_;
static int small;   /* the "small" policy */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *sym(void *lib, const char *name)
{
    void *f = dlsym(lib, name);
    if (!f) {
        fprintf(stderr, "%s not found\n", name);
        exit(2);
    }
    return f;
}

/* The gateway's routing, row-major C (m x n) = alpha op(A) op(B) + beta C,
 * beta 0 or 1. Where it hands a level-1/2 call a C to accumulate into, it
 * first clears C for beta = 0, as here. */
static void gemm(int ta, int tb, int m, int n, int k, double alpha, const double *A,
                 int lda, const double *B, int ldb, double beta, double *C, int ldc)
{
    int one = 1, inc_a, inc_b, p, kk, kc, cnt;
    static double bt[4096];
    const char *T = "T", *N = "N";
    if (m == 1 && n == 1) {
        inc_a = ta ? lda : 1;
        inc_b = tb ? 1 : ldb;
        C[0] = alpha * dot_(&k, A, &inc_a, B, &inc_b) + beta * C[0];
        return;
    }
    if (beta == 0 && k == 1)
        for (int i = 0; i < m; ++i)
            memset(C + (long)i * ldc, 0, n * sizeof(double));
    if (k == 1 && m == 1) {
        double a = alpha * A[0];
        axpy_(&n, &a, B, tb ? &ldb : &one, C, &one);
        return;
    }
    if (k == 1 && n == 1) {
        double a = alpha * B[0];
        axpy_(&m, &a, A, ta ? &one : &lda, C, &ldc);
        return;
    }
    if (m == 1 && !small) {
        inc_a = ta ? lda : 1;
        if (tb)
            gemv_(T, &k, &n, &alpha, B, &ldb, A, &inc_a, &beta, C, &one);
        else
            gemv_(N, &n, &k, &alpha, B, &ldb, A, &inc_a, &beta, C, &one);
        return;
    }
    if (n == 1) {
        inc_b = tb ? 1 : ldb;
        if (ta)
            gemv_(N, &m, &k, &alpha, A, &lda, B, &inc_b, &beta, C, &ldc);
        else
            gemv_(T, &k, &m, &alpha, A, &lda, B, &inc_b, &beta, C, &ldc);
        return;
    }
    if (k == 1 && !small) {
        inc_a = ta ? 1 : lda;
        inc_b = tb ? ldb : 1;
        ger_(&n, &m, &alpha, B, &inc_b, A, &inc_a, C, &ldc);
        return;
    }
    if (small && !ta && n * k <= 4096 && (tb ? m >= 16 : (double)m * n * k > 1e6)) {
        if (tb) {   /* the copy is not a BLAS call, but it is cheap next to one */
            for (p = 0; p < k; ++p)
                for (int j = 0; j < n; ++j)
                    bt[p * n + j] = B[j * ldb + p];
            B = bt;
            ldb = n;
        }
        cnt = (int)(((double)m * n * k + 1e6 - 1) / 1e6);
        kc = (m + cnt - 1) / cnt;
        for (p = 0; p < m; p += kc) {
            kk = m - p < kc ? m - p : kc;
            gemm_(N, ta ? T : N, &n, &kk, &k, &alpha, B, &ldb, A + (long)p * lda, &lda,
                  &beta, C + (long)p * ldc, &ldc);
        }
        return;
    }
    if (small && ta && !tb && m * n <= 4096 && (double)k * m * n > 64 * 64 * 64) {
        double b = beta;
        int most = 64 * 64 * 64 / (m * n);
        cnt = (k + most - 1) / most;
        kc = (k + cnt - 1) / cnt;
        for (p = 0; p < k; p += kc) {
            kk = k - p < kc ? k - p : kc;
            gemm_(N, T, &n, &m, &kk, &alpha, B + (long)p * ldb, &ldb, A + (long)p * lda,
                  &lda, &b, C, &ldc);
            b = 1;
        }
        return;
    }
    gemm_(tb ? T : N, ta ? T : N, &n, &m, &k, &alpha, B, &ldb, A, &lda, &beta, C, &ldc);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s LIBSCIPY_OPENBLAS BATCH [level2|small]\n", argv[0]);
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW);
    if (!lib) {
        fprintf(stderr, "%s\n", dlerror());
        return 2;
    }
    gemm_ = (gemm_t *)sym(lib, "scipy_dgemm_");
    gemv_ = (gemv_t *)sym(lib, "scipy_dgemv_");
    ger_ = (ger_t *)sym(lib, "scipy_dger_");
    dot_ = (dot_t *)sym(lib, "scipy_ddot_");
    axpy_ = (axpy_t *)sym(lib, "scipy_daxpy_");
    ((void (*)(int))sym(lib, "scipy_openblas_set_num_threads"))(1);
    small = argc > 3 && strcmp(argv[3], "small") == 0;

    int B = atoi(argv[2]), h = 39, rows = 10000;
    if (B < 1 || B > rows) {
        fprintf(stderr, "batch must be in [1, %d]\n", rows);
        return 2;
    }
    double step = -0.01 / B;
    double *X = calloc((size_t)rows * h, 8), *W0 = calloc(h * h, 8), *W1 = calloc(h * h, 8);
    double *w2 = calloc(h, 8), *A1 = calloc((size_t)B * h, 8), *A2 = calloc((size_t)B * h, 8);
    double *out = calloc(B, 8), *D = calloc((size_t)B * h, 8);
    for (int i = 0; i < rows * h; ++i) X[i] = 1e-3 * (i % 997);
    for (int i = 0; i < h * h; ++i) W0[i] = W1[i] = 1e-3 * (i % 97);
    for (int i = 0; i < h; ++i) w2[i] = 1e-2 * i;
    double best = 1e9;
    for (int rep = 0; rep < 7; ++rep) {
        double t = now();
        for (int s = 0; s < rows; s += B) {
            const double *x = X + (long)s * h;   /* the gathered batch */
            int n = rows - s < B ? rows - s : B;  /* the last batch may be short */
            /* forward: Z = A W. blasprop fills Z with the bias and adds A W
             * onto it (beta = 1); here BLAS clears Z instead (beta = 0), the
             * same pass over Z, and the values stay finite over the epochs
             * (with beta = 1 they overflow; the times were the same within
             * 2% at batch 1, 32 and 200) */
            gemm(0, 0, n, h, h, 1, x, h, W0, h, 0, A1, h);
            gemm(0, 0, n, h, h, 1, A1, h, W1, h, 0, A2, h);
            gemm(0, 0, n, 1, h, 1, A2, h, w2, 1, 0, out, 1);
            /* backward, output layer: delta_1 = out w2', then w2 += s A2' out */
            gemm(0, 1, n, h, 1, 1, out, 1, w2, 1, 0, D, h);
            gemm(1, 0, h, 1, n, step, A2, h, out, 1, 1, w2, 1);
            /* hidden layer: delta_0 = delta_1 W1', then W1 += s A1' delta_1 */
            gemm(0, 1, n, h, h, 1, D, h, W1, h, 0, A2, h);
            gemm(1, 0, h, h, n, step, A1, h, D, h, 1, W1, h);
            /* first layer: W0 += s X' delta_0 (no input gradient) */
            gemm(1, 0, h, h, n, step, x, h, A2, h, 1, W0, h);
        }
        double e = now() - t;
        if (e < best) best = e;
    }
    double sum = 0;
    for (int i = 0; i < h * h; ++i) sum += W0[i] + W1[i];
    if (sum != sum || sum - sum != 0)
        fprintf(stderr, "warning: the weights became non-finite\n");
    printf("%.6e\n", best);
    return 0;
}
