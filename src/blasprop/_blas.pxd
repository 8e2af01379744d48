# The BLAS gateway: the only module that cimports scipy.linalg.cython_blas.
# gemm routes a row-major float/double product to the BLAS routine that suits
# its shape under the process's policy; see _blas.pyx.
from cython cimport floating

include "_blas_int.pxi"

cdef void gemm(bint trans_a, bint trans_b, blas_int m, blas_int n, blas_int k,
               floating alpha, const floating *A, blas_int lda,
               const floating *B, blas_int ldb, floating beta,
               floating *C, blas_int ldc) noexcept nogil
