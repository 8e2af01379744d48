"""Row-major BLAS wrappers (the only place that talks to BLAS).

Design: SciPy exposes the Fortran BLAS, which is column-major. A row-major
matrix is the column-major view of its transpose, so the row-major product
C = op(A) op(B) is computed as the column-major product Cᵀ = op(B)ᵀ op(A)ᵀ:
the call passes B before A and exchanges m and n. Leading dimensions are the
stored row lengths. No BLAS library is linked: SciPy resolves the routines
when this module is imported.

Products with a vector shape go to level-2 BLAS, where gemm would spend
more time packing its operands than multiplying (one row at batch size 1,
one output unit, or an outer product of one row): gemv for m == 1 or n == 1,
ger for k == 1. Where two of m, n, k are 1 (the one-unit output layer at
batch size 1) the product is a dot product or an axpy, and goes to level-1
BLAS, whose calls cost less than gemv's on 39 numbers.

Some BLAS builds have gemm kernels for small matrices that beat level 2 on
these shapes: OpenBLAS's SkylakeX kernels (AVX-512 CPUs), where a 39 x 39
rank-one update took 535 ns with dger and 278 ns with dgemm (k = 1), and a
1 x 39 by 39 x 39 product 236 ns with dgemv and 131 ns with dgemm (float:
sger 292 ns, sgemm 170 ns; sgemv 105 ns, sgemm 175 ns). ``set_vector_gemm``
(called once by the Python layer, from the BLAS that threadpoolctl reports)
sends those shapes to gemm; the choice depends only on the BLAS build, so
results are reproducible on a machine.

A rank-one update (k == 1) sent to gemm is passed to it as "N", "N"
whenever its vectors allow (AMD Zen 5, SkylakeX kernels, one thread): a
39 x 39 update took 97 ns with sgemm "N", "N" and 279 ns with the "N", "T"
of the general rule (double: 155 and 144 ns, so double keeps "N", "T"), and
the 200 x 39 product of the one-unit output layer's delta with its weights
331 ns where "T", "N" took 949 (double 514 and 1,524). The float seed epoch
at batch size 1 went from 11.5 to 8.7 ms.

The same build's small-matrix kernels are also slower for some transposes
and sizes than for others (float64, one thread, 39-wide layers): C = A Bᵀ
took 18.6 us at 200 rows where C = A B took 11.6 us (3.2 against 1.7 us at
32 rows), and Aᵀ B over 200 rows 14.9 us where two halves of 100 rows took
10.1 us together (past 64³ multiply-adds OpenBLAS leaves its small kernels).
With ``small_kernels`` set, a small Bᵀ is copied to a row-major block and
multiplied untransposed, and Aᵀ B with a small C is summed over row blocks
of at most 64³ multiply-adds.

Those kernels stop at 10⁶ multiply-adds (100³): a 39 x 39 layer over 657
rows took 33 ns a row, over 658 rows 46 ns (float; double 45 and 95 ns).
So with ``small_kernels`` set, A op(B) with a small op(B) is also cut into
blocks of rows that stay within that limit: over 4,096 rows of 39 x 39,
1.3x faster in float and 2.0x in double; 1.2-1.7x for the other small
shapes measured (30 to 128 wide).
"""
from libc.string cimport memset
from scipy.linalg.cython_blas cimport (dgemm, sgemm, dgemv, sgemv, dger, sger,
                                       ddot, sdot, daxpy, saxpy)


# The largest dimension BLAS takes: blas_int is SciPy's BLAS integer (32
# bits unless SciPy was built against an ILP64 BLAS). Sizes are Py_ssize_t
# everywhere else; they are checked against this before they are narrowed.
_BLAS_INT_BYTES = sizeof(blas_int)
BLAS_INT_MAX = (1 << (8 * _BLAS_INT_BYTES - 1)) - 1


