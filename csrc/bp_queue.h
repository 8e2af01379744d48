/*
 * The work queue of a parallel epoch: a sequence of phases, each a number
 * of items that any thread may take; a phase ends when all its items are
 * done, and the thread that finishes the last one publishes the next.
 *
 * Why not a barrier: a barrier waits for every thread, so one thread that
 * the operating system has set aside (a busy machine, or a virtual CPU that
 * sleeps) holds all the others up at every phase. Here nobody waits for a
 * thread that holds no item: the threads that run do the work, and a
 * thread that was away joins the phase that is current when it is back.
 * Nothing an item computes depends on which thread takes it.
 *
 * A waiting thread spins for a few microseconds (BP_QUEUE_SPIN_TICKS of the
 * time-stamp counter on x86, BP_QUEUE_SPIN pauses elsewhere): long enough to
 * catch the next phase without a system call while all threads run, far
 * shorter than a scheduler's time slice; then it sleeps (a futex on Linux;
 * sched_yield and short sleeps elsewhere) instead of holding a core that a
 * busy machine needs.
 *
 * Each item has a word that holds the phase it belongs to and whether it is
 * taken, so that taking it (compare-and-swap) fails whenever its phase has
 * ended. Header only; GCC/Clang atomic builtins (MSVC has no build of
 * blasprop yet).
 */
#ifndef BP_QUEUE_H
#define BP_QUEUE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#elif defined(_WIN32)
#include <windows.h>
#else
#include <sched.h>
#include <time.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <x86intrin.h>
#define BP_PAUSE() _mm_pause()
#define BP_TICKS() __rdtsc()
#elif defined(__aarch64__)
#define BP_PAUSE() __asm__ __volatile__("yield")
#else
#define BP_PAUSE() ((void)0)
#endif

/* 20,000 ticks are 5 to 10 microseconds on the time-stamp counters of
 * current x86 CPUs (a PAUSE alone lasts from 3 to 40 ns among them). */
#ifndef BP_QUEUE_SPIN_TICKS
#define BP_QUEUE_SPIN_TICKS 20000
#endif
#ifndef BP_QUEUE_SPIN
#define BP_QUEUE_SPIN 300
#endif

typedef struct bp_queue {
    unsigned phase;         /* the current phase; sleepers wait on it */
    ptrdiff_t n[2];         /* items of the even and odd phases */
    unsigned *items[2];     /* a word per item of the even and odd phases:
                             * 2 phase while free, 2 phase + 1 once taken */
    ptrdiff_t done;         /* items of the current phase done */
    int size;               /* threads: thread t owns items t, t + size, ... */
    int sleepers;           /* threads asleep (or about to be) on phase */
    long long spin;         /* ticks (x86) or pauses a waiting thread spins */
    int sleeps;             /* waits that ended asleep (for measurements) */
} bp_queue;

#define BP_LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define BP_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define BP_ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)

/* Phase 0 with n0 items, for `size` threads; `items` holds 2 x capacity
 * words, capacity at least the items of any phase. spin < 0: the default. */
static inline void bp_queue_init(bp_queue *q, int size, unsigned *items,
                                 ptrdiff_t capacity, ptrdiff_t n0, long long spin)
{
    ptrdiff_t i;
#ifdef BP_TICKS
    q->spin = spin >= 0 ? spin : BP_QUEUE_SPIN_TICKS;
#else
    q->spin = spin >= 0 ? spin : BP_QUEUE_SPIN;
#endif
    q->size = size;
    q->items[0] = items;
    q->items[1] = items + capacity;
    for (i = 0; i < 2 * capacity; ++i) items[i] = 1u;   /* taken: by nobody */
    for (i = 0; i < n0; ++i) items[i] = 0u;             /* free in phase 0 */
    q->phase = 0;
    q->n[0] = n0;
    q->n[1] = 0;
    q->done = 0;
    q->sleepers = 0;
    q->sleeps = 0;
}

static inline unsigned bp_queue_phase(bp_queue *q)
{
    return BP_LOAD(&q->phase);
}

