"""The BLAS gateway: the only module that calls BLAS.

Design. SciPy exposes the Fortran BLAS, which is column-major. A row-major
matrix is the column-major view of its transpose, so the row-major product
C = op(A) op(B) is the column-major product Cᵀ = op(B)ᵀ op(A)ᵀ: a wrapper
passes B before A and exchanges m and n, and every leading dimension is the
stored row length. No BLAS library is linked: SciPy resolves the routines
when this module is imported.

The module has three layers:

1. Five thin wrappers, fused over float and double, that take row-major
   operands: ``_dot``, ``_axpy``, ``_gemv``, ``_ger``, ``_gemm``. Each has a
   ``def`` twin taking memoryviews (``_dot_memview``, ...) that exists so the
   tests can compare it with NumPy.
2. The routing policy, a struct of named flags and thresholds set once per
   process by ``set_policy``; ``_blas_policy.py`` decides its values from the
   BLAS build SciPy loaded, so results are reproducible on a machine.
3. ``gemm``, the routing function every matrix product goes through; it
   picks a wrapper by the product's shape and the policy.

Why each route exists:

- Two of m, n, k equal to 1 (a one-unit layer at batch size 1) is a dot
  product or an axpy: level-1 calls cost less than gemv on a few numbers.
- One of m, n equal to 1 (one row, one output unit) goes to gemv and k == 1
  (an outer product) to ger: gemm would spend longer packing its operands
  than multiplying. The policy's ``rows_gemm_*`` and ``outer_gemm_*`` flags
  send m == 1 and k == 1 to gemm instead, per dtype, for BLAS builds whose
  small-matrix gemm kernels beat level 2 there; such a rank-one update is
  passed as "N", "N" whenever its vectors allow, the form those kernels
  are fastest at (double Aᵀb keeps "N", "T").
- ``small_kernels``: the same kernels are slower for Bᵀ than for B, slower
  for Aᵀ B past a size, and stop altogether past another. So a small Bᵀ is
  copied to a row-major block and multiplied untransposed, A op(B) with a
  small op(B) is cut into even blocks of rows within the kernels' limit,
  and Aᵀ B with a small C is summed over even blocks of rows.

Measurements behind these rules: docs/performance.md.
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


# ---------------------------------------------------------------------------
# 1. The thin wrappers. Row-major operands; leading dimensions are stored row
#    lengths; vectors take a stride (inc). No checks: the callers checked.

cdef inline floating _dot(blas_int n, const floating *x, blas_int incx,
                          const floating *y, blas_int incy) noexcept nogil:
    """x · y"""
    if floating is double:
        return ddot(&n, <double *> x, &incx, <double *> y, &incy)
    else:
        return sdot(&n, <float *> x, &incx, <float *> y, &incy)


cdef inline void _axpy(blas_int n, floating alpha, const floating *x, blas_int incx,
                       floating *y, blas_int incy) noexcept nogil:
    """y += alpha x"""
    if floating is double:
        daxpy(&n, &alpha, <double *> x, &incx, y, &incy)
    else:
        saxpy(&n, &alpha, <float *> x, &incx, y, &incy)


cdef inline void _gemv(bint trans_a, blas_int m, blas_int n, floating alpha,
                       const floating *A, blas_int lda, const floating *x, blas_int incx,
                       floating beta, floating *y, blas_int incy) noexcept nogil:
    """y = alpha op(A) x + beta y, A stored m x n."""
    # the column-major routine sees Aᵀ (n x m): op(A) is its transpose or not
    cdef char t = b'N' if trans_a else b'T'
    if floating is double:
        dgemv(&t, &n, &m, &alpha, <double *> A, &lda, <double *> x, &incx,
              &beta, y, &incy)
    else:
        sgemv(&t, &n, &m, &alpha, <float *> A, &lda, <float *> x, &incx,
              &beta, y, &incy)


cdef inline void _ger(blas_int m, blas_int n, floating alpha,
                      const floating *x, blas_int incx, const floating *y, blas_int incy,
                      floating *A, blas_int lda) noexcept nogil:
    """A (m x n) += alpha x yᵀ"""
    # column-major: Aᵀ += alpha y xᵀ
    if floating is double:
        dger(&n, &m, &alpha, <double *> y, &incy, <double *> x, &incx, A, &lda)
    else:
        sger(&n, &m, &alpha, <float *> y, &incy, <float *> x, &incx, A, &lda)


cdef inline void _gemm(bint trans_a, bint trans_b, blas_int m, blas_int n, blas_int k,
                       floating alpha, const floating *A, blas_int lda,
                       const floating *B, blas_int ldb, floating beta,
                       floating *C, blas_int ldc) noexcept nogil:
    """C (m x n) = alpha op(A) op(B) + beta C"""
    # column-major: Cᵀ = op(B)ᵀ op(A)ᵀ
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if floating is double:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double *> B, &ldb, <double *> A, &lda,
              &beta, C, &ldc)
    else:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float *> B, &ldb, <float *> A, &lda,
              &beta, C, &ldc)


# ---------------------------------------------------------------------------
# 2. The routing policy.

# Room for the row-major copy of a small Bᵀ, on the stack of ``gemm``.
cdef enum:
    BT_CAPACITY = 4096

cdef struct Policy:
    # send m == 1 to gemm instead of gemv, per dtype
    bint rows_gemm_double
    bint rows_gemm_float
    # send k == 1 to gemm instead of ger, per dtype
    bint outer_gemm_double
    bint outer_gemm_float
    # use the small-kernel forms of the other products (the thresholds below)
    bint small_kernels
    # op(B), or C for Aᵀ B, of at most this many entries is small
    Py_ssize_t small_max_entries
    # fewer rows than this do not repay copying a small Bᵀ
    Py_ssize_t copy_bt_min_rows
    # the small kernels' limit (multiply-adds): A op(B) is cut into row blocks within it
    Py_ssize_t small_kernel_max_madds
    # Aᵀ B past this many multiply-adds is summed over row blocks of at most it
    Py_ssize_t tn_block_max_madds

# Until set_policy runs: level 2 for vector shapes, no small-kernel forms.
cdef Policy _policy = Policy(
    rows_gemm_double=False, rows_gemm_float=False,
    outer_gemm_double=False, outer_gemm_float=False, small_kernels=False,
    small_max_entries=0, copy_bt_min_rows=0, small_kernel_max_madds=1,
    tn_block_max_madds=1)


def set_policy(*, bint rows_gemm_double, bint rows_gemm_float,
               bint outer_gemm_double, bint outer_gemm_float, bint small_kernels,
               Py_ssize_t small_max_entries, Py_ssize_t copy_bt_min_rows,
               Py_ssize_t small_kernel_max_madds, Py_ssize_t tn_block_max_madds):
    """Set how ``gemm`` routes products (every field by name; see the Policy
    struct). Called once per process by ``_blas_policy``, before any fit, and
    by the tests; not while another thread multiplies."""
    if not 0 <= small_max_entries <= BT_CAPACITY:
        raise ValueError(f"small_max_entries must be in [0, {BT_CAPACITY}], "
                         f"got {small_max_entries}")
    if copy_bt_min_rows < 0:
        raise ValueError(f"copy_bt_min_rows must be >= 0, got {copy_bt_min_rows}")
    # a block must hold at least one row of the largest small operand
    for name, value in (("small_kernel_max_madds", small_kernel_max_madds),
                        ("tn_block_max_madds", tn_block_max_madds)):
        if value < max(small_max_entries, 1):
            raise ValueError(f"{name} must be at least small_max_entries "
                             f"({max(small_max_entries, 1)}), got {value}")
    global _policy
    _policy = Policy(
        rows_gemm_double=rows_gemm_double, rows_gemm_float=rows_gemm_float,
        outer_gemm_double=outer_gemm_double, outer_gemm_float=outer_gemm_float,
        small_kernels=small_kernels, small_max_entries=small_max_entries,
        copy_bt_min_rows=copy_bt_min_rows,
        small_kernel_max_madds=small_kernel_max_madds,
        tn_block_max_madds=tn_block_max_madds)


def get_policy():
    """The policy in force, as a dict of its fields."""
    return _policy


# ---------------------------------------------------------------------------
# 3. The routing function.

cdef inline void _scale_c(blas_int m, blas_int n, floating beta, floating *C,
                          blas_int ldc) noexcept nogil:
    """C (m x n) *= beta; beta = 0 writes zeros (C may hold NaN)."""
    cdef Py_ssize_t i, j
    if beta == 0:
        for i in range(m):
            memset(C + i * ldc, 0, n * sizeof(floating))
    elif beta != 1:
        for i in range(m):
            for j in range(n):
                C[i * ldc + j] *= beta


cdef inline blas_int _even_block(blas_int total, Py_ssize_t most) noexcept nogil:
    """Size of the blocks that cut ``total`` into as few blocks of at most
    ``most`` as possible, as even as that count allows (200 rows, at most
    172 a block: 100 and 100, not 172 and 28)."""
    cdef Py_ssize_t count = (<Py_ssize_t> total + most - 1) // most
    return <blas_int> ((total + count - 1) // count)


cdef void gemm(bint trans_a, bint trans_b, blas_int m, blas_int n, blas_int k,
               floating alpha, const floating *A, blas_int lda,
               const floating *B, blas_int ldb, floating beta,
               floating *C, blas_int ldc) noexcept nogil:
    """C (m x n) = alpha op(A) op(B) + beta C, all row-major, routed to the
    wrapper that suits the shape under the policy (module docstring)."""
    cdef blas_int inc_a, inc_b
    cdef floating d
    if m == 1 and n == 1:
        # c = alpha a · b + beta c, a = the row of op(A), b = the column of op(B)
        d = _dot(k, A, lda if trans_a else 1, B, 1 if trans_b else ldb)
        C[0] = alpha * d if beta == 0 else alpha * d + beta * C[0]
        return
    if k == 1 and m == 1:
        # the row c = (alpha a_00) op(B)[0, :] + beta c
        _scale_c(1, n, beta, C, ldc)
        _axpy(n, alpha * A[0], B, ldb if trans_b else 1, C, 1)
        return
    if k == 1 and n == 1:
        # the column c = (alpha b_00) op(A)[:, 0] + beta c
        _scale_c(m, 1, beta, C, ldc)
        _axpy(m, alpha * B[0], A, 1 if trans_a else lda, C, ldc)
        return
    if m == 1 and not (_policy.rows_gemm_double if floating is double
                       else _policy.rows_gemm_float):
        # the row c = alpha op(B)ᵀ a + beta c, a = the row of op(A); B is
        # stored n x k (trans_b) or k x n
        _gemv(not trans_b, n if trans_b else k, k if trans_b else n, alpha, B, ldb,
              A, lda if trans_a else 1, beta, C, 1)
        return
    if n == 1:
        # the column c = alpha op(A) b + beta c, b = the column of op(B); A
        # is stored k x m (trans_a) or m x k
        _gemv(trans_a, k if trans_a else m, m if trans_a else k, alpha, A, lda,
              B, 1 if trans_b else ldb, beta, C, ldc)
        return
    if k == 1:
        # the outer product C = alpha a bᵀ + beta C, a = the column of op(A),
        # b = the row of op(B)
        inc_a = 1 if trans_a else lda
        inc_b = ldb if trans_b else 1
        if not (_policy.outer_gemm_double if floating is double
                else _policy.outer_gemm_float):
            _scale_c(m, n, beta, C, ldc)
            _ger(m, n, alpha, A, inc_a, B, inc_b, C, ldc)
            return
        if inc_b == 1 and (floating is float or not (trans_a and not trans_b)):
            # as "N", "N", the form the small kernels are fastest at: a is an
            # m x 1 matrix with row length its stride, b (stride 1) a 1 x n
            # matrix with row length n
            _gemm(False, False, m, n, k, alpha, A, inc_a, B, n, beta, C, ldc)
            return
    cdef floating bt[BT_CAPACITY]
    cdef blas_int p, j, kc, kk
    cdef floating b
    # products of two dimensions in Py_ssize_t: in blas_int they could wrap
    # to a small number and send a large B into the bt buffer
    cdef Py_ssize_t nk = <Py_ssize_t> n * k, mn = <Py_ssize_t> m * n
    if _policy.small_kernels and not trans_a and nk <= _policy.small_max_entries and (
            m >= _policy.copy_bt_min_rows if trans_b
            else <double> m * nk > _policy.small_kernel_max_madds):
        if trans_b:
            # op(B) = Bᵀ as a row-major k x n block, multiplied untransposed
            for p in range(k):
                for j in range(n):
                    bt[p * n + j] = B[<Py_ssize_t> j * ldb + p]
            B = bt
            ldb = n
        # even blocks of rows, each within the small kernels
        kc = _even_block(m, _policy.small_kernel_max_madds // nk)
        p = 0
        while p < m:
            kk = min(kc, m - p)
            _gemm(False, False, kk, n, k, alpha, A + <Py_ssize_t> p * lda, lda, B, ldb,
                  beta, C + <Py_ssize_t> p * ldc, ldc)
            p += kk
        return
    if _policy.small_kernels and trans_a and not trans_b \
            and mn <= _policy.small_max_entries \
            and <double> k * mn > _policy.tn_block_max_madds:
        # Aᵀ B summed over even blocks of rows of A and B, each within the
        # small kernels
        kc = _even_block(k, _policy.tn_block_max_madds // mn)
        b = beta
        p = 0
        while p < k:
            kk = min(kc, k - p)
            _gemm(True, False, m, n, kk, alpha, A + <Py_ssize_t> p * lda, lda,
                  B + <Py_ssize_t> p * ldb, ldb, b, C, ldc)
            b = 1
            p += kk
        return
    _gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


# ---------------------------------------------------------------------------
# The memoryview twins, for the tests. They check what the wrappers take on
# trust: shapes that agree, no empty operand (BLAS wants leading dimensions
# of at least 1), rows stored contiguously, sizes that fit blas_int.

cdef blas_int _row_length(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row_stride,
                          Py_ssize_t col_stride, Py_ssize_t itemsize, str what) except -1:
    """The leading dimension of a 2-D operand (the stored row length)."""
    if rows == 0 or cols == 0:
        raise ValueError(f"{what}: empty operand")
    if col_stride != itemsize or row_stride % itemsize:
        raise ValueError(f"{what}: its rows must be contiguous")
    cdef Py_ssize_t ld = row_stride // itemsize
    if ld < cols:
        raise ValueError(f"{what}: rows {ld} apart cannot hold {cols} columns")
    check_blas_int(rows, what + " rows")
    check_blas_int(ld, what + " row length")
    return <blas_int> ld


cdef blas_int _stride(Py_ssize_t size, Py_ssize_t stride, Py_ssize_t itemsize,
                      str what) except -1:
    """The increment of a 1-D operand, in elements."""
    if size == 0:
        raise ValueError(f"{what}: empty operand")
    if stride <= 0 or stride % itemsize:
        raise ValueError(f"{what}: stride must be a positive multiple of the item size")
    check_blas_int(size, what + " size")
    check_blas_int(stride // itemsize, what + " stride")
    return <blas_int> (stride // itemsize)


def _dot_memview(const floating[:] x,   # IN
                 const floating[:] y):  # IN
    """x · y"""
    if x.shape[0] != y.shape[0]:
        raise ValueError("dot: incompatible shapes")
    cdef blas_int incx = _stride(x.shape[0], x.strides[0], sizeof(floating), "dot: x")
    cdef blas_int incy = _stride(y.shape[0], y.strides[0], sizeof(floating), "dot: y")
    cdef floating d
    with nogil:
        d = _dot(<blas_int> x.shape[0], &x[0], incx, &y[0], incy)
    return d


def _axpy_memview(double alpha,
                  const floating[:] x,  # IN
                  floating[:] y):       # IN/OUT
    """y += alpha x"""
    if x.shape[0] != y.shape[0]:
        raise ValueError("axpy: incompatible shapes")
    cdef blas_int incx = _stride(x.shape[0], x.strides[0], sizeof(floating), "axpy: x")
    cdef blas_int incy = _stride(y.shape[0], y.strides[0], sizeof(floating), "axpy: y")
    with nogil:
        _axpy(<blas_int> x.shape[0], <floating> alpha, &x[0], incx, &y[0], incy)


def _gemv_memview(bint trans_a, double alpha,
                  const floating[:, :] A,  # IN
                  const floating[:] x,     # IN
                  double beta,
                  floating[:] y):          # IN/OUT
    """y = alpha op(A) x + beta y"""
    cdef Py_ssize_t m = A.shape[0], n = A.shape[1]
    if x.shape[0] != (m if trans_a else n) or y.shape[0] != (n if trans_a else m):
        raise ValueError("gemv: incompatible shapes")
    cdef blas_int lda = _row_length(A.shape[0], A.shape[1], A.strides[0], A.strides[1],
                                    sizeof(floating), "gemv: A")
    cdef blas_int incx = _stride(x.shape[0], x.strides[0], sizeof(floating), "gemv: x")
    cdef blas_int incy = _stride(y.shape[0], y.strides[0], sizeof(floating), "gemv: y")
    with nogil:
        _gemv(trans_a, <blas_int> m, <blas_int> n, <floating> alpha, &A[0, 0], lda,
              &x[0], incx, <floating> beta, &y[0], incy)


def _ger_memview(double alpha,
                 const floating[:] x,  # IN
                 const floating[:] y,  # IN
                 floating[:, :] A):    # IN/OUT
    """A += alpha x yᵀ"""
    if x.shape[0] != A.shape[0] or y.shape[0] != A.shape[1]:
        raise ValueError("ger: incompatible shapes")
    cdef blas_int lda = _row_length(A.shape[0], A.shape[1], A.strides[0], A.strides[1],
                                    sizeof(floating), "ger: A")
    cdef blas_int incx = _stride(x.shape[0], x.strides[0], sizeof(floating), "ger: x")
    cdef blas_int incy = _stride(y.shape[0], y.strides[0], sizeof(floating), "ger: y")
    with nogil:
        _ger(<blas_int> A.shape[0], <blas_int> A.shape[1], <floating> alpha,
             &x[0], incx, &y[0], incy, &A[0, 0], lda)


cdef tuple _gemm_sizes(bint trans_a, bint trans_b, a_shape, b_shape, c_shape):
    """(m, n, k) of C = op(A) op(B), or ValueError."""
    m = a_shape[1] if trans_a else a_shape[0]
    k = a_shape[0] if trans_a else a_shape[1]
    kb = b_shape[1] if trans_b else b_shape[0]
    n = b_shape[0] if trans_b else b_shape[1]
    if kb != k or c_shape[0] != m or c_shape[1] != n:
        raise ValueError("gemm: incompatible shapes")
    if m == 0 or n == 0 or k == 0:
        raise ValueError("gemm: empty operand")
    for size, what in ((m, "m"), (n, "n"), (k, "k")):
        check_blas_int(size, "gemm: " + what)
    return m, n, k


def _gemm_args(bint trans_a, bint trans_b, const floating[:, :] A,
               const floating[:, :] B, const floating[:, :] C):
    """m, n, k and the three leading dimensions of a memoryview gemm, checked."""
    m, n, k = _gemm_sizes(trans_a, trans_b, (A.shape[0], A.shape[1]),
                          (B.shape[0], B.shape[1]), (C.shape[0], C.shape[1]))
    return (m, n, k,
            _row_length(A.shape[0], A.shape[1], A.strides[0], A.strides[1],
                        sizeof(floating), "gemm: A"),
            _row_length(B.shape[0], B.shape[1], B.strides[0], B.strides[1],
                        sizeof(floating), "gemm: B"),
            _row_length(C.shape[0], C.shape[1], C.strides[0], C.strides[1],
                        sizeof(floating), "gemm: C"))


def _gemm_memview(bint trans_a, bint trans_b, double alpha,
                  const floating[:, :] A,  # IN
                  const floating[:, :] B,  # IN
                  double beta,
                  floating[:, :] C):       # IN/OUT
    """C = alpha op(A) op(B) + beta C, straight to gemm (no routing)."""
    cdef blas_int bm, bn, bk, lda, ldb, ldc
    bm, bn, bk, lda, ldb, ldc = _gemm_args(trans_a, trans_b, A, B, C)
    with nogil:
        _gemm(trans_a, trans_b, bm, bn, bk, <floating> alpha, &A[0, 0], lda,
              &B[0, 0], ldb, <floating> beta, &C[0, 0], ldc)


def gemm_memview(bint trans_a, bint trans_b, double alpha,
                 const floating[:, :] A,  # IN
                 const floating[:, :] B,  # IN
                 double beta,
                 floating[:, :] C):       # IN/OUT
    """C = alpha op(A) op(B) + beta C through the routing function ``gemm``."""
    cdef blas_int bm, bn, bk, lda, ldb, ldc
    bm, bn, bk, lda, ldb, ldc = _gemm_args(trans_a, trans_b, A, B, C)
    with nogil:
        gemm(trans_a, trans_b, bm, bn, bk, <floating> alpha, &A[0, 0], lda,
             &B[0, 0], ldb, <floating> beta, &C[0, 0], ldc)
