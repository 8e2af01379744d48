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
ger for k == 1.
"""
from libc.string cimport memset
from scipy.linalg.cython_blas cimport dgemm, sgemm, dgemv, sgemv, dger, sger


cdef void gemm(bint trans_a, bint trans_b, blas_int m, blas_int n, blas_int k,
               floating alpha, const floating *A, blas_int lda,
               const floating *B, blas_int ldb, floating beta,
               floating *C, blas_int ldc) noexcept nogil:
    """C (m x n) = alpha op(A) op(B) + beta C, all row-major."""
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef char t = b'T', nt = b'N'
    cdef blas_int inc_a, inc_b, one = 1, i, j
    if m == 1:
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
        # the outer product C = alpha a bᵀ + beta C
        if beta == 0:
            for i in range(m):
                memset(C + i * ldc, 0, n * sizeof(floating))
        elif beta != 1:
            for i in range(m):
                for j in range(n):
                    C[i * ldc + j] *= beta
        inc_a = 1 if trans_a else lda
        inc_b = ldb if trans_b else 1
        if floating is double:
            dger(&n, &m, &alpha, <double *> B, &inc_b, <double *> A, &inc_a, C, &ldc)
        else:
            sger(&n, &m, &alpha, <float *> B, &inc_b, <float *> A, &inc_a, C, &ldc)
        return
    if floating is double:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double *> B, &ldb,
              <double *> A, &lda, &beta, C, &ldc)
    else:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float *> B, &ldb,
              <float *> A, &lda, &beta, C, &ldc)


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
    with nogil:
        gemm(trans_a, trans_b, <blas_int> m, <blas_int> n, <blas_int> k,
             <floating> alpha, &A[0, 0], <blas_int> A.shape[1], &B[0, 0],
             <blas_int> B.shape[1], <floating> beta, &C[0, 0], <blas_int> C.shape[1])