static inline int bp_queue_claim(unsigned *word, unsigned free_tag)
{
    unsigned expected = free_tag;
    return BP_LOAD(word) == free_tag
        && __atomic_compare_exchange_n(word, &expected, free_tag + 1u, 0,
                                       __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

/* Take an item of the current phase for thread `tid`: its own items first
 * (the same thread does the same item every time while all threads run, so
 * the memory the item writes stays in its cache), then anyone's. 1, with
 * the phase and the item, or 0 when the current phase (in *phase) has none
 * left. A word carries its phase, so an item of a phase that has ended is
 * never taken. */
static inline int bp_queue_take(bp_queue *q, int tid, unsigned *phase, ptrdiff_t *item)
{
    unsigned p = bp_queue_phase(q), tag = 2u * p;
    ptrdiff_t n = BP_LOAD(&q->n[p & 1]), i;
    unsigned *w = q->items[p & 1];
    *phase = p;
    for (i = tid; i < n; i += q->size) {
        if (bp_queue_claim(w + i, tag)) { *item = i; return 1; }
    }
    for (i = 0; i < n; ++i) {
        if (bp_queue_claim(w + i, tag)) { *item = i; return 1; }
    }
    return 0;
}

/* An item of `phase` is done: 1 when it was the phase's last, and the
 * caller must publish the next phase. */
static inline int bp_queue_done(bp_queue *q, unsigned phase)
{
    return BP_ADD(&q->done, 1) == BP_LOAD(&q->n[phase & 1]);
}

static inline void bp_queue_wake(bp_queue *q)
{
#if defined(__linux__)
    syscall(SYS_futex, &q->phase, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)q;
#endif
}

/* Begin phase + 1 with n items (at most the capacity), its parameters
 * written before this call, by the thread that finished `phase`. n 0 ends
 * the work. */
static inline void bp_queue_publish(bp_queue *q, unsigned phase, ptrdiff_t n)
{
    unsigned next = phase + 1;
    unsigned *w = q->items[next & 1];
    ptrdiff_t i;
    for (i = 0; i < n; ++i) BP_STORE(w + i, 2u * next);
    BP_STORE(&q->n[next & 1], n);
    BP_STORE(&q->done, 0);
    BP_STORE(&q->phase, next);
    if (BP_LOAD(&q->sleepers) > 0) bp_queue_wake(q);
}

static inline void bp_queue_sleep(bp_queue *q, unsigned phase)
{
#if defined(__linux__)
    /* returns at once if the phase has moved on: no wake-up is lost */
    syscall(SYS_futex, &q->phase, FUTEX_WAIT_PRIVATE, phase, NULL, NULL, 0);
#elif defined(_WIN32)
    (void)q; (void)phase;
    SwitchToThread();
#else
    struct timespec ts = {0, 20000};
    (void)q; (void)phase;
    if (sched_yield() != 0) nanosleep(&ts, NULL);
#endif
}

/* Wait until the phase is no longer `phase`: spin, then sleep. */
static inline void bp_queue_wait(bp_queue *q, unsigned phase)
{
#ifdef BP_TICKS
    unsigned long long t0 = BP_TICKS();
    do {
        if (bp_queue_phase(q) != phase) return;
        BP_PAUSE();
    } while ((long long)(BP_TICKS() - t0) < q->spin);
#else
    long long i;
    for (i = 0; i < q->spin; ++i) {
        if (bp_queue_phase(q) != phase) return;
        BP_PAUSE();
    }
#endif
    BP_ADD(&q->sleepers, 1);
    BP_ADD(&q->sleeps, 1);
    while (bp_queue_phase(q) == phase) bp_queue_sleep(q, phase);
    BP_ADD(&q->sleepers, -1);
}

/* A clock for measurements: time-stamp ticks on x86, else 0. */
static inline long long bp_ticks(void)
{
#ifdef BP_TICKS
    return (long long)BP_TICKS();
#else
    return 0;
#endif
}

/* A flag one thread sets and others read (the stop request). */
static inline void bp_flag_set(int *f) { BP_STORE(f, 1); }
static inline int bp_flag_get(int *f) { return BP_LOAD(f); }

#endif
