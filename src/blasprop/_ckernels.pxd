# Declarations of the C kernels in csrc/bp_kernels.h (no Python inside).
from libc.stdint cimport uint64_t

cdef extern from "bp_kernels.h" nogil:
    int bp_act_needs_z(int act)
    void bp_prefetch(const void *p, Py_ssize_t bytes)
    void bp_dropout_d(const double *inp, double *out, double *mask, Py_ssize_t n, double p,
                      uint64_t *state)
    void bp_dropout_f(const float *inp, float *out, float *mask, Py_ssize_t n, double p,
                      uint64_t *state)
    void bp_mul_d(double *x, const double *m, Py_ssize_t n)
    void bp_mul_f(float *x, const float *m, Py_ssize_t n)

    void bp_fill_rows_d(double *z, const double *b, Py_ssize_t rows, Py_ssize_t cols)
    void bp_fill_rows_f(float *z, const float *b, Py_ssize_t rows, Py_ssize_t cols)
    void bp_activate_d(int act, const double *z, double *a, Py_ssize_t rows, Py_ssize_t cols)
    void bp_activate_f(int act, const float *z, float *a, Py_ssize_t rows, Py_ssize_t cols)
    void bp_act_grad_d(int act, const double *z, const double *a, double *delta, Py_ssize_t n)
    void bp_act_grad_f(int act, const float *z, const float *a, float *delta, Py_ssize_t n)
    double bp_loss_delta_d(int loss, Py_ssize_t rows, Py_ssize_t cols, const double *p,
                           const double *y, const double *sw, double *delta, double huber_delta)
    double bp_loss_delta_f(int loss, Py_ssize_t rows, Py_ssize_t cols, const float *p,
                           const float *y, const float *sw, float *delta, double huber_delta)
    double bp_loss_d(int loss, Py_ssize_t rows, Py_ssize_t cols, const double *p, const double *y,
                     const double *sw, double huber_delta)
    double bp_loss_f(int loss, Py_ssize_t rows, Py_ssize_t cols, const float *p, const float *y,
                     const float *sw, double huber_delta)
    void bp_colsum_add_d(const double *x, Py_ssize_t rows, Py_ssize_t cols, double *out)
    void bp_colsum_add_f(const float *x, Py_ssize_t rows, Py_ssize_t cols, float *out)
    void bp_finish_grad_d(double *g, const double *p, Py_ssize_t n_coef, Py_ssize_t n, double alpha,
                          double scale)
    void bp_finish_grad_f(float *g, const float *p, Py_ssize_t n_coef, Py_ssize_t n, double alpha,
                          double scale)
    double bp_sumsq_d(const double *x, Py_ssize_t n)
    double bp_sumsq_f(const float *x, Py_ssize_t n)
    double bp_dot_d(const double *x, const double *y, Py_ssize_t n)
    double bp_dot_f(const float *x, const float *y, Py_ssize_t n)
    double bp_decay_sumsq_d(double *x, Py_ssize_t n, double c)
    double bp_decay_sumsq_f(float *x, Py_ssize_t n, float c)
    ctypedef struct bp_step_settings:
        int solver
        double lr
        double momentum
        int nesterov
        double beta_1
        double beta_2
        double eps
        double alpha
        double decay
    double bp_step_d(const bp_step_settings *opt, double *p, double *s1, double *s2, double *g,
                     Py_ssize_t n_coef, Py_ssize_t n, double sw_sum)
    double bp_step_f(const bp_step_settings *opt, float *p, float *s1, float *s2, float *g,
                     Py_ssize_t n_coef, Py_ssize_t n, double sw_sum)
    int bp_all_finite_d(const double *x, Py_ssize_t n)
    int bp_all_finite_f(const float *x, Py_ssize_t n)
    void bp_vmath_d(int fn, const double *x, double *out, Py_ssize_t n)
    void bp_vmath_f(int fn, const float *x, float *out, Py_ssize_t n)


cdef extern from "bp_atomic.h" nogil:
    Py_ssize_t bp_take(Py_ssize_t *counter)
    void bp_take_none(Py_ssize_t *counter)


cdef extern from "bp_queue.h" nogil:
    ctypedef struct bp_queue:
        int sleeps
        int size
    void bp_queue_init(bp_queue *q, int size, unsigned *items, Py_ssize_t capacity,
                       Py_ssize_t n0, long long spin)
    int bp_queue_take(bp_queue *q, int tid, unsigned *phase, Py_ssize_t *item)
    int bp_queue_done(bp_queue *q, unsigned phase)
    void bp_queue_publish(bp_queue *q, unsigned phase, Py_ssize_t n)
    void bp_queue_wait(bp_queue *q, unsigned phase)
    long long bp_ticks()
    void bp_flag_set(int *f)
    int bp_flag_get(int *f)


