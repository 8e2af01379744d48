/* Instantiates bp_kernels_impl.h for double and float. */
#include <float.h>
#include <math.h>

#include "bp_kernels.h"

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

#define REAL double
#define S(name) name##_d
#define MATH(fn) fn
#define BP_EPS DBL_EPSILON
#include "bp_kernels_impl.h"
#undef REAL
#undef S
#undef MATH
#undef BP_EPS

#define REAL float
#define S(name) name##_f
#define MATH(fn) fn##f
#define BP_EPS FLT_EPSILON
#include "bp_kernels_impl.h"
#undef REAL
#undef S
#undef MATH
#undef BP_EPS
