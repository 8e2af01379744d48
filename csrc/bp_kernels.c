/* Instantiates bp_kernels_impl.h for double and float. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "bp_kernels.h"

/* The per-batch elementwise kernels (activations and their derivatives,
 * column sums, the optimizer step) are also compiled for x86-64-v3 (AVX2,
 * FMA) and chosen at load time by CPU features (GCC's target_clones: an
 * ifunc, so ELF platforms only); elsewhere the portable build runs. Wheels
 * get the wide vectors without -march=native, as BLAS does. meson.build
 * allows contraction into FMA, which only the AVX2 clone has: the two
 * versions can differ in the last place, as BLAS kernels for different
 * CPUs do. A third clone for x86-64-v4 (AVX-512) takes eight doubles a
 * vector. The clones compute each element, and each partial sum of the
 * reductions, in the same order, so the v3 and v4 results agree.
 * (Timings of each clone: docs/performance.md.) */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__)
#define BP_MULTIVERSION \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BP_MULTIVERSION
#endif

#define BP_SQRT1_2 0.70710678118654752440
#define BP_INV_SQRT_2PI 0.39894228040143267794

int bp_act_needs_z(int act)
{
    return act == BP_GELU || act == BP_SILU;
}

double bp_uniform(uint64_t *state)
{
    /* splitmix64 (Steele, Lea, Flood 2014): small, fast, good enough for
     * dropout masks, and the same stream on every platform. */
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/*
 * exp(x) written to vectorise (no branches, no calls): x = n ln2 + r with
 * |r| <= ln2/2, exp(r) by its Taylor polynomial (degree 13 for double, 7
 * for float: the truncation error is below half an ulp), times 2^n built in
 * the exponent bits (bp_exp, bp_expm1 and bp_tanh in bp_kernels_impl.h
 * build on the two pieces here). x is clamped to the normal range first, so very
 * negative x give the smallest normal number instead of 0 and very large x
 * give the largest power below overflow instead of inf: it serves logistic
 * and softmax, where those ends round to the same outputs. NaN propagates
 * without a test: the clamp keeps it, so r is NaN and so is every result
 * built from r, whatever scale its bits made.
 */
/* x = n ln2 + r, |r| <= ln2/2 (x clamped to the normal range first);
 * returns r and sets *scale = 2^n, built from the bits of x log2(e) + 1.5 2^52
 * with integer add and shift only, so that loops calling it vectorise. */
static inline double bp_reduce_d(double x, double *scale)
{
    const double shift = 6755399441055744.0; /* 1.5 * 2^52: round to integer */
    double xc = x > 709.0 ? 709.0 : (x < -708.0 ? -708.0 : x);
    double t = xc * 1.4426950408889634 + shift; /* n sits in t's low bits */
    double n = t - shift;
    /* a union, not memcpy: GCC vectorises the double loop only this way */
    union { double d; int64_t i; } u;
    u.d = t;
    u.i = (u.i - 0x4338000000000000LL + 1023) << 52;
    *scale = u.d;
    return (xc - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
}

/* e^r - 1 for |r| <= ln2/2: the Taylor coefficients 1/i! by Estrin's scheme
 * (a third of Horner's dependency chain, which is what bounds these loops),
 * without the leading 1 so small r keep their relative accuracy. */
static inline double bp_expm1_reduced_d(double r)
{
    double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    double q1 = 0.5 + r * (1.0 / 6.0);
    double q2 = 1.0 / 24.0 + r * (1.0 / 120.0), q3 = 1.0 / 720.0 + r * (1.0 / 5040.0);
    double q4 = 1.0 / 40320.0 + r * (1.0 / 362880.0);
    double q5 = 1.0 / 3628800.0 + r * (1.0 / 39916800.0);
    double q6 = 1.0 / 479001600.0 + r * (1.0 / 6227020800.0);
    return (r + r2 * q1) + r4 * (q2 + r2 * q3) + r8 * ((q4 + r2 * q5) + r4 * q6);
}

static inline float bp_reduce_f(float x, float *scale)
{
    const float shift = 12582912.0f; /* 1.5 * 2^23 */
    float xc = x > 88.0f ? 88.0f : (x < -87.0f ? -87.0f : x);
    float t = xc * 1.44269504f + shift;
    float n = t - shift;
    union { float f; int32_t i; } u;
    u.f = t;
    u.i = (u.i - 0x4B400000 + 127) << 23;
    *scale = u.f;
    return (xc - n * 0.693145752f) - n * 1.42860677e-06f;
}

static inline float bp_expm1_reduced_f(float r)
{
    float r2 = r * r, r4 = r2 * r2;
    return (r + r2 * (0.5f + r * (1.0f / 6.0f)))
           + r4 * ((1.0f / 24.0f + r * (1.0f / 120.0f))
                   + r2 * (1.0f / 720.0f + r * (1.0f / 5040.0f)));
}

#define REAL double
#define S(name) name##_d
#define MATH(fn) fn
#define REDUCE bp_reduce_d
#define EXPM1_REDUCED bp_expm1_reduced_d
#define BP_EPS DBL_EPSILON
#include "bp_kernels_impl.h"
#undef REAL
#undef S
#undef MATH
#undef REDUCE
#undef EXPM1_REDUCED
#undef BP_EPS

#define REAL float
#define S(name) name##_f
#define MATH(fn) fn##f
#define REDUCE bp_reduce_f
#define EXPM1_REDUCED bp_expm1_reduced_f
#define BP_EPS FLT_EPSILON
#include "bp_kernels_impl.h"
#undef REAL
#undef S
#undef MATH
#undef REDUCE
#undef EXPM1_REDUCED
#undef BP_EPS