cdef extern from "bp_openmp.h" nogil:
    int bp_team_size()
    int bp_max_threads()
    int bp_have_openmp()


# One fused entry point per kernel: the dtype picks the C function.
from cython cimport floating

cdef inline void fill_rows(floating *z, const floating *b, Py_ssize_t rows,
                           Py_ssize_t cols) noexcept nogil:
    if floating is double:
        bp_fill_rows_d(z, b, rows, cols)
    else:
        bp_fill_rows_f(z, b, rows, cols)


cdef inline void activate(int act, const floating *z, floating *a, Py_ssize_t rows,
                          Py_ssize_t cols) noexcept nogil:
    if floating is double:
        bp_activate_d(act, z, a, rows, cols)
    else:
        bp_activate_f(act, z, a, rows, cols)


cdef inline void act_grad(int act, const floating *z, const floating *a,
                          floating *delta, Py_ssize_t n) noexcept nogil:
    if floating is double:
        bp_act_grad_d(act, z, a, delta, n)
    else:
        bp_act_grad_f(act, z, a, delta, n)

cdef inline double loss_delta(int loss, Py_ssize_t rows, Py_ssize_t cols,
                              const floating *p, const floating *y,
                              const floating *sw, floating *delta,
                              double huber_delta) noexcept nogil:
    if floating is double:
        return bp_loss_delta_d(loss, rows, cols, p, y, sw, delta, huber_delta)
    else:
        return bp_loss_delta_f(loss, rows, cols, p, y, sw, delta, huber_delta)

cdef inline double loss_only(int loss, Py_ssize_t rows, Py_ssize_t cols,
                             const floating *p, const floating *y,
                             const floating *sw, double huber_delta) noexcept nogil:
    if floating is double:
        return bp_loss_d(loss, rows, cols, p, y, sw, huber_delta)
    else:
        return bp_loss_f(loss, rows, cols, p, y, sw, huber_delta)

cdef inline void colsum_add(const floating *x, Py_ssize_t rows, Py_ssize_t cols,
                            floating *out) noexcept nogil:
    if floating is double:
        bp_colsum_add_d(x, rows, cols, out)
    else:
        bp_colsum_add_f(x, rows, cols, out)

cdef inline void finish_grad(floating *g, const floating *p, Py_ssize_t n_coef,
                             Py_ssize_t n, double alpha, double scale) noexcept nogil:
    if floating is double:
        bp_finish_grad_d(g, p, n_coef, n, alpha, scale)
    else:
        bp_finish_grad_f(g, p, n_coef, n, alpha, scale)

cdef inline double sumsq(const floating *x, Py_ssize_t n) noexcept nogil:
    if floating is double:
        return bp_sumsq_d(x, n)
    else:
        return bp_sumsq_f(x, n)

cdef inline double dot(const floating *x, const floating *y, Py_ssize_t n) noexcept nogil:
    if floating is double:
        return bp_dot_d(x, y, n)
    else:
        return bp_dot_f(x, y, n)

cdef inline double decay_sumsq(floating *x, Py_ssize_t n, floating c) noexcept nogil:
    if floating is double:
        return bp_decay_sumsq_d(x, n, c)
    else:
        return bp_decay_sumsq_f(x, n, c)

cdef inline double step(const bp_step_settings *opt, floating *p, floating *s1,
                        floating *s2, floating *g, Py_ssize_t n_coef, Py_ssize_t n,
                        double sw_sum) noexcept nogil:
    if floating is double:
        return bp_step_d(opt, p, s1, s2, g, n_coef, n, sw_sum)
    else:
        return bp_step_f(opt, p, s1, s2, g, n_coef, n, sw_sum)

cdef inline void dropout(const floating *inp, floating *out, floating *mask,
                         Py_ssize_t n, double p, uint64_t *state) noexcept nogil:
    if floating is double:
        bp_dropout_d(inp, out, mask, n, p, state)
    else:
        bp_dropout_f(inp, out, mask, n, p, state)

cdef inline void mul(floating *x, const floating *m, Py_ssize_t n) noexcept nogil:
    if floating is double:
        bp_mul_d(x, m, n)
    else:
        bp_mul_f(x, m, n)

cdef inline bint all_finite(const floating *x, Py_ssize_t n) noexcept nogil:
    if floating is double:
        return bp_all_finite_d(x, n)
    else:
        return bp_all_finite_f(x, n)
