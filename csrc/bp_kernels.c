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