def check_blas_int(value, what):
    """OverflowError when ``value`` (a dimension that reaches BLAS) does not
    fit in blas_int."""
    if value > BLAS_INT_MAX:
        raise OverflowError(
            f"{what} ({int(value):,}) exceeds the largest dimension BLAS takes "
            f"({BLAS_INT_MAX:,}, the range of its {8 * _BLAS_INT_BYTES}-bit integer)"
        )


# which vector shapes go to gemm instead of level 2 (see set_vector_gemm)
cdef bint _rows_gemm_d = False      # m == 1, double
cdef bint _rows_gemm_s = False      # m == 1, float
cdef bint _outer_gemm_d = False     # k == 1, double
cdef bint _outer_gemm_s = False     # k == 1, float
cdef bint _small_kernels = False    # the transposes and row blocks above

# A op(B) with op(B) of at most SMALL_T entries is cut into blocks of rows of
# at most SMALL_LIMIT multiply-adds, op(B) = B' first copied (a stack buffer)
# for products of SMALL_MIN_ROWS rows or more; A'B is cut into row blocks of
# at most SMALL_BLOCK multiply-adds, for C of at most SMALL_T entries.
cdef enum:
    # fewer rows do not repay the copy of B': at one row the untransposed
    # product saved 51 ns (182 -> 131 ns), less than copying a 39 x 39 block
    SMALL_MIN_ROWS = 16
    SMALL_T = 4096
    SMALL_LIMIT = 1000000
    SMALL_BLOCK = 64 * 64 * 64


def set_vector_gemm(bint rows_double, bint rows_float, bint outer_double,
                    bint outer_float, bint small_kernels):
    """Send one-row products (m == 1) and rank-one updates (k == 1) to gemm
    instead of gemv and ger, per dtype, and choose the small-kernel forms of
    transposed products. Set before any fit runs."""
    global _rows_gemm_d, _rows_gemm_s, _outer_gemm_d, _outer_gemm_s, _small_kernels
    _rows_gemm_d, _rows_gemm_s = rows_double, rows_float
    _outer_gemm_d, _outer_gemm_s = outer_double, outer_float
    _small_kernels = small_kernels


def vector_gemm():
    """The current choice: (rows_double, rows_float, outer_double,
    outer_float, small_kernels)."""
    return (bool(_rows_gemm_d), bool(_rows_gemm_s), bool(_outer_gemm_d),
            bool(_outer_gemm_s), bool(_small_kernels))


cdef inline void _gemm_call(char *tb, char *ta, blas_int n, blas_int m, blas_int k,
                            floating alpha, const floating *B, blas_int ldb,
                            const floating *A, blas_int lda, floating beta,
                            floating *C, blas_int ldc) noexcept nogil:
    """The Fortran gemm, operands already swapped (column-major Cᵀ = op(B)ᵀ op(A)ᵀ)."""
    if floating is double:
        dgemm(tb, ta, &n, &m, &k, &alpha, <double *> B, &ldb, <double *> A, &lda,
              &beta, C, &ldc)
    else:
        sgemm(tb, ta, &n, &m, &k, &alpha, <float *> B, &ldb, <float *> A, &lda,
              &beta, C, &ldc)


cdef inline void _scale_c(blas_int m, blas_int n, floating beta, floating *C,
                          blas_int ldc) noexcept nogil:
    """C (m x n, row-major) *= beta; beta = 0 writes zeros (C may hold NaN)."""
    cdef Py_ssize_t i, j
    if beta == 0:
        for i in range(m):
            memset(C + i * ldc, 0, n * sizeof(floating))
    elif beta != 1:
        for i in range(m):
            for j in range(n):
                C[i * ldc + j] *= beta


cdef inline void _axpy(blas_int n, floating a, const floating *x, blas_int incx,
                       floating *y, blas_int incy) noexcept nogil:
    if floating is double:
        daxpy(&n, &a, <double *> x, &incx, y, &incy)
    else:
        saxpy(&n, &a, <float *> x, &incx, y, &incy)


