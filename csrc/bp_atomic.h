/*
 * A shared counter of work items: threads that take items from it, each
 * taking the next one when it is free, share the work in proportion to
 * how fast they run (predict's chunks; see _threads.parallel_predict).
 * Header only: one atomic add.
 */
#ifndef BP_ATOMIC_H
#define BP_ATOMIC_H

#include <stddef.h>
#include <stdint.h>

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#ifdef _WIN64
static inline ptrdiff_t bp_take(ptrdiff_t *counter)
{
    return (ptrdiff_t)_InterlockedExchangeAdd64((volatile __int64 *)counter, 1);
}
static inline void bp_take_none(ptrdiff_t *counter)
{
    _InterlockedExchange64((volatile __int64 *)counter, (__int64)(PTRDIFF_MAX / 2));
}
#else /* ptrdiff_t is a 32-bit long */
static inline ptrdiff_t bp_take(ptrdiff_t *counter)
{
    return (ptrdiff_t)_InterlockedExchangeAdd((volatile long *)counter, 1);
}
static inline void bp_take_none(ptrdiff_t *counter)
{
    _InterlockedExchange((volatile long *)counter, (long)(PTRDIFF_MAX / 2));
}
#endif
#else
/* the item taken: the counter's value before one is added */
static inline ptrdiff_t bp_take(ptrdiff_t *counter)
{
    return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}
/* no items are left for anyone (a thread met an error) */
static inline void bp_take_none(ptrdiff_t *counter)
{
    __atomic_store_n(counter, PTRDIFF_MAX / 2, __ATOMIC_RELAXED);
}
#endif

#endif
