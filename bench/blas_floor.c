/*
 * The BLAS floor of the seed workload: one epoch's matrix products alone,
 * made through SciPy's OpenBLAS with the shapes, transposes and call kinds
 * blasprop uses ([39, 39, 39, 1], 10,000 rows, float64, one thread), and
 * nothing else (no activations, no gather, no step). blasprop's epoch cannot
 * be faster than this while every product goes through BLAS.
 *
 *   cc -O2 bench/blas_floor.c -o /tmp/blas_floor -ldl
 *   /tmp/blas_floor "$(python -c 'import glob, os, scipy; print(glob.glob(os.path.join(os.path.dirname(scipy.__file__), "..", "scipy.libs", "libscipy_openblas*"))[0])')" 32
 *
 * Prints the best of 7 epochs. A measurement, not a test.
 */
#define _POSIX_C_SOURCE 199309L
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef void gemm_t(const char *, const char *, const int *, const int *, const int *,
                    const double *, const double *, const int *, const double *,
                    const int *, const double *, double *, const int *);
typedef void gemv_t(const char *, const int *, const int *, const double *, const double *,
                    const int *, const double *, const int *, const double *, double *,
                    const int *);
typedef void ger_t(const int *, const int *, const double *, const double *, const int *,
                   const double *, const int *, double *, const int *);

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

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s LIBSCIPY_OPENBLAS BATCH\n", argv[0]);
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW);
    if (!lib) {
        fprintf(stderr, "%s\n", dlerror());
        return 2;
    }
    gemm_t *gemm = (gemm_t *)sym(lib, "scipy_dgemm_");
    gemv_t *gemv = (gemv_t *)sym(lib, "scipy_dgemv_");
    ger_t *ger = (ger_t *)sym(lib, "scipy_dger_");
    ((void (*)(int))sym(lib, "scipy_openblas_set_num_threads"))(1);

    int B = atoi(argv[2]), h = 39, one = 1, rows = 10000;
    if (B < 2) {
        fprintf(stderr, "batch >= 2: at batch 1 blasprop makes gemv/ger calls, not gemm\n");
        return 2;
    }
    double d1 = 1, d0 = 0, step = -0.01 / B;
    double *X = calloc((size_t)B * h, 8), *W0 = calloc(h * h, 8), *W1 = calloc(h * h, 8);
    double *w2 = calloc(h, 8), *A1 = calloc((size_t)B * h, 8), *A2 = calloc((size_t)B * h, 8);
    double *out = calloc(B, 8), *D = calloc((size_t)B * h, 8), *D2 = calloc((size_t)B * h, 8);
    for (int i = 0; i < B * h; ++i) X[i] = 1e-3 * i;
    for (int i = 0; i < h * h; ++i) W0[i] = W1[i] = 1e-4 * i;
    double best = 1e9;
    for (int rep = 0; rep < 7; ++rep) {
        double t = now();
        for (int s = 0; s < rows / B; ++s) {
            /* row-major C = A B is the column-major C' = B' A' */
            gemm("N", "N", &h, &B, &h, &d1, W0, &h, X, &h, &d1, A1, &h);   /* A1 = X W0 + b */
            gemm("N", "N", &h, &B, &h, &d1, W1, &h, A1, &h, &d1, A2, &h);  /* A2 = A1 W1 + b */
            gemv("T", &h, &B, &d1, A2, &h, w2, &one, &d1, out, &one);      /* out = A2 w2 + b */
            ger(&h, &B, &d1, w2, &one, out, &one, D, &h);                  /* D = out w2' */
            gemv("N", &h, &B, &step, A2, &h, out, &one, &d1, w2, &one);    /* w2 += s A2' out */
            gemm("T", "N", &h, &B, &h, &d1, W1, &h, D, &h, &d0, D2, &h);   /* D2 = D W1' */
            gemm("N", "T", &h, &h, &B, &step, D, &h, A1, &h, &d1, W1, &h); /* W1 += s A1' D */
            gemm("N", "T", &h, &h, &B, &step, D2, &h, X, &h, &d1, W0, &h); /* W0 += s X' D2 */
        }
        double e = now() - t;
        if (e < best) best = e;
    }
    printf("batch %d: BLAS calls alone %.2f ms per epoch of %d rows\n", B, best * 1e3, rows);
    return 0;
}