cdef inline blas_int _even_block(blas_int total, blas_int most) noexcept nogil:
    """Size of the blocks that cut ``total`` into as few blocks of at most
    ``most`` as possible, as even as that count allows (200 rows in blocks
    of at most 172: 100 and 100; A'B over them took 10.8 us, not the 11.9 us
    of 172 and 28)."""
    cdef Py_ssize_t count = (<Py_ssize_t> total + most - 1) // most
    return <blas_int> ((total + count - 1) // count)


cdef void gemm(bint trans_a, bint trans_b, blas_int m, blas_int n, blas_int k,
               floating alpha, const floating *A, blas_int lda,
               const floating *B, blas_int ldb, floating beta,
               floating *C, blas_int ldc) noexcept nogil:
    """C (m x n) = alpha op(A) op(B) + beta C, all row-major."""
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef char t = b'T', nt = b'N'
    cdef blas_int inc_a, inc_b, one = 1
    cdef floating d
    if m == 1 and n == 1:
        # c = alpha a . b + beta c, a = the row of op(A), b = the column of op(B)
        inc_a = lda if trans_a else 1
        inc_b = 1 if trans_b else ldb
        if floating is double:
            d = ddot(&k, <double *> A, &inc_a, <double *> B, &inc_b)
        else:
            d = sdot(&k, <float *> A, &inc_a, <float *> B, &inc_b)
        C[0] = alpha * d if beta == 0 else alpha * d + beta * C[0]
        return
    if k == 1 and m == 1:
        # the row c = (alpha a_00) op(B)[0, :] + beta c
        _scale_c(1, n, beta, C, ldc)
        _axpy(n, alpha * A[0], B, ldb if trans_b else 1, C, one)
        return
    if k == 1 and n == 1:
        # the column c = (alpha b_00) op(A)[:, 0] + beta c
        _scale_c(m, 1, beta, C, ldc)
        _axpy(m, alpha * B[0], A, 1 if trans_a else lda, C, ldc)
        return
    if m == 1 and not (_rows_gemm_d if floating is double else _rows_gemm_s):
        # the row c = alpha a op(B) + beta c, a = the row of op(A)
        inc_a = lda if trans_a else 1
        if floating is double:
            if trans_b:
                dgemv(&t, &k, &n, &alpha, <double *> B, &ldb, <double *> A, &inc_a,
                      &beta, C, &one)
            else:
                dgemv(&nt, &n, &k, &alpha, <double *> B, &ldb, <double *> A, &inc_a,
                      &beta, C, &one)
        else:
            if trans_b:
                sgemv(&t, &k, &n, &alpha, <float *> B, &ldb, <float *> A, &inc_a,
                      &beta, C, &one)
            else:
                sgemv(&nt, &n, &k, &alpha, <float *> B, &ldb, <float *> A, &inc_a,
                      &beta, C, &one)
        return
    if n == 1:
        # the column c = alpha op(A) b + beta c, b = the column of op(B)
        inc_b = 1 if trans_b else ldb
        if floating is double:
            if trans_a:
                dgemv(&nt, &m, &k, &alpha, <double *> A, &lda, <double *> B, &inc_b,
                      &beta, C, &ldc)
            else:
                dgemv(&t, &k, &m, &alpha, <double *> A, &lda, <double *> B, &inc_b,
                      &beta, C, &ldc)
        else:
            if trans_a:
                sgemv(&nt, &m, &k, &alpha, <float *> A, &lda, <float *> B, &inc_b,
                      &beta, C, &ldc)
            else:
                sgemv(&t, &k, &m, &alpha, <float *> A, &lda, <float *> B, &inc_b,
                      &beta, C, &ldc)
        return
    if k == 1:
        # the outer product C = alpha a bᵀ + beta C of a row of op(A) and a
        # vector of op(B)
        inc_a = 1 if trans_a else lda
        inc_b = ldb if trans_b else 1
        if not (_outer_gemm_d if floating is double else _outer_gemm_s):
            _scale_c(m, n, beta, C, ldc)
            if floating is double:
                dger(&n, &m, &alpha, <double *> B, &inc_b, <double *> A, &inc_a, C, &ldc)
            else:
                sger(&n, &m, &alpha, <float *> B, &inc_b, <float *> A, &inc_a, C, &ldc)
            return
        if inc_b == 1 and (floating is float or not (trans_a and not trans_b)):
            # as gemm "N", "N" (see the module docstring): b with stride 1 is
            # an n x 1 matrix of leading dimension n, a a 1 x m matrix of
            # leading dimension its stride; double A'b keeps "N", "T", which
            # was faster there
            _gemm_call(&nt, &nt, n, m, k, alpha, B, n, A, inc_a, beta, C, ldc)
            return
    cdef floating bt[SMALL_T]
    cdef blas_int p, j, kc, kk, nn = n
    cdef floating b
    # products of two dimensions in Py_ssize_t: in blas_int they could wrap
    # to a small number and send a large B into the SMALL_T buffer
    cdef Py_ssize_t nk = <Py_ssize_t> n * k, mn = <Py_ssize_t> m * n
    if _small_kernels and not trans_a and nk <= SMALL_T and (
            m >= SMALL_MIN_ROWS if trans_b else <double> m * nk > SMALL_LIMIT):
        if trans_b:
            # op(B) = Bᵀ as a row-major k x n block, multiplied untransposed
            for p in range(k):
                for j in range(n):
                    bt[p * n + j] = B[<Py_ssize_t> j * ldb + p]
            B = bt
            ldb = nn
        # even blocks of rows, each within the small kernels
        kc = _even_block(m, <blas_int> (SMALL_LIMIT // nk))
        p = 0
        while p < m:
            kk = min(kc, m - p)
            _gemm_call(&nt, &ta, n, kk, k, alpha, B, ldb, A + <Py_ssize_t> p * lda, lda,
                       beta, C + <Py_ssize_t> p * ldc, ldc)
            p += kk
        return
    if _small_kernels and trans_a and not trans_b and mn <= SMALL_T \
            and <double> k * mn > SMALL_BLOCK:
        # sum over even blocks of rows of A and B, each within the small kernels
        kc = _even_block(k, <blas_int> (SMALL_BLOCK // mn))
        b = beta
        p = 0
        while p < k:
            kk = min(kc, k - p)
            _gemm_call(&tb, &ta, n, m, kk, alpha, B + <Py_ssize_t> p * ldb, ldb,
                       A + <Py_ssize_t> p * lda, lda, b, C, ldc)
            b = 1
            p += kk
        return
    _gemm_call(&tb, &ta, n, m, k, alpha, B, ldb, A, lda, beta, C, ldc)


def gemm_memview(bint trans_a, bint trans_b, double alpha,
                 const floating[:, ::1] A,  # IN
                 const floating[:, ::1] B,  # IN
                 double beta,
                 floating[:, ::1] C):       # IN/OUT
    """Python twin of ``gemm`` for the tests: C = alpha op(A) op(B) + beta C."""
    cdef Py_ssize_t m = A.shape[1] if trans_a else A.shape[0]
    cdef Py_ssize_t k = A.shape[0] if trans_a else A.shape[1]
    cdef Py_ssize_t kb = B.shape[1] if trans_b else B.shape[0]
    cdef Py_ssize_t n = B.shape[0] if trans_b else B.shape[1]
    if kb != k or C.shape[0] != m or C.shape[1] != n:
        raise ValueError("gemm: incompatible shapes")
    if m == 0 or n == 0 or k == 0:
        raise ValueError("gemm: empty operand")
    for size, what in ((m, "m"), (n, "n"), (k, "k"), (A.shape[1], "lda"),
                       (B.shape[1], "ldb"), (C.shape[1], "ldc")):
        check_blas_int(size, "gemm: " + what)
    with nogil:
        gemm(trans_a, trans_b, <blas_int> m, <blas_int> n, <blas_int> k,
             <floating> alpha, &A[0, 0], <blas_int> A.shape[1], &B[0, 0],
             <blas_int> B.shape[1], <floating> beta, &C[0, 0], <blas_int> C.shape[1])
