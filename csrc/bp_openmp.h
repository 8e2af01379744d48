/*
 * The OpenMP team, for code built with or without OpenMP: without it every
 * parallel region runs on one thread, and these say so.
 */
#ifndef BP_OPENMP_H
#define BP_OPENMP_H

#ifdef _OPENMP
#include <omp.h>
/* threads in the team running this code (1 outside a parallel region) */
static inline int bp_team_size(void) { return omp_get_num_threads(); }
/* threads a parallel region started here may have (threadpoolctl's limit) */
static inline int bp_max_threads(void) { return omp_get_max_threads(); }
static inline int bp_have_openmp(void) { return 1; }
#else
static inline int bp_team_size(void) { return 1; }
static inline int bp_max_threads(void) { return 1; }
static inline int bp_have_openmp(void) { return 0; }
#endif

#endif
