"""Compiled forward, backward, training epoch and prediction.

Design: the parameters of a network live in one flat vector, laid out like
scikit-learn's ``_pack``: every layer's weights (fan_in x fan_out, row-major)
one after the other, then every layer's intercepts. The fitted ``coefs_`` and
``intercepts_`` are views into that vector, L-BFGS optimises it directly, and
an optimizer step is one loop over it.

A ``Layout`` describes the network (units, offsets, activations, loss) and a
``Workspace`` holds the buffers for at most ``cap`` rows: the gathered input
rows, targets and weights, every layer's activations (and pre-activations for
the activations whose derivative needs them) and two delta buffers used in
turn. Both are allocated once per fit; nothing is allocated per batch.

A chunk of rows (``Chunk``) goes through three kernels every caller shares:
``_forward`` (Z = A W + b, A' = f(Z) for every layer), ``_loss`` (the loss
and the output delta) and ``_backward`` (the deltas back through the layers,
adding the unnormalised gradient into ``grads``); ``_fwd_bwd`` runs the
three. A training epoch runs them once per mini-batch and then steps the
optimizer (``Optimizer``, ``_optimizer_step``); the full-data objective for
L-BFGS and for the gradient checker runs them once per chunk of rows; the
predictions run ``_forward`` alone. Plain SGD (momentum 0) updates the
weights inside the backward pass instead (``PlainSgd``), and at batch size
1 keeps them as a factor times a matrix (``Scaled``, a section of its own).
Every matrix product goes through ``_blas.gemm``; the elementwise work is in
``csrc/``. The Python layer calls ``epoch`` once per epoch, with the GIL
released for the whole of it. Nothing inside the ``nogil`` blocks raises: a
pending signal sets a flag, the loop stops at the next batch boundary, and the
exception is raised after the GIL is taken back.

The kernels trust every size they are given, so each entry point checks them
all first, with the GIL held: X's width against the layout, the targets,
weights, parameter and state vectors, the rows it is told to visit, the output
and the workspace's buffers (a workspace built for another layout is
refused); ``Input`` checks a sparse X's structure. A model changed by another
thread, or bad arguments, end in a ValueError, never in a read or write out of
bounds. Dimensions that reach BLAS are checked against its integer type when
the layout is built.
"""
import numpy as np

from cython cimport floating
from libc.math cimport sqrt, pow
from libc.string cimport memcpy, memset

import sys

from ._blas cimport gemm, blas_int
from ._blas import BLAS_INT_MAX, check_blas_int
from ._ckernels cimport (
    bp_act_needs_z, bp_prefetch, fill_rows, activate, act_grad, loss_delta,
    loss_only, colsum_add, finish_grad, sumsq, decay_sumsq, step, all_finite,
    dropout, mul, dot, bp_take, bp_take_none, bp_step_settings, bp_team_size,
    bp_max_threads, bp_queue, bp_queue_init, bp_queue_take, bp_queue_done,
    bp_queue_publish, bp_queue_wait, bp_flag_set, bp_flag_get, bp_ticks,
)
from cython.parallel cimport parallel, threadid
from libc.stdint cimport uint64_t, int32_t, int64_t

cdef extern from "Python.h":
    int _check_signals "PyErr_CheckSignals"() noexcept


cdef int _reraise() except -1:
    # The exception set by PyErr_CheckSignals is still pending: returning -1
    # from an ``except -1`` function makes Cython raise it.
    return -1


# Solver codes (enum bp_solver in bp_kernels.h)
from ._codes cimport BP_SGD as SOLVER_SGD, BP_ADAM as SOLVER_ADAM, BP_ADAMW as SOLVER_ADAMW
from ._codes cimport BP_EXP, BP_ABSOLUTE_ERROR

# Work (rows x parameters) between two checks for Ctrl-C: often enough that
# an interrupt stops a fit at once, rarely enough that taking the GIL for the
# check costs nothing measurable.
cdef Py_ssize_t SIGNAL_WORK = 1 << 22

# Codes the C kernels know: the last of enum bp_activation and bp_loss.
MAX_ACTIVATION = BP_EXP
MAX_LOSS = BP_ABSOLUTE_ERROR

# The largest leading dimension handed to BLAS; a dense X whose rows are
# further apart than this is gathered instead of read in place.
cdef Py_ssize_t LD_MAX = BLAS_INT_MAX


def _check_sizes(u, cap):
    """OverflowError when a buffer of a layout of widths ``u`` (a list) over
    ``cap`` rows would have more bytes than Py_ssize_t counts (Python integers
    here: numpy's would wrap)."""
    n_params = sum(a * b for a, b in zip(u, u[1:])) + sum(u[1:])
    largest = max(n_params, cap * sum(u[1:]), cap * max(u))
    if largest * 8 > sys.maxsize:
        raise OverflowError(
            f"a network of layers {u} over {cap:,} rows needs buffers of "
            f"{largest:,} values, more than memory can be addressed with"
        )


cdef struct Net:
    Py_ssize_t n_layers          # weight layers
    const Py_ssize_t *units      # n_layers + 1
    const Py_ssize_t *coef_off   # n_layers, offsets into the parameter vector
    const Py_ssize_t *icpt_off   # n_layers
    const Py_ssize_t *act_off    # n_layers, offsets into the activation buffer
    const Py_ssize_t *z_off      # n_layers, into the pre-activation buffer, or -1
    const int *act               # n_layers, activation of each layer's output
    const double *drop           # n_layers, dropout rate of each layer's output
    const Py_ssize_t *d_off      # n_layers, into the keep/mask buffers, or -1
    int loss
    double huber_delta
    Py_ssize_t n_coef            # weights come first in the parameter vector
    Py_ssize_t n_params


cdef struct Source:
    # Dense rows (any strides, in bytes) or CSR (indices as intp), of float
    # or double values (``itemsize``); a float source read by a double
    # kernel is converted row by row as it is gathered.
    Py_ssize_t itemsize
    const char *base
    Py_ssize_t row_stride
    Py_ssize_t col_stride
    bint sparse
    const char *data
    const void *indices          # int32 or int64, as scipy stores them
    const void *indptr
    int indices_size             # 4 or 8 bytes
    int indptr_size
    Py_ssize_t n_features


cdef class Layout:
    """Shape of a network and its loss, as arrays the kernels can read."""
    cdef readonly object units, coef_off, icpt_off, act_off, z_off, act
    cdef readonly object drop, d_off
    cdef readonly Py_ssize_t cap, n_coef, n_params, act_size, z_size, max_units
    cdef readonly Py_ssize_t d_size
    cdef Net net

    def __init__(self, units, activations, int loss, double huber_delta,
                 Py_ssize_t cap, dropout_rates=None):
        if self.units is not None:
            raise RuntimeError("a Layout is initialised once")
        # a copy of its own, made read-only below: the kernels hold pointers
        # into these arrays, so nobody may change them once the layout exists
        units = np.array(units, dtype=np.intp)
        if units.ndim != 1:
            raise ValueError("units must be a 1-D sequence of layer widths")
        cdef Py_ssize_t L = units.shape[0] - 1, l
        if L < 1 or cap < 1:
            raise ValueError("a network needs at least one layer and one row")
        # checked as Python integers: a layout is built per predict call, and
        # numpy's reductions on a few numbers cost more than the rest of it
        widths = units.tolist()
        if min(widths) < 1:
            raise ValueError(f"every layer needs at least one unit, got {widths}")
        # every BLAS dimension (rows, fan-in, fan-out, leading dimensions) is
        # one of these: refuse what blas_int cannot hold, before any buffer
        # of that size exists
        if cap > BLAS_INT_MAX or max(widths) > BLAS_INT_MAX:
            check_blas_int(cap, "rows per chunk")
            for l in range(L + 1):
                check_blas_int(widths[l], f"layer {l}'s width")
        _check_sizes(widths, cap)
        if not 0 <= loss <= MAX_LOSS:
            raise ValueError(f"unknown loss code {loss}")
        fan_out = units[1:]
        sizes = units[:L] * fan_out
        self.n_coef = int(sizes.sum())
        self.n_params = self.n_coef + int(fan_out.sum())
        self.coef_off = np.concatenate([[0], np.cumsum(sizes)[:L - 1]]).astype(np.intp)
        self.icpt_off = (self.n_coef + np.concatenate(
            [[0], np.cumsum(fan_out)[:L - 1]])).astype(np.intp)
        self.act = np.array(activations, dtype=np.intc).reshape(-1)
        if self.act.shape[0] != L:
            raise ValueError("one activation per layer is needed")
        codes = self.act.tolist()
        if min(codes) < 0 or max(codes) > MAX_ACTIVATION:
            raise ValueError(f"unknown activation code in {codes}")
        self.act_off = (cap * np.concatenate(
            [[0], np.cumsum(fan_out)[:L - 1]])).astype(np.intp)
        z_off = np.full(L, -1, dtype=np.intp)
        z_size = 0
        for l in range(L):
            if bp_act_needs_z(self.act[l]):
                z_off[l] = z_size
                z_size += cap * units[l + 1]
        self.z_off = z_off
        # Dropout on hidden layers: the activation before dropout and the
        # mask are kept for the backward pass.
        self.drop = np.zeros(L, dtype=np.float64)
        if dropout_rates is not None:
            self.drop[:L - 1] = dropout_rates
        if np.any(self.drop < 0) or np.any(self.drop >= 1):
            raise ValueError("dropout rates must be in [0, 1)")
        d_off = np.full(L, -1, dtype=np.intp)
        d_size = 0
        for l in range(L - 1):
            if self.drop[l] > 0:
                d_off[l] = d_size
                d_size += cap * units[l + 1]
        self.d_off = d_off
        self.d_size = d_size
        self.units = units
        self.cap = cap
        self.act_size = cap * int(fan_out.sum())
        self.z_size = z_size
        self.max_units = int(fan_out.max())
        for a in (self.units, self.coef_off, self.icpt_off, self.act_off,
                  self.z_off, self.act, self.drop, self.d_off):
            a.setflags(write=False)
        self._bind(loss, huber_delta)

    cdef void _bind(self, int loss, double huber_delta):
        cdef const Py_ssize_t[::1] u = self.units, co = self.coef_off
        cdef const Py_ssize_t[::1] io = self.icpt_off, ao = self.act_off, zo = self.z_off
        cdef const int[::1] ac = self.act
        cdef const double[::1] dr = self.drop
        cdef const Py_ssize_t[::1] do = self.d_off
        self.net.drop = &dr[0]
        self.net.d_off = &do[0]
        self.net.n_layers = u.shape[0] - 1
        self.net.units = &u[0]
        self.net.coef_off = &co[0]
        self.net.icpt_off = &io[0]
        self.net.act_off = &ao[0]
        self.net.z_off = &zo[0]
        self.net.act = &ac[0]
        self.net.loss = loss
        self.net.huber_delta = huber_delta
        self.net.n_coef = self.n_coef
        self.net.n_params = self.n_params


cdef class Workspace:
    """Buffers for ``layout.cap`` rows, allocated once. A workspace for the
    parallel epoch (``blocked``) keeps every layer's delta too."""
    cdef readonly object xbuf, ybuf, swbuf, acts, zs, d0, d1, keep, mask, deltas
    cdef readonly bint blocked

    def __init__(self, Layout layout not None, dtype, Py_ssize_t n_features, bint sparse,
                 bint blocked=False):
        # the kernels hold pointers into the buffers while the GIL is released
        if self.xbuf is not None:
            raise RuntimeError("a Workspace is initialised once")
        cap = layout.cap
        n_out = int(layout.units[layout.units.shape[0] - 1])
        self.xbuf = np.empty(1 if sparse else cap * n_features, dtype=dtype)
        self.ybuf = np.empty(cap * n_out, dtype=dtype)
        self.swbuf = np.empty(cap, dtype=dtype)
        self.acts = np.empty(layout.act_size, dtype=dtype)
        self.zs = np.empty(max(layout.z_size, 1), dtype=dtype)
        self.d0 = np.empty(cap * layout.max_units, dtype=dtype)
        self.d1 = np.empty(cap * layout.max_units, dtype=dtype)
        self.keep = np.empty(max(layout.d_size, 1), dtype=dtype)
        self.mask = np.empty(max(layout.d_size, 1), dtype=dtype)
        self.deltas = np.empty(layout.act_size if blocked else 1, dtype=dtype)
        self.blocked = blocked


cdef class Input:
    """A read-only view of X for the kernels: dense with any strides, or CSR.

    A sparse X is checked first (``check_sparse``): the kernels index the
    weights with its column indices and walk its rows with its indptr, so a
    malformed matrix would read and write out of bounds."""
    cdef readonly object X, data, indices, indptr
    cdef readonly bint sparse
    cdef readonly Py_ssize_t n_samples, n_features
    cdef Source src

    def __init__(self, X):
        cdef const unsigned char[::1] raw, ind, ptr
        if self.X is not None:
            raise RuntimeError("an Input is initialised once")
        self.sparse = hasattr(X, "tocsr")
        if not self.sparse and not isinstance(X, np.ndarray):
            raise TypeError(f"X must be a numpy array or a sparse matrix, got {type(X).__name__}")
        if len(X.shape) != 2:
            raise ValueError(f"X must be 2-D, got shape {X.shape}")
        if X.dtype not in (np.float32, np.float64):
            raise TypeError("X must be float32 or float64")
        self.X = X
        self.n_samples, self.n_features = X.shape
        self.src.n_features = self.n_features
        self.src.sparse = self.sparse
        self.src.itemsize = X.dtype.itemsize
        if self.sparse:
            # CSR is read where it is, int32 or int64 indices alike; other
            # formats are converted to CSR once (row access is what batches
            # need), after their own structure is checked: scipy's converters
            # do not check it either.
            if X.format != "csr":
                check_sparse(X)
                X = X.tocsr()
            self.X = X
            self.data = np.ascontiguousarray(X.data)
            self.indices = X.indices
            self.indptr = X.indptr
            if (self.indices.dtype not in (np.int32, np.int64)
                    or self.indptr.dtype not in (np.int32, np.int64)):
                self.indices = self.indices.astype(np.int64)
                self.indptr = self.indptr.astype(np.int64)
            self.indices = np.ascontiguousarray(self.indices)
            self.indptr = np.ascontiguousarray(self.indptr)
            # the arrays the kernels will read, checked as they will read them
            _check_compressed(self.indptr, self.indices, self.data.shape[0],
                              self.n_samples, self.n_features, "CSR")
            raw = self.data.view(np.uint8) if self.data.size else np.zeros(1, np.uint8)
            ind = (self.indices.view(np.uint8) if self.indices.size
                   else np.zeros(8, np.uint8))
            ptr = self.indptr.view(np.uint8)
            self.src.data = <const char *> &raw[0]
            self.src.indices = <const void *> &ind[0]
            self.src.indptr = <const void *> &ptr[0]
            self.src.indices_size = self.indices.dtype.itemsize
            self.src.indptr_size = self.indptr.dtype.itemsize
            self.src.base = NULL
        else:
            if X.size == 0:
                raise ValueError("empty input")
            self.data = X
            self.src.base = <const char *> <size_t> X.__array_interface__["data"][0]
            self.src.row_stride = X.strides[0]
            self.src.col_stride = X.strides[1]


cdef int _bad_compressed(const void *indptr, int ptr_size, const void *indices,
                         int ind_size, Py_ssize_t n_major, Py_ssize_t n_minor,
                         Py_ssize_t n_stored, Py_ssize_t *where) noexcept nogil:
    """0 when indptr and indices describe a well-formed compressed matrix,
    else what is wrong (1 to 4), at ``where``."""
    cdef Py_ssize_t i, p, last, prev, cur
    cdef const int32_t *i32 = <const int32_t *> indices
    cdef const int64_t *i64 = <const int64_t *> indices
    if _ix(indptr, ptr_size, 0) != 0:
        return 1
    prev = 0
    for i in range(n_major):
        cur = _ix(indptr, ptr_size, i + 1)
        if cur < prev:
            where[0] = i
            return 2
        prev = cur
    last = prev
    if last > n_stored:
        where[0] = last
        return 3
    # one loop per index width, so that each is a plain compare-and-count
    # loop; unsigned compares catch negative indices too
    if ind_size == 4:
        for p in range(last):
            if <size_t> i32[p] >= <size_t> n_minor:
                where[0] = p
                return 4
    else:
        for p in range(last):
            if <size_t> i64[p] >= <size_t> n_minor:
                where[0] = p
                return 4
    return 0


cdef int _check_compressed(indptr, indices, Py_ssize_t n_data, Py_ssize_t n_major,
                           Py_ssize_t n_minor, str fmt) except -1:
    """ValueError unless indptr (n_major + 1 entries, from 0, non-decreasing,
    ending within indices and data) and indices (in [0, n_minor)) are
    well-formed; both contiguous int32 or int64."""
    cdef const unsigned char[::1] ptr, ind
    cdef Py_ssize_t where = 0, n_stored
    cdef int bad
    cdef int ptr_size = indptr.dtype.itemsize, ind_size = indices.dtype.itemsize
    what = "row" if fmt == "CSR" else "column" if fmt == "CSC" else "block row"
    if indptr.ndim != 1 or indptr.shape[0] != n_major + 1:
        raise ValueError(
            f"malformed {fmt} matrix: indptr has {indptr.shape[0]} entries, a "
            f"matrix of {n_major} {what}s needs {n_major + 1}"
        )
    n_stored = min(indices.shape[0], n_data)
    ptr = indptr.view(np.uint8)
    ind = indices.view(np.uint8) if indices.size else np.zeros(8, np.uint8)
    with nogil:
        bad = _bad_compressed(&ptr[0], ptr_size, &ind[0], ind_size, n_major,
                              n_minor, n_stored, &where)
    if bad == 1:
        raise ValueError(f"malformed {fmt} matrix: indptr[0] is {indptr[0]}, not 0")
    if bad == 2:
        raise ValueError(
            f"malformed {fmt} matrix: indptr decreases from {what} {where} to "
            f"{where + 1} ({indptr[where]} > {indptr[where + 1]})"
        )
    if bad == 3:
        raise ValueError(
            f"malformed {fmt} matrix: indptr[-1] is {where}, beyond the "
            f"{indices.shape[0]} indices or {n_data} stored values"
        )
    if bad == 4:
        raise ValueError(
            f"malformed {fmt} matrix: index {indices[where]} at position {where} "
            f"is out of range [0, {n_minor})"
        )
    return 0


def _index_array(a):
    """A contiguous int32 or int64 copy of an index array (or itself)."""
    a = np.asarray(a)
    if a.dtype not in (np.int32, np.int64):
        if a.dtype.kind not in "iu":
            raise ValueError(f"sparse index arrays must be integers, got {a.dtype}")
        a = a.astype(np.int64)      # uint64 beyond int64 wraps negative: refused
    return np.ascontiguousarray(a)


def check_sparse(X):
    """ValueError unless the structure of sparse X is well-formed (CSR, CSC
    and BSR: indptr and indices; COO: row and column indices), in O(nnz).

    scipy checks none of it once a matrix exists (its attributes can be
    replaced or edited in place), and neither do its format converters."""
    if len(X.shape) != 2:
        return      # not a matrix: the input validation says so in its words
    fmt = X.format
    n_rows, n_cols = X.shape
    if fmt in ("csr", "csc"):
        major, minor = (n_rows, n_cols) if fmt == "csr" else (n_cols, n_rows)
        _check_compressed(_index_array(X.indptr), _index_array(X.indices),
                          np.asarray(X.data).shape[0], major, minor, fmt.upper())
    elif fmt == "bsr":
        R, C = X.blocksize
        _check_compressed(_index_array(X.indptr), _index_array(X.indices),
                          np.asarray(X.data).shape[0], n_rows // R, n_cols // C, "BSR")
    elif fmt == "coo":
        coords = X.coords if hasattr(X, "coords") else (X.row, X.col)
        n_data = np.asarray(X.data).shape[0]
        for axis, (c, n) in enumerate(zip(coords, X.shape)):
            c = np.asarray(c)
            if c.shape[0] != n_data:
                raise ValueError(
                    f"malformed COO matrix: {c.shape[0]} {('row', 'column')[axis]} "
                    f"indices for {n_data} stored values"
                )
            if c.size and (c.min() < 0 or c.max() >= n):
                raise ValueError(
                    f"malformed COO matrix: a {('row', 'column')[axis]} index is "
                    f"out of range [0, {n})"
                )


# --------------------------------------------------------------------------
# Kernels (nogil)

# Rows of X are read in shuffled order, each one a cache miss unless asked for
# early: the gather asks for the row this many ahead of the one it copies, and
# the epoch asks for the next batch's first rows, which that look-ahead does
# not reach (docs/performance.md has the measurements).
cdef Py_ssize_t PREFETCH_ROWS = 8


cdef inline void _prefetch_row(const Source *src, Py_ssize_t row) noexcept nogil:
    if not src.sparse and src.col_stride > 0:
        bp_prefetch(src.base + row * src.row_stride,
                    (src.n_features - 1) * src.col_stride + src.itemsize)


cdef struct Chunk:
    # The rows of X a kernel works on: rows[0:n] when ``rows`` is not NULL,
    # else start to start + n; they sit in the workspace's buffers from row
    # ``at`` on (0 but in the blocks of a parallel epoch). The forward pass
    # sets ``x`` and ``ldx`` (the dense input block it read, NULL for CSR),
    # the loss sets ``weight``.
    const Py_ssize_t *rows
    Py_ssize_t start
    Py_ssize_t n
    Py_ssize_t at
    const void *x
    Py_ssize_t ldx
    double weight


cdef inline Chunk _chunk(const Py_ssize_t *rows, Py_ssize_t start,
                         Py_ssize_t n) noexcept nogil:
    cdef Chunk c
    c.rows = rows
    c.start = start
    c.n = n
    c.at = 0
    c.x = NULL
    c.ldx = 0
    c.weight = 0.0
    return c


cdef struct Buffers:
    # Data pointers of a Workspace's arrays, of the kernel's float type.
    void *xbuf      # gathered input rows
    void *ybuf      # gathered targets
    void *swbuf     # gathered sample weights
    void *acts      # every layer's activations
    void *zs        # pre-activations of the layers whose derivative needs them
    void *d0        # the two delta buffers, used in turn
    void *d1
    void *keep      # dropout: activations before the mask
    void *mask
    void *deltas    # every layer's delta (the parallel epoch), laid out as acts


cdef const floating *_dense_rows(const Source *src, const Py_ssize_t *rows,
                                 Py_ssize_t start, Py_ssize_t n,
                                 floating *xbuf, Py_ssize_t *ld) noexcept nogil:
    """Rows of X as a row-major block: X itself when its rows are already
    contiguous and consecutive, else gathered into ``xbuf``."""
    cdef Py_ssize_t r, j, row, nf = src.n_features
    cdef Py_ssize_t es = sizeof(floating)
    cdef const char *p
    cdef floating *out
    if (rows == NULL and src.itemsize == es and src.col_stride == es
            and src.row_stride > 0 and src.row_stride % es == 0
            and src.row_stride // es >= nf and src.row_stride // es <= LD_MAX):
        ld[0] = src.row_stride // es
        return <const floating *> (src.base + start * src.row_stride)
    if n == 1 and src.itemsize == es and src.col_stride == es:
        # one row (batch size 1) is a block wherever it is
        ld[0] = nf
        row = rows[0] if rows != NULL else start
        return <const floating *> (src.base + row * src.row_stride)
    for r in range(n):
        row = rows[r] if rows != NULL else start + r
        if rows != NULL and r + PREFETCH_ROWS < n:
            _prefetch_row(src, rows[r + PREFETCH_ROWS])
        p = src.base + row * src.row_stride
        out = xbuf + r * nf
        if src.itemsize != es:
            for j in range(nf):
                out[j] = <floating> (<const float *> (p + j * src.col_stride))[0]
        elif src.col_stride == es:
            memcpy(out, p, nf * es)
        else:
            for j in range(nf):
                out[j] = (<const floating *> (p + j * src.col_stride))[0]
    ld[0] = nf
    return xbuf


cdef inline Py_ssize_t _ix(const void *a, int size, Py_ssize_t p) noexcept nogil:
    """Entry p of a CSR index array of 4- or 8-byte integers."""
    if size == 4:
        return (<const int32_t *> a)[p]
    return (<const int64_t *> a)[p]


cdef inline floating _csr_value(const Source *src, Py_ssize_t p,
                                const floating *dtype_of) noexcept nogil:
    """Value p of a CSR source in the kernel's dtype (``dtype_of`` only
    selects the specialisation)."""
    if <Py_ssize_t> sizeof(floating) != src.itemsize:
        return <floating> (<const float *> src.data)[p]
    return (<const floating *> src.data)[p]


cdef void _csr_matmul(const Source *src, const Py_ssize_t *rows, Py_ssize_t start,
                      Py_ssize_t n, const floating *W, Py_ssize_t n_out,
                      floating *out) noexcept nogil:
    """out (n x n_out) += X[rows] @ W for CSR X."""
    cdef Py_ssize_t r, p, j, row
    cdef floating v
    cdef floating *o
    cdef const floating *w
    for r in range(n):
        row = rows[r] if rows != NULL else start + r
        o = out + r * n_out
        for p in range(_ix(src.indptr, src.indptr_size, row),
                       _ix(src.indptr, src.indptr_size, row + 1)):
            v = _csr_value(src, p, W)
            w = W + _ix(src.indices, src.indices_size, p) * n_out
            for j in range(n_out):
                o[j] += v * w[j]


cdef void _csr_grad(const Source *src, const Py_ssize_t *rows, Py_ssize_t start,
                    Py_ssize_t n, const floating *delta, Py_ssize_t n_out,
                    floating scale, floating *G) noexcept nogil:
    """G (n_features x n_out) += scale X[rows].T @ delta for CSR X."""
    cdef Py_ssize_t r, p, j, row
    cdef floating v
    cdef floating *g
    cdef const floating *d
    for r in range(n):
        row = rows[r] if rows != NULL else start + r
        d = delta + r * n_out
        for p in range(_ix(src.indptr, src.indptr_size, row),
                       _ix(src.indptr, src.indptr_size, row + 1)):
            v = scale * _csr_value(src, p, delta)
            g = G + _ix(src.indices, src.indices_size, p) * n_out
            for j in range(n_out):
                g[j] += v * d[j]


cdef const floating *_rows_of(const floating *M, Py_ssize_t width,
                              const Py_ssize_t *rows, Py_ssize_t start,
                              Py_ssize_t n, floating *buf) noexcept nogil:
    """Rows of a contiguous (n_samples x width) array, gathered if needed."""
    cdef Py_ssize_t r
    if rows == NULL:
        return M + start * width
    if width == 1:
        # one target or weight a row: plain assignments, a memcpy call per
        # value costs more than the copy
        for r in range(n):
            buf[r] = M[rows[r]]
        return buf
    for r in range(n):
        memcpy(buf + r * width, M + rows[r] * width, width * sizeof(floating))
    return buf


cdef struct Dropout:
    # Training-mode dropout: the buffers of the workspace and the RNG state;
    # a NULL pointer to it means no dropout (prediction).
    void *keep
    void *mask
    uint64_t state


# --------------------------------------------------------------------------
# Scaled weights: plain SGD at batch size 1
#
# Why: with an L2 penalty, plain SGD decays every weight at every step
# (W *= 1 - lr alpha / s), a pass over all the weights for each row when a
# batch is one row. Instead each layer is kept as W_l = scale_l V_l, as
# scikit-learn's ``WeightVector`` keeps a linear model's weights: the decay
# multiplies scale_l, the rank-one data term goes into V_l with the factor
# divided out, and the matrix products take scale_l as their BLAS alpha.
# The batch's L2 term needs |W_l|^2 = scale_l^2 |V_l|^2, and |V_l|^2 is
# kept exactly for V += k a d':
#     |V + k a d'|^2 = |V|^2 + 2k a'V d + k^2 |a|^2 |d|^2,
# where a'V d comes from products the backward pass makes anyway.
#
# The unit: ``_scaled_new`` (allocate), ``_scaled_start`` (count |V_l|^2 at
# the start of an epoch), ``_scaled_factor`` (scale_l, for the products),
# ``_scaled_dot_delta`` (a'V_l d), ``_scaled_step`` (decay and rank-one
# update), ``_scaled_fold`` (store scale_l V_l with factor 1), and
# ``_scaled_finish`` (fold every layer at the end of an epoch). The
# parameter vector holds the true weights again after every epoch.

cdef struct Scaled:
    double *scale       # n_layers factors: W_l = scale[l] V_l
    double *sq          # n_layers squared norms |V_l|^2 of the stored weights
    # z0: the first layer's Z (units[1] values), when the activation buffers
    # would not keep it
    void *z0
    double vdot         # a'V_l d of the layer being updated


# A layer's factor is folded into its weights when it falls below this (it
# falls by 1 - lr alpha per row: ~1e-6 with the defaults).
cdef double WSCALE_MIN = 1e-3


cdef object _scaled_new(Scaled *sc, Py_ssize_t n_layers, Py_ssize_t width0, dtype):
    """Point ``sc`` at new arrays (every factor 1); returns their owner,
    which the caller keeps for as long as ``sc`` is used."""
    scale = np.ones(n_layers)
    sq = np.empty(n_layers)
    z0 = np.empty(width0, dtype=dtype)
    cdef double[::1] a = scale, b = sq
    cdef unsigned char[::1] c = z0.view(np.uint8)
    sc.scale = &a[0]
    sc.sq = &b[0]
    sc.z0 = <void *> &c[0]
    sc.vdot = 0.0
    return scale, sq, z0


cdef void _scaled_start(Scaled *sc, const Net *net,
                        const floating *params) noexcept nogil:
    cdef Py_ssize_t l
    for l in range(net.n_layers):
        sc.sq[l] = sumsq(params + net.coef_off[l], net.units[l] * net.units[l + 1])


cdef inline double _scaled_factor(const Scaled *sc, Py_ssize_t l) noexcept nogil:
    """scale_l, or 1 without scaled weights (``sc`` NULL)."""
    return sc.scale[l] if sc != NULL else 1.0


cdef inline floating *_scaled_first_z(const Scaled *sc, const Net *net,
                                      floating *zs) noexcept nogil:
    """Where the forward pass keeps the first layer's Z for ``_scaled_dot_delta``."""
    return zs + net.z_off[0] if net.z_off[0] >= 0 else <floating *> sc.z0


cdef inline void _scaled_dot_delta(Scaled *sc, const Net *net, Py_ssize_t l,
                                   const floating *params, const floating *z0,
                                   const floating *a, const floating *dWt,
                                   const floating *delta) noexcept nogil:
    """a'V_l d for the one row of the batch, from products already made:
    for l > 0 from dWt = delta W_l' (before f' is applied), for the first
    layer from its Z = scale_0 a V_0 + b_0."""
    if l == 0:
        sc.vdot = (dot(z0, delta, net.units[1])
                   - dot(params + net.icpt_off[0], delta, net.units[1])) / sc.scale[0]
    else:
        sc.vdot = dot(a, dWt, net.units[l]) / sc.scale[l]


cdef void _scaled_fold(Scaled *sc, Py_ssize_t l, floating *W,
                       Py_ssize_t n) noexcept nogil:
    """W_l = scale_l V_l stored as such, with factor 1."""
    cdef double sig = sc.scale[l]
    if sig != 1.0:
        sc.sq[l] = decay_sumsq(W, n, <floating> sig) * sig * sig
        sc.scale[l] = 1.0


cdef bint _scaled_step(Scaled *sc, const Net *net, Py_ssize_t l, floating *W,
                       double c, double lr, double s, const floating *a,
                       Py_ssize_t lda, const floating *delta,
                       double *ss) noexcept nogil:
    """W_l = c W_l - (lr / s) a delta' through the factor: adds |W_l|^2
    before the step to ``ss``. False, with the layer folded, when the decay
    ``c`` is too strong for it (the caller then updates W_l itself)."""
    cdef Py_ssize_t fan_in = net.units[l], fan_out = net.units[l + 1]
    cdef double sig = sc.scale[l], k
    if not c >= 0.5:
        _scaled_fold(sc, l, W, fan_in * fan_out)
        return False
    # W = sig V before, sig c V' after: V' = V + (-lr / (s sig c)) a d'
    k = -lr / (s * sig * c)
    ss[0] += sig * sig * sc.sq[l]
    sc.sq[l] += (2.0 * k * sc.vdot
                 + k * k * dot(a, a, fan_in) * dot(delta, delta, fan_out))
    gemm(True, False, <blas_int> fan_in, <blas_int> fan_out, <blas_int> 1,
         <floating> k, a, <blas_int> lda, delta, <blas_int> fan_out,
         <floating> 1, W, <blas_int> fan_out)
    sc.scale[l] = sig * c
    if sig * c < WSCALE_MIN:
        _scaled_fold(sc, l, W, fan_in * fan_out)
    return True


cdef inline void _scaled_recount(Scaled *sc, Py_ssize_t l, const floating *W,
                                 Py_ssize_t n) noexcept nogil:
    """|V_l|^2 counted again after W_l was updated without the factor."""
    sc.sq[l] = sumsq(W, n)


cdef void _scaled_finish(Scaled *sc, const Net *net, floating *params) noexcept nogil:
    cdef Py_ssize_t l
    for l in range(net.n_layers):
        _scaled_fold(sc, l, params + net.coef_off[l], net.units[l] * net.units[l + 1])

# (end of the scaled-weights unit)
# --------------------------------------------------------------------------


cdef struct PlainSgd:
    # Plain SGD (momentum 0) applied during the backward pass: sklearn's
    # W -= lr (A'delta + alpha W) / s as W *= 1 - lr alpha / s, then
    # W += (-lr / s) A'delta by the same gemm that would have written the
    # gradient. Saves writing and reading back a gradient the size of the
    # weights; the sums round differently from sklearn's in the last place.
    void *params        # the parameter vector, updated in place
    double lr
    double alpha        # L2 penalty
    double ss           # out: sum of squared weights before the update
    Scaled *scaled      # the weights as factors (see above), or NULL


cdef void _sgd_update(PlainSgd *sgd, const Net *net, const Source *src,
                      const Chunk *c, Py_ssize_t l, const floating *a_in,
                      Py_ssize_t ld_in, const floating *delta) noexcept nogil:
    """Layer l's weights, in place: the L2 decay (summing the squares it
    decays: this batch's L2 term), then the data term."""
    cdef Py_ssize_t fan_in = net.units[l], fan_out = net.units[l + 1]
    cdef floating *W = <floating *> sgd.params + net.coef_off[l]
    cdef double s = c.weight
    cdef floating scale = <floating> (-sgd.lr / s)
    if sgd.scaled != NULL and _scaled_step(
            sgd.scaled, net, l, W, 1.0 - sgd.lr * sgd.alpha / s, sgd.lr, s,
            a_in, ld_in, delta, &sgd.ss):
        return
    if sgd.alpha > 0:
        sgd.ss += decay_sumsq(W, fan_in * fan_out,
                              <floating> (1.0 - sgd.lr * sgd.alpha / s))
    if l == 0 and src.sparse:
        _csr_grad(src, c.rows, c.start, c.n, delta, fan_out, scale, W)
    else:
        gemm(True, False, <blas_int> fan_in, <blas_int> fan_out, <blas_int> c.n,
             scale, a_in, <blas_int> ld_in, delta, <blas_int> fan_out,
             <floating> 1, W, <blas_int> fan_out)
    if sgd.scaled != NULL:
        _scaled_recount(sgd.scaled, l, W, fan_in * fan_out)


# --------------------------------------------------------------------------
# Forward, loss, backward

cdef void _forward(const Net *net, const Source *src, Chunk *c,
                   const floating *params, const Buffers *buf, Dropout *drop,
                   const Scaled *scaled) noexcept nogil:
    """Z = A W + b and A' = f(Z) for every layer; the output is at
    ``acts + act_off[L-1]``, the dense input block in ``c.x``. With
    ``drop``, hidden layers with a dropout rate keep f(Z) in ``drop.keep``
    and pass f(Z) * mask on. With ``scaled``, layer l's weights are
    ``scale[l]`` times the stored ones, and the first layer's Z is kept."""
    cdef Py_ssize_t l, fan_in, fan_out, ld = 0, at = c.at
    cdef floating w_a
    cdef const floating *inp
    cdef floating *acts = <floating *> buf.acts
    cdef floating *zs = <floating *> buf.zs
    cdef floating *out_a
    cdef floating *out_z
    cdef floating *kept
    for l in range(net.n_layers):
        fan_in = net.units[l]
        fan_out = net.units[l + 1]
        out_a = acts + net.act_off[l] + at * fan_out
        kept = NULL
        if drop != NULL and net.d_off[l] >= 0:
            kept = <floating *> drop.keep + net.d_off[l] + at * fan_out
        if net.z_off[l] >= 0:
            out_z = zs + net.z_off[l] + at * fan_out
        elif l == 0 and scaled != NULL:
            out_z = _scaled_first_z(scaled, net, zs)
        elif kept != NULL:
            out_z = kept
        else:
            out_z = out_a
        w_a = <floating> _scaled_factor(scaled, l)
        # the bias first, then gemm adds A W onto it (beta = 1): no separate
        # pass to add the bias, and BLAS skips its pass that clears C
        fill_rows(out_z, params + net.icpt_off[l], c.n, fan_out)
        if l == 0:
            if src.sparse:
                _csr_matmul(src, c.rows, c.start, c.n, params + net.coef_off[0],
                            fan_out, out_z)
                c.x = NULL
            else:
                inp = _dense_rows(src, c.rows, c.start, c.n,
                                  <floating *> buf.xbuf + at * fan_in, &ld)
                c.x = inp
                c.ldx = ld
                gemm(False, False, <blas_int> c.n, <blas_int> fan_out, <blas_int> fan_in,
                     w_a, inp, <blas_int> ld, params + net.coef_off[0],
                     <blas_int> fan_out, <floating> 1, out_z, <blas_int> fan_out)
        else:
            gemm(False, False, <blas_int> c.n, <blas_int> fan_out, <blas_int> fan_in,
                 w_a, acts + net.act_off[l - 1] + at * fan_in, <blas_int> fan_in,
                 params + net.coef_off[l], <blas_int> fan_out, <floating> 1,
                 out_z, <blas_int> fan_out)
        if kept != NULL:
            activate(net.act[l], out_z, kept, c.n, fan_out)
            dropout(kept, out_a, <floating *> drop.mask + net.d_off[l] + at * fan_out,
                    c.n * fan_out, net.drop[l], &drop.state)
        else:
            activate(net.act[l], out_z, out_a, c.n, fan_out)


cdef double _loss(const Net *net, Chunk *c, const floating *Y, const floating *sw,
                  const Buffers *buf, floating *delta) noexcept nogil:
    """The chunk's weighted loss sum, after ``_forward``; the output delta
    goes into ``delta`` and the chunk's weight sum into ``c.weight``."""
    cdef Py_ssize_t L = net.n_layers, k = net.units[L], r, at = c.at
    cdef const floating *out = <floating *> buf.acts + net.act_off[L - 1] + at * k
    cdef const floating *y = _rows_of(Y, k, c.rows, c.start, c.n,
                                      <floating *> buf.ybuf + at * k)
    cdef const floating *w = NULL
    cdef double s = 0.0
    if sw != NULL:
        w = _rows_of(sw, 1, c.rows, c.start, c.n, <floating *> buf.swbuf + at)
        for r in range(c.n):
            s += w[r]
    else:
        s = c.n
    c.weight = s
    return loss_delta(net.loss, c.n, k, out, y, w, delta, net.huber_delta)


cdef void _through_activation(const Net *net, Py_ssize_t l, const Chunk *c,
                              const Buffers *buf, const Dropout *drop,
                              floating *delta) noexcept nogil:
    """delta *= f'(Z) of layer l's output for the chunk's rows, through
    the dropout mask when layer l has one (then f' is taken at the
    activation before dropout)."""
    cdef Py_ssize_t width = net.units[l + 1], n = c.n * width, row0 = c.at * width
    cdef floating *a = <floating *> buf.acts + net.act_off[l] + row0
    cdef floating *z = <floating *> buf.zs + net.z_off[l] + row0 if net.z_off[l] >= 0 else a
    if drop != NULL and net.d_off[l] >= 0:
        mul(delta, <floating *> drop.mask + net.d_off[l] + row0, n)
        a = <floating *> drop.keep + net.d_off[l] + row0
        if net.z_off[l] < 0:
            z = a
    act_grad(net.act[l], z, a, delta, n)


cdef void _backward(const Net *net, const Source *src, const Chunk *c,
                    const floating *params, floating *grads, bint accumulate,
                    const Buffers *buf, const Dropout *drop,
                    PlainSgd *sgd) noexcept nogil:
    """Backward pass from the output delta ``_loss`` left in ``buf.d0``.

    Writes (or with ``accumulate`` adds) X'delta and colsum(delta) of every
    layer into ``grads`` (not yet divided by the weight sum, no L2 term).
    With ``sgd`` (plain SGD), the weights are updated in place instead (see
    ``PlainSgd``) and only the intercepts' sums go into ``grads``."""
    cdef Py_ssize_t L = net.n_layers, n = c.n, l, fan_in, fan_out, ld_in
    cdef floating *acts = <floating *> buf.acts
    cdef floating *zs = <floating *> buf.zs
    cdef floating *delta = <floating *> buf.d0
    cdef floating *other = <floating *> buf.d1
    cdef floating *tmp
    cdef const floating *a_in
    cdef floating beta = 1 if accumulate else 0
    cdef Scaled *scaled = sgd.scaled if sgd != NULL else NULL
    cdef floating w_a

    if not accumulate:
        # the matrix products below overwrite the weights' gradients; the
        # intercepts' (and a sparse first layer's) are sums, start them at 0
        memset(grads + net.n_coef, 0, (net.n_params - net.n_coef) * sizeof(floating))
        if src.sparse and sgd == NULL:
            memset(grads, 0, net.units[0] * net.units[1] * sizeof(floating))

    for l in range(L - 1, -1, -1):
        fan_in = net.units[l]
        fan_out = net.units[l + 1]
        a_in = <const floating *> c.x if l == 0 else acts + net.act_off[l - 1]
        ld_in = c.ldx if l == 0 else fan_in
        # dW_l += A_l' delta ; db_l += colsum(delta)
        if sgd != NULL:
            pass    # W_l is updated below, once delta_{l-1} no longer needs it
        elif l == 0 and src.sparse:
            _csr_grad(src, c.rows, c.start, n, delta, fan_out, <floating> 1,
                      grads + net.coef_off[0])
        else:
            gemm(True, False, <blas_int> fan_in, <blas_int> fan_out, <blas_int> n,
                 <floating> 1, a_in, <blas_int> ld_in, delta, <blas_int> fan_out,
                 beta, grads + net.coef_off[l], <blas_int> fan_out)
        colsum_add(delta, n, fan_out, grads + net.icpt_off[l])
        if l > 0:
            # delta_{l-1} = (delta W_l') * f'(Z_{l-1})
            w_a = <floating> _scaled_factor(scaled, l)
            gemm(False, True, <blas_int> n, <blas_int> fan_in, <blas_int> fan_out,
                 w_a, delta, <blas_int> fan_out, params + net.coef_off[l],
                 <blas_int> fan_out, <floating> 0, other, <blas_int> fan_in)
        if scaled != NULL:
            _scaled_dot_delta(scaled, net, l, params, _scaled_first_z(scaled, net, zs),
                              a_in, other, delta)
        if l > 0:
            _through_activation(net, l - 1, c, buf, drop, other)
        if sgd != NULL:
            _sgd_update(sgd, net, src, c, l, a_in, ld_in, delta)
        if l > 0:
            tmp = delta
            delta = other
            other = tmp


cdef double _fwd_bwd(const Net *net, const Source *src, Chunk *c,
                     const floating *Y, const floating *sw, const floating *params,
                     floating *grads, bint accumulate, const Buffers *buf,
                     Dropout *drop, PlainSgd *sgd) noexcept nogil:
    """Forward, loss and backward for one chunk of rows: returns its
    weighted loss sum, leaves its weight sum in ``c.weight``."""
    cdef double loss
    _forward(net, src, c, params, buf, drop, sgd.scaled if sgd != NULL else NULL)
    loss = _loss(net, c, Y, sw, buf, <floating *> buf.d0)
    _backward(net, src, c, params, grads, accumulate, buf, drop, sgd)
    return loss


# --------------------------------------------------------------------------
# The optimizer step

cdef struct Optimizer:
    int solver          # SOLVER_SGD, SOLVER_ADAM or SOLVER_ADAMW
    double lr           # learning rate
    double momentum     # SGD
    bint nesterov       # SGD
    double beta_1       # Adam
    double beta_2
    double epsilon
    double alpha        # L2 penalty added to the gradient (0 with AdamW)
    double decay        # AdamW's decoupled weight decay, lr * alpha (else 0)
    long long t         # Adam's step count, advanced by every step


cdef bp_step_settings _next_step(Optimizer *opt) noexcept nogil:
    """The settings of the optimizer's next step (Adam's step count
    advances: its bias correction is folded into the rate)."""
    cdef bp_step_settings k
    # the step knows two rules: SGD's, and Adam's (AdamW's decay is `decay`)
    k.solver = SOLVER_SGD if opt.solver == SOLVER_SGD else SOLVER_ADAM
    if opt.solver == SOLVER_SGD:
        k.lr = opt.lr
    else:
        opt.t += 1
        k.lr = (opt.lr * sqrt(1.0 - pow(opt.beta_2, <double> opt.t))
                / (1.0 - pow(opt.beta_1, <double> opt.t)))
    k.momentum = opt.momentum
    k.nesterov = opt.nesterov
    k.beta_1 = opt.beta_1
    k.beta_2 = opt.beta_2
    k.eps = opt.epsilon
    k.alpha = opt.alpha
    k.decay = opt.decay
    return k


cdef double _optimizer_step(Optimizer *opt, const Net *net, floating *params,
                            floating *s1, floating *s2, floating *grads,
                            double sw_sum, bint intercepts_only) noexcept nogil:
    """One step over the parameters with the gradient sums in ``grads``
    (divided by ``sw_sum`` here). Returns the sum of squared weights after
    the step (the next batch's L2 term); with ``intercepts_only`` (plain SGD
    has already updated the weights) steps the intercepts and returns 0."""
    cdef Py_ssize_t NC = net.n_coef, P = net.n_params
    cdef bp_step_settings k = _next_step(opt)
    if intercepts_only:
        k.solver = SOLVER_SGD
        k.momentum = 0.0
        k.nesterov = False
        k.alpha = 0.0
        k.decay = 0.0
        step(&k, params + NC, s1, s2, grads + NC, 0, P - NC, sw_sum)
        return 0.0
    return step(&k, params, s1, s2, grads, NC, P, sw_sum)


cdef int _check_network(Layout layout, Workspace ws, Input X,
                        Py_ssize_t itemsize) except -1:
    """TypeError or ValueError unless X, the layout and the workspace (of
    ``itemsize``-byte floats) fit together: the kernels trust every size
    below, so a model changed by another thread, or a workspace built for
    another layout, is refused here instead of read out of bounds."""
    cdef Py_ssize_t cap = layout.cap
    units = layout.units
    cdef Py_ssize_t n_in = units[0], n_out = units[units.shape[0] - 1]
    if X.src.itemsize > itemsize:
        raise TypeError("a float32 kernel cannot read float64 X")
    if X.n_features != n_in:
        raise ValueError(
            f"X has {X.n_features} features, but the network's input layer has "
            f"{n_in} units"
        )
    need = (("xbuf", 1 if X.sparse else cap * n_in), ("ybuf", cap * n_out),
            ("swbuf", cap), ("acts", layout.act_size), ("zs", layout.z_size),
            ("d0", cap * layout.max_units), ("d1", cap * layout.max_units),
            ("keep", layout.d_size), ("mask", layout.d_size),
            ("deltas", layout.act_size if ws.blocked else 1))
    for name, size in need:
        buf = getattr(ws, name)
        if buf.shape[0] < size:
            raise ValueError(
                f"the workspace's {name} holds {buf.shape[0]} values where this "
                f"layout needs {size}: a Workspace built for another Layout"
            )
    return 0

cdef int _buffers(Workspace ws, Buffers *buf, const floating *dtype_of) except -1:
    """Data pointers of a workspace's buffers, checked against the kernel's
    dtype (``dtype_of`` only selects it; the sizes are checked by
    ``_check_network``)."""
    cdef floating[::1] a = ws.xbuf, b = ws.ybuf, c = ws.swbuf, d = ws.acts
    cdef floating[::1] e = ws.zs, f = ws.d0, g = ws.d1, h = ws.keep, i = ws.mask
    cdef floating[::1] j = ws.deltas
    buf.xbuf = &a[0]
    buf.ybuf = &b[0]
    buf.swbuf = &c[0]
    buf.acts = &d[0]
    buf.zs = &e[0]
    buf.d0 = &f[0]
    buf.d1 = &g[0]
    buf.keep = &h[0]
    buf.mask = &i[0]
    buf.deltas = &j[0]
    return 0


cdef int _check_length(Py_ssize_t got, Py_ssize_t expected, str what) except -1:
    if got != expected:
        raise ValueError(f"{what} has {got} entries, expected {expected}")
    return 0


cdef int _check_matrix(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t exp_rows,
                       Py_ssize_t exp_cols, str what) except -1:
    if rows != exp_rows or cols != exp_cols:
        raise ValueError(
            f"{what} has shape ({rows}, {cols}), expected ({exp_rows}, {exp_cols})"
        )
    return 0


cdef int _check_rows(const Py_ssize_t[::1] rows, Py_ssize_t n, str what) except -1:
    """ValueError unless every entry of ``rows`` is a row of X (0 to n - 1)."""
    cdef Py_ssize_t i, m = rows.shape[0]
    cdef bint bad = False
    with nogil:
        # no early exit: a loop the compiler can vectorise
        for i in range(m):
            bad |= <size_t> rows[i] >= <size_t> n
    if bad:
        for i in range(m):
            if not 0 <= rows[i] < n:
                raise ValueError(
                    f"{what}[{i}] is {rows[i]}, not a row of X (0 to {n - 1})"
                )
    return 0


# --------------------------------------------------------------------------
# The blocked path: a batch's work shared by threads
#
# A batch is cut into row blocks, how many depends on the batch's rows alone
# (never on the threads): each block runs the forward pass, the loss and the
# deltas of every layer into its own rows of the workspace. The gradient is
# cut into slices of the parameter vector (rows of a layer's weights, or a
# layer's intercepts), also fixed by the network alone: a slice's gradient is
# one matrix product over all the batch's rows, and in an epoch its optimizer
# step follows at once, while the slice is in cache. A batch is two phases
# of a work queue (csrc/bp_queue.h): its blocks, then its slices. Threads
# take items as they come; the thread that finishes a phase's last item adds
# up what the next phase needs (the loss, the weight sum, the squared
# weights, in a fixed order) and publishes it. What an item computes does
# not depend on which thread computes it: the model is the same, bit for
# bit, whatever the number of threads.
#
# The threads are an OpenMP team started once per call (once per epoch), so
# threadpoolctl limits them as it limits scikit-learn's. Nobody waits for a
# thread that holds no item, and a thread with nothing to do sleeps after a
# short spin: on a busy machine the threads that get a core do the work.

# Rows a block has at least (fewer make the products inefficient), more for
# wide layers (a block's product re-reads the whole weight matrix: one row per
# BLOCK_WEIGHTS weights of the widest layer), and the most blocks of a batch:
# a power of two, so that 2, 4, 8 or 16 threads share them evenly.
cdef Py_ssize_t BLOCK_ROWS = 16
cdef Py_ssize_t BLOCK_WEIGHTS = 4096
cdef Py_ssize_t MAX_BLOCKS = 16
# Parameters a gradient slice has at least, and the most slices of a layer
# (each slice's product reads all the batch's deltas of its layer).
cdef Py_ssize_t SLICE_PARAMS = 1024
cdef Py_ssize_t MAX_SLICES = 16
# More threads than this are refused (a mistake, not a machine).
MAX_THREADS = 4096
# How long a thread with nothing to do spins before it sleeps (-1: the
# default of csrc/bp_queue.h), and how many waits of the last blocked call
# ended asleep: for measurements (bench/), not for users.
cdef long long QUEUE_SPIN = -1
cdef int LAST_SLEEPS = 0
cdef long long LAST_TICKS[2]


def _set_queue_spin(long long spin):
    """Spin before sleeping, in time-stamp ticks (pauses off x86); -1 for
    the default."""
    global QUEUE_SPIN
    QUEUE_SPIN = spin


def _ticks():
    """The time-stamp counter the phase timings use (0 off x86)."""
    return bp_ticks()


def _last_sleeps():
    """Waits of the last blocked call (all threads) that ended asleep, and
    the time-stamp ticks its blocks and its slices phases took."""
    return LAST_SLEEPS, LAST_TICKS[0], LAST_TICKS[1]


def block_min_rows(units):
    """Rows a block of a network of layer widths ``units`` has at least."""
    widest = max(a * b for a, b in zip(units, units[1:]))
    return max(BLOCK_ROWS, widest // BLOCK_WEIGHTS)


cdef inline Py_ssize_t _n_blocks(Py_ssize_t rows, Py_ssize_t min_rows) noexcept nogil:
    """Blocks a batch of ``rows`` rows is cut into: the largest power of two
    up to MAX_BLOCKS that leaves ``min_rows`` rows or more in each."""
    cdef Py_ssize_t b = 1
    while b < MAX_BLOCKS and 2 * b * min_rows <= rows:
        b *= 2
    return b


def gradient_slices(Layout layout not None, bint sparse):
    """(layer, first row, end row) of every slice of the gradient: rows of a
    layer's weights, then (layer, -1, -1) for each layer's intercepts. A
    sparse input layer is one slice (its gradient is scattered row by row)."""
    units = layout.units.tolist()
    slices = []
    for l in range(len(units) - 1):
        fan_in, fan_out = units[l], units[l + 1]
        parts = 1 if l == 0 and sparse else max(1, min(
            fan_in, MAX_SLICES, fan_in * fan_out // SLICE_PARAMS))
        slices += [(l, i * fan_in // parts, (i + 1) * fan_in // parts)
                   for i in range(parts)]
    slices += [(l, -1, -1) for l in range(len(units) - 1)]
    return np.array(slices, dtype=np.intp)


def block_rows(Py_ssize_t rows, units):
    """The row blocks a batch of ``rows`` rows of a network of layer widths
    ``units`` is cut into, as (start, end)."""
    b = _n_blocks(rows, block_min_rows(units))
    return [(i * rows // b, (i + 1) * rows // b) for i in range(b)]


cdef struct Phase:
    # What the items of a phase need, written by the thread that publishes
    # it. Even phases run a batch's blocks, odd phases its slices.
    Py_ssize_t start            # the batch: entries start to start + nb of the rows
    Py_ssize_t nb
    Py_ssize_t n_blocks
    Py_ssize_t batch_no
    double sw_sum               # slices: the batch's weight sum
    bp_step_settings k          # slices of an epoch: the step's settings


cdef struct Blocked:
    # What the threads of a blocked epoch or objective share.
    const Net *net
    const Source *src
    const Buffers *buf
    const void *Y
    const void *sw              # NULL: every row weighs 1
    const Py_ssize_t *order     # rows in visiting order; NULL: rows 0 to n - 1
    Py_ssize_t n
    Py_ssize_t batch            # rows per batch (per chunk for the objective)
    Py_ssize_t min_rows         # rows a block has at least (block_min_rows)
    void *params
    void *grads
    void *s1
    void *s2
    bint training               # a step per batch (epoch), else gradients summed
    Optimizer opt               # advanced by the threads that publish phases
    const Py_ssize_t *slices    # n_slices x 3, from gradient_slices
    Py_ssize_t n_slices
    double *block_loss          # MAX_BLOCKS
    double *block_weight
    double *slice_ss            # n_slices: squared weights of a slice after its step
    unsigned *items             # the queue's words: 2 x max(MAX_BLOCKS, n_slices)
    Dropout *drop               # the masks' buffers and seed, or NULL
    double ss                   # |W|^2 before the current batch's step
    const void *x               # the batch's dense input rows (from block 0) ...
    Py_ssize_t ldx              # ... and their leading dimension
    double loss                 # out: epoch: sum of batch loss x rows; objective: loss sum
    double weight               # out: objective: weight sum
    int size                    # threads asked for
    int stop                    # thread 0 saw a signal: no batch starts after it
    bint finished               # set before the last (empty) phase is published
    bint wrong_size             # OpenMP gave another team size: nothing ran
    long long published         # when the current phase began (time-stamp ticks)
    long long ticks[2]          # time the blocks and the slices phases took
    Phase phases[2]
    bp_queue queue


cdef inline uint64_t _mix(uint64_t z) noexcept nogil:
    # splitmix64's finaliser
    z = (z ^ (z >> 30)) * <uint64_t> 0xbf58476d1ce4e5b9
    z = (z ^ (z >> 27)) * <uint64_t> 0x94d049bb133111eb
    return z ^ (z >> 31)


cdef void _blocked_block(Blocked *w, const Phase *ph, Py_ssize_t b,
                         const floating *dtype_of) noexcept nogil:
    """Forward pass, loss and every layer's delta for block b of the batch,
    in the block's rows of the workspace."""
    cdef const Net *net = w.net
    cdef Py_ssize_t L = net.n_layers, l, fan_in, fan_out, nb = ph.nb
    cdef Py_ssize_t r0 = b * nb // ph.n_blocks, r1 = (b + 1) * nb // ph.n_blocks
    cdef const floating *params = <const floating *> w.params
    cdef floating *deltas = <floating *> w.buf.deltas
    cdef Chunk c
    cdef Dropout drop
    cdef Dropout *dp = NULL
    if w.order != NULL:
        c = _chunk(w.order + ph.start + r0, 0, r1 - r0)
    else:
        c = _chunk(NULL, ph.start + r0, r1 - r0)
    c.at = r0
    if w.drop != NULL:
        # each block draws its masks from a stream of its own
        drop = w.drop[0]
        drop.state = _mix(w.drop.state ^ _mix(<uint64_t> (ph.batch_no * MAX_BLOCKS + b + 1)))
        dp = &drop
    _forward(net, w.src, &c, params, w.buf, dp, NULL)
    w.block_loss[b] = _loss(net, &c, <const floating *> w.Y, <const floating *> w.sw,
                            w.buf, deltas + net.act_off[L - 1] + r0 * net.units[L])
    w.block_weight[b] = c.weight
    if b == 0:
        w.x = c.x
        w.ldx = c.ldx
    for l in range(L - 1, 0, -1):
        # delta_{l-1} = (delta_l W_l') * f'(Z_{l-1})
        fan_in = net.units[l]
        fan_out = net.units[l + 1]
        gemm(False, True, <blas_int> c.n, <blas_int> fan_in, <blas_int> fan_out,
             <floating> 1, deltas + net.act_off[l] + r0 * fan_out, <blas_int> fan_out,
             params + net.coef_off[l], <blas_int> fan_out, <floating> 0,
             deltas + net.act_off[l - 1] + r0 * fan_in, <blas_int> fan_in)
        _through_activation(net, l - 1, &c, w.buf, dp,
                            deltas + net.act_off[l - 1] + r0 * fan_in)


cdef double _blocked_slice(Blocked *w, const Phase *ph, Py_ssize_t i,
                           const floating *dtype_of) noexcept nogil:
    """Slice i of the gradient over the batch: added to ``grads``
    (objective), or written and then stepped (epoch). Returns the slice's
    squared weights after the step."""
    cdef const Net *net = w.net
    cdef Py_ssize_t l = w.slices[3 * i], lo = w.slices[3 * i + 1], hi = w.slices[3 * i + 2]
    cdef Py_ssize_t fan_in = net.units[l], fan_out = net.units[l + 1], off, size, n_coef
    cdef Py_ssize_t nb = ph.nb
    cdef const floating *delta = <const floating *> w.buf.deltas + net.act_off[l]
    cdef const floating *a
    cdef Py_ssize_t lda
    cdef floating *g
    cdef floating *s2
    if lo < 0:
        off = net.icpt_off[l]
        size = fan_out
        n_coef = 0
    else:
        off = net.coef_off[l] + lo * fan_out
        size = (hi - lo) * fan_out
        n_coef = size
    g = <floating *> w.grads + off
    if w.training and (lo < 0 or (l == 0 and w.src.sparse)):
        memset(g, 0, size * sizeof(floating))   # sums: they start at 0
    if lo < 0:
        colsum_add(delta, nb, fan_out, g)
    elif l == 0 and w.src.sparse:
        _csr_grad(w.src, w.order + ph.start if w.order != NULL else NULL,
                  ph.start if w.order == NULL else 0, nb, delta, fan_out, <floating> 1, g)
    else:
        if l == 0:
            a = <const floating *> w.x
            lda = w.ldx
        else:
            a = <const floating *> w.buf.acts + net.act_off[l - 1]
            lda = fan_in
        gemm(True, False, <blas_int> (hi - lo), <blas_int> fan_out, <blas_int> nb,
             <floating> 1, a + lo, <blas_int> lda, delta, <blas_int> fan_out,
             <floating> (0 if w.training else 1), g, <blas_int> fan_out)
    if not w.training:
        return 0.0
    # SGD keeps no second state (a vector of one entry)
    s2 = <floating *> w.s2 + (off if w.opt.solver != SOLVER_SGD else 0)
    return step(&ph.k, <floating *> w.params + off, <floating *> w.s1 + off, s2, g,
                n_coef, size, ph.sw_sum)


cdef void _blocked_batch(Blocked *w, Phase *ph, Py_ssize_t start,
                         Py_ssize_t batch_no) noexcept nogil:
    """The blocks phase of the batch at ``start``."""
    ph.start = start
    ph.nb = min(w.batch, w.n - start)
    ph.n_blocks = _n_blocks(ph.nb, w.min_rows)
    ph.batch_no = batch_no


cdef void _blocked_publish(Blocked *w, unsigned phase) noexcept nogil:
    """Publish the phase after ``phase``, whose last item this thread did:
    sums in a fixed order, the step's settings, the next batch."""
    cdef const Phase *ph = &w.phases[phase & 1]
    cdef Phase *nx = &w.phases[(phase + 1) & 1]
    cdef Py_ssize_t i, start
    cdef double loss = 0.0, sw_sum = 0.0
    cdef long long now = bp_ticks()
    w.ticks[phase & 1] += now - w.published
    w.published = now
    if phase & 1 == 0:
        # the blocks are done: the batch's slices next
        for i in range(ph.n_blocks):
            loss += w.block_loss[i]
            sw_sum += w.block_weight[i]
        nx.start = ph.start
        nx.nb = ph.nb
        nx.n_blocks = ph.n_blocks
        nx.batch_no = ph.batch_no
        nx.sw_sum = sw_sum
        if w.training:
            nx.k = _next_step(&w.opt)
            # the L2 term of the loss uses the weights before this batch's step
            w.loss += (loss / sw_sum + 0.5 * w.opt.alpha * w.ss / sw_sum) * ph.nb
        else:
            w.loss += loss
            w.weight += sw_sum
        bp_queue_publish(&w.queue, phase, w.n_slices)
        return
    # the slices are done: the next batch, if any
    w.ss = 0.0
    for i in range(w.n_slices):
        w.ss += w.slice_ss[i]
    start = ph.start + ph.nb
    if start >= w.n or bp_flag_get(&w.stop):
        w.finished = True
        bp_queue_publish(&w.queue, phase, 0)
        return
    _blocked_batch(w, nx, start, ph.batch_no + 1)
    bp_queue_publish(&w.queue, phase, nx.n_blocks)


cdef void _blocked_run(Blocked *w, int tid, const floating *dtype_of) noexcept nogil:
    """The loop each thread of a blocked epoch or objective runs: items of
    the current phase while there are any, then wait for the next phase."""
    cdef unsigned phase
    cdef Py_ssize_t item, work = 0
    cdef const Phase *ph
    if bp_team_size() != w.size:
        if tid == 0:
            w.wrong_size = True
        return
    while True:
        if bp_queue_take(&w.queue, tid, &phase, &item):
            ph = &w.phases[phase & 1]
            if phase & 1 == 0:
                _blocked_block(w, ph, item, dtype_of)
                if tid == 0 and w.training:
                    # Ctrl-C: checked every SIGNAL_WORK rows x parameters
                    work += (ph.nb // ph.n_blocks + 1) * w.net.n_params
                    if work >= SIGNAL_WORK:
                        work = 0
                        if _signal_pending():
                            bp_flag_set(&w.stop)
            else:
                w.slice_ss[item] = _blocked_slice(w, ph, item, dtype_of)
            if bp_queue_done(&w.queue, phase):
                _blocked_publish(w, phase)
        elif w.finished:
            return
        else:
            bp_queue_wait(&w.queue, phase)


cdef object _blocked_setup(Blocked *w, Layout layout, Input X, Buffers *buf,
                           int n_threads):
    """Point ``w`` at new scratch arrays (returned: the caller keeps them
    while ``w`` is used); the caller sets the data, ``n`` and ``batch``, and
    then ``_blocked_start``."""
    if not 1 <= n_threads <= MAX_THREADS:
        raise ValueError(f"n_threads must be within 1 to {MAX_THREADS}, got {n_threads}")
    slices = gradient_slices(layout, X.sparse)
    scratch = np.zeros(2 * MAX_BLOCKS + slices.shape[0])
    items = np.zeros(2 * max(MAX_BLOCKS, slices.shape[0]), dtype=np.uintc)
    cdef const Py_ssize_t[:, ::1] sl = slices
    cdef double[::1] d = scratch
    cdef unsigned[::1] it = items
    w.net = &layout.net
    w.src = &X.src
    w.buf = buf
    w.slices = &sl[0, 0]
    w.n_slices = sl.shape[0]
    w.min_rows = block_min_rows(layout.units.tolist())
    w.block_loss = &d[0]
    w.block_weight = &d[MAX_BLOCKS]
    w.slice_ss = &d[2 * MAX_BLOCKS]
    w.items = &it[0]
    w.drop = NULL
    w.ss = 0.0
    w.x = NULL
    w.ldx = 0
    w.loss = 0.0
    w.weight = 0.0
    w.training = False
    w.size = n_threads
    w.stop = 0
    w.finished = False
    w.wrong_size = False
    return slices, scratch, items


cdef void _blocked(Blocked *w, const floating *dtype_of) noexcept nogil:
    """Run ``w`` on its team: an OpenMP parallel region, or the calling
    thread alone for one thread (or when OpenMP gives another team size,
    as inside another parallel region). Nothing to do for no rows."""
    global LAST_SLEEPS
    if w.n == 0:
        w.finished = True
        return
    _blocked_batch(w, &w.phases[0], 0, 0)
    bp_queue_init(&w.queue, w.size, w.items, max(MAX_BLOCKS, w.n_slices),
                  w.phases[0].n_blocks, QUEUE_SPIN)
    w.ticks[0] = w.ticks[1] = 0
    w.published = bp_ticks()
    if w.size > 1:
        with parallel(num_threads=w.size):
            _blocked_run(w, threadid(), dtype_of)
        LAST_SLEEPS = w.queue.sleeps
        LAST_TICKS[0] = w.ticks[0]
        LAST_TICKS[1] = w.ticks[1]
        if not w.wrong_size:
            return
        w.size = 1
        w.queue.size = 1
    _blocked_run(w, 0, dtype_of)
    LAST_SLEEPS = 0
    LAST_TICKS[0] = w.ticks[0]
    LAST_TICKS[1] = w.ticks[1]


def max_threads():
    """Threads a parallel region may have here: OpenMP's limit (which
    threadpoolctl sets), 1 when blasprop was built without OpenMP."""
    return bp_max_threads()


# --------------------------------------------------------------------------
# Entry points (called from Python once per epoch / objective / predict)

class NonFiniteInput(ValueError):
    """``predict(check_finite=True)`` met NaN or infinity in X."""


cdef int _check_training(Layout layout, Workspace ws, Input X, Buffers *buf,
                         const floating[:, ::1] Y, const floating[::1] sw,
                         const floating[::1] params, const floating[::1] grads) except -1:
    """The checks an epoch and the objective make: X, the layout and the
    workspace fit together, Y has a row of the outputs for every row of X,
    ``sw`` (when given) a weight for every row, ``params`` and ``grads`` fit."""
    cdef Py_ssize_t n = X.n_samples, P = layout.n_params
    _check_network(layout, ws, X, sizeof(floating))
    _buffers(ws, buf, &params[0])
    _check_matrix(Y.shape[0], Y.shape[1], n, layout.net.units[layout.net.n_layers], "Y")
    if sw.shape[0] != 0:
        _check_length(sw.shape[0], n, "sample_weight")
    _check_length(params.shape[0], P, "params")
    _check_length(grads.shape[0], P, "grads")
    return 0


cdef int _dropout_state(Layout layout, const Buffers *buf, long long seed,
                        Dropout *drop, Dropout **dp) except -1:
    """Point ``dp`` at ``drop`` when the network has dropout and a seed is
    given (training); else NULL (no dropout)."""
    dp[0] = NULL
    if seed >= 0 and layout.d_size > 0:
        drop.keep = buf.keep
        drop.mask = buf.mask
        drop.state = <uint64_t> seed
        dp[0] = drop
    return 0


cdef inline void _prefetch_rows(const Source *src, const Py_ssize_t *rows,
                                Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t r
    for r in range(n):
        _prefetch_row(src, rows[r])


cdef inline bint _signal_pending() noexcept nogil:
    """True when a signal handler raised (the exception stays pending)."""
    cdef bint pending
    with gil:
        pending = _check_signals() != 0
    return pending


cdef class Solver:
    """A stochastic solver's settings and Adam's step count, for ``epoch``:
    ``code`` is SGD, Adam or AdamW (``enum bp_solver``); with AdamW,
    ``alpha`` is the decoupled weight decay instead of the L2 penalty.
    ``t`` is advanced by every step the epoch takes."""
    cdef Optimizer opt

    def __init__(self, int code, double learning_rate, *, double momentum=0.9,
                 bint nesterov=True, double beta_1=0.9, double beta_2=0.999,
                 double epsilon=1e-8, double alpha=0.0, long long t=0):
        if code != SOLVER_SGD and code != SOLVER_ADAM and code != SOLVER_ADAMW:
            raise ValueError(f"unknown solver code {code}")
        self.opt.solver = code
        self.opt.lr = learning_rate
        self.opt.momentum = momentum
        self.opt.nesterov = nesterov
        self.opt.beta_1 = beta_1
        self.opt.beta_2 = beta_2
        self.opt.epsilon = epsilon
        self.opt.alpha = 0.0 if code == SOLVER_ADAMW else alpha
        self.opt.decay = learning_rate * alpha if code == SOLVER_ADAMW else 0.0
        self.opt.t = t

    @property
    def code(self):
        return self.opt.solver

    @property
    def t(self):
        return self.opt.t


def epoch(Layout layout not None, Workspace ws not None, Input X not None,
          const floating[:, ::1] Y not None,          # IN  targets (n_samples x n_outputs)
          const floating[::1] sw not None,            # IN  sample weights, or length 0
          const Py_ssize_t[::1] order not None,       # IN  rows of X in visiting order
          Py_ssize_t batch_size,
          floating[::1] params not None,              # IN/OUT flat parameters
          floating[::1] grads not None,               # scratch
          floating[::1] state1 not None,              # IN/OUT velocity (sgd) / m (adam)
          floating[::1] state2 not None,              # IN/OUT v (adam)
          Solver solver not None,                     # IN/OUT settings, Adam's t
          long long dropout_seed=-1,
          int n_threads=0):
    """One pass over ``order`` in mini-batches, updating ``params`` in place.

    Returns the sum over batches of batch_loss * batch_rows. The
    ``batch_loss`` is the batch's mean loss plus the L2 term, computed before
    the batch's update, as scikit-learn reports it. A pending signal
    (Ctrl-C) stops the loop at a batch boundary and is raised.

    ``n_threads`` 0 takes scikit-learn's path (one thread, sums in its
    order); 1 or more the blocked path on that many threads (needs a
    ``blocked`` workspace), whose result does not depend on the number.
    """
    cdef const Net *net = &layout.net
    cdef Py_ssize_t P = layout.n_params
    cdef Buffers buf
    cdef Optimizer opt = solver.opt
    cdef Dropout drop
    cdef Dropout *dp
    cdef double total
    cdef Blocked w
    cdef floating *pp

    # check every size the kernels will trust
    _check_training(layout, ws, X, &buf, Y, sw, params, grads)
    _check_length(state1.shape[0], P, "state1")
    if opt.solver != SOLVER_SGD:
        _check_length(state2.shape[0], P, "state2")
    if batch_size > layout.cap or batch_size < 1:
        raise ValueError(
            f"batch_size {batch_size} is not within the workspace's 1 to {layout.cap} rows"
        )
    _check_rows(order, X.n_samples, "order")
    _dropout_state(layout, &buf, dropout_seed, &drop, &dp)
    if n_threads == 0:
        total = _epoch_serial(net, &X.src, X.sparse, &buf, &Y[0, 0],
                              &sw[0] if sw.shape[0] > 0 else NULL, &order[0],
                              order.shape[0], batch_size, &params[0], &grads[0],
                              &state1[0], &state2[0], &opt, dp, ws.acts.dtype)
    else:
        if not ws.blocked:
            raise ValueError("the blocked path needs a Workspace built with blocked=True")
        _owner = _blocked_setup(&w, layout, X, &buf, n_threads)  # w points into it
        w.Y = &Y[0, 0]
        w.sw = &sw[0] if sw.shape[0] > 0 else NULL
        w.order = &order[0]
        w.n = order.shape[0]
        w.batch = batch_size
        w.params = &params[0]
        w.grads = &grads[0]
        w.s1 = &state1[0]
        w.s2 = &state2[0]
        w.training = True
        w.opt = opt
        w.drop = dp
        pp = &params[0]
        with nogil:
            if opt.alpha > 0:
                w.ss = sumsq(pp, net.n_coef)
            _blocked(&w, pp)
        if w.stop:
            _reraise()
        total = w.loss
        opt.t = w.opt.t
    solver.opt.t = opt.t
    return total


cdef double _epoch_serial(const Net *net, const Source *src, bint sparse,
                          const Buffers *buf, const floating *Y, const floating *sw,
                          const Py_ssize_t *order, Py_ssize_t n, Py_ssize_t batch_size,
                          floating *params, floating *grads, floating *state1,
                          floating *state2, Optimizer *opt, Dropout *dp,
                          dtype) except? -1:
    """scikit-learn's epoch: a batch at a time, in its order of sums."""
    cdef Py_ssize_t start = 0, nb, work = 0
    cdef Chunk chunk
    cdef PlainSgd sgd
    cdef PlainSgd *sgd_p = NULL
    cdef Scaled scaled
    cdef object _scaled_arrays = None  # owns the memory the Scaled pointers use
    cdef double total = 0.0, batch_loss, ss = 0.0, ss_next
    cdef bint interrupted = False

    # plain SGD updates the weights in the backward pass, at batch size 1
    # through the scaled unit
    sgd.scaled = NULL
    if opt.solver == SOLVER_SGD and opt.momentum == 0.0:
        sgd.params = <void *> params
        sgd.lr = opt.lr
        sgd.alpha = opt.alpha
        sgd_p = &sgd
        if batch_size == 1 and opt.alpha > 0 and not sparse:
            _scaled_arrays = _scaled_new(&scaled, net.n_layers, net.units[1], dtype)
            sgd.scaled = &scaled

    with nogil:
        if sgd_p == NULL and opt.alpha > 0:
            ss = sumsq(params, net.n_coef)
        if sgd.scaled != NULL:
            _scaled_start(sgd.scaled, net, params)
        while start < n:
            nb = min(batch_size, n - start)
            # the next batch's first rows, which the gather's look-ahead does
            # not reach (at batch size 1 no gather runs at all)
            _prefetch_rows(src, order + start + nb,
                           min(n, start + nb + min(nb, PREFETCH_ROWS)) - (start + nb))
            chunk = _chunk(order + start, 0, nb)
            if sgd_p != NULL:
                sgd.ss = 0.0
            batch_loss = _fwd_bwd(net, src, &chunk, Y, sw, params, grads, False, buf,
                                  dp, sgd_p)
            if sgd_p != NULL:
                ss = sgd.ss
            # the L2 term of the loss uses the weights before this batch's step
            batch_loss = (batch_loss / chunk.weight
                          + 0.5 * opt.alpha * ss / chunk.weight)
            ss_next = _optimizer_step(opt, net, params, state1, state2, grads,
                                      chunk.weight, sgd_p != NULL)
            if sgd_p == NULL:
                ss = ss_next
            total += batch_loss * nb
            start += nb
            # Ctrl-C: checked every SIGNAL_WORK rows x parameters
            work += nb * net.n_params
            if work >= SIGNAL_WORK and start < n:
                work = 0
                if _signal_pending():
                    interrupted = True
                    break
        if sgd.scaled != NULL:
            _scaled_finish(sgd.scaled, net, params)
    if interrupted:
        _reraise()
    return total


cdef int _objective_sums(Layout layout, Workspace ws, Input X,
                         const floating[:, ::1] Y, const floating[::1] sw,
                         floating[::1] params, floating[::1] grads,
                         long long dropout_seed, int n_threads,
                         double *loss, double *weight) except -1:
    """Summed loss and summed weight over all of X into ``loss`` and
    ``weight``, and the summed (unnormalised, no L2) gradient into ``grads``,
    chunk by chunk (``layout.cap`` rows at a time)."""
    cdef const Net *net = &layout.net
    cdef const Source *src = &X.src
    cdef Py_ssize_t n = X.n_samples, start = 0, nb, cap = layout.cap
    cdef Py_ssize_t P = layout.n_params
    cdef Buffers buf
    cdef Chunk chunk
    cdef double total = 0.0, sw_sum = 0.0
    cdef Dropout drop
    cdef Dropout *dp
    cdef Blocked w
    cdef floating *pp = &params[0]
    cdef floating *gp = &grads[0]
    _check_training(layout, ws, X, &buf, Y, sw, params, grads)
    cdef const floating *swp = &sw[0] if sw.shape[0] > 0 else NULL
    _dropout_state(layout, &buf, dropout_seed, &drop, &dp)
    if n_threads == 0:
        with nogil:
            memset(gp, 0, P * sizeof(floating))
            while start < n:
                nb = min(cap, n - start)
                chunk = _chunk(NULL, start, nb)
                total += _fwd_bwd(net, src, &chunk, &Y[0, 0], swp, pp, gp, True, &buf,
                                  dp, NULL)
                sw_sum += chunk.weight
                start += nb
    else:
        if not ws.blocked:
            raise ValueError("the blocked path needs a Workspace built with blocked=True")
        _owner = _blocked_setup(&w, layout, X, &buf, n_threads)  # w points into it
        w.Y = &Y[0, 0]
        w.sw = swp
        w.order = NULL
        w.n = n
        w.batch = cap
        w.params = pp
        w.grads = gp
        w.drop = dp
        with nogil:
            memset(gp, 0, P * sizeof(floating))
            _blocked(&w, pp)
        total = w.loss
        sw_sum = w.weight
    loss[0] = total
    weight[0] = sw_sum
    return 0


def objective(Layout layout not None, Workspace ws not None, Input X not None,
              const floating[:, ::1] Y not None,      # IN
              const floating[::1] sw not None,        # IN  or length 0
              floating[::1] params not None,          # IN
              floating[::1] grads not None,           # OUT gradient of the returned loss
              double alpha, long long dropout_seed=-1, int n_threads=0):
    """Mean loss over all of X plus 0.5 alpha |W|^2 / sum(sw), and its
    gradient, computed chunk by chunk (``layout.cap`` rows at a time).

    With ``dropout_seed >= 0`` the training-mode network (dropout masks drawn
    from that seed, the same masks at every call) is differentiated: that is
    how the gradient checker checks dropout with a fixed mask. ``n_threads``
    as for ``epoch``: 0 sums in scikit-learn's order, 1 or more take the
    blocked path on that many threads."""
    cdef double loss, sw_sum
    _objective_sums(layout, ws, X, Y, sw, params, grads, dropout_seed, n_threads,
                    &loss, &sw_sum)
    return finish_objective(layout, params, grads, loss, sw_sum, alpha)


def finish_objective(Layout layout not None,
                     const floating[::1] params not None,  # IN
                     floating[::1] grads not None,         # IN summed gradient, OUT gradient
                     double loss_sum, double weight, double alpha):
    """The objective from sums over all rows (``objective_sums``, added up):
    returns loss_sum / weight + 0.5 alpha |W|^2 / weight and turns the summed
    gradient into the objective's, in place; what ``objective`` does."""
    cdef Py_ssize_t P = layout.n_params, NC = layout.n_coef
    _check_length(params.shape[0], P, "params")
    _check_length(grads.shape[0], P, "grads")
    cdef const floating *pp = &params[0]
    cdef floating *gp = &grads[0]
    cdef double loss
    with nogil:
        loss = loss_sum / weight + 0.5 * alpha * sumsq(pp, NC) / weight
        finish_grad(gp, pp, NC, P, alpha, weight)
    return loss


def objective_sums(Layout layout not None, Workspace ws not None, Input X not None,
                   const floating[:, ::1] Y not None,     # IN
                   const floating[::1] sw not None,       # IN  or length 0
                   floating[::1] params not None,         # IN
                   floating[::1] grads not None,          # OUT summed gradient
                   int n_threads=0):
    """The parts of ``objective`` that add up over rows: returns
    ``(loss_sum, weight_sum)``, the loss summed over the rows of X (each
    row's loss times its weight) and the sum of the weights (the number of
    rows without weights), and writes the gradient of ``loss_sum`` into
    ``grads``. No L2 term and no division: summed over any split of the rows
    and then finished as ``objective`` finishes them, they give the objective
    of all the rows (what a data-parallel L-BFGS adds up)."""
    cdef double loss, sw_sum
    _objective_sums(layout, ws, X, Y, sw, params, grads, -1, n_threads, &loss, &sw_sum)
    return loss, sw_sum


# Prediction: the output layer for all rows (``predict``), or for listed rows,
# optionally with their mean loss (``predict_rows``), on one thread; either on
# an OpenMP team (``predict_team``). They run ``layout.cap`` rows at a time
# through ``_predict_chunk``.

cdef bint _predict_chunk(const Net *net, const Source *src, Chunk *c,
                         const floating *params, const Buffers *buf,
                         bint check_finite, floating *out) noexcept nogil:
    """The output layer for one chunk of rows, into ``out`` (c.n rows).
    With ``check_finite``, False (and nothing written) when the chunk's
    dense rows hold NaN or infinity: checked while they are in cache,
    instead of by a pass over all of X before."""
    cdef Py_ssize_t L = net.n_layers, nf = src.n_features, r
    cdef const floating *x
    _forward(net, src, c, params, buf, NULL, NULL)
    if check_finite:
        x = <const floating *> c.x
        if c.ldx == nf:
            if not all_finite(x, c.n * nf):
                return False
        else:
            for r in range(c.n):
                if not all_finite(x + r * c.ldx, nf):
                    return False
    memcpy(out, <floating *> buf.acts + net.act_off[L - 1],
           c.n * net.units[L] * sizeof(floating))
    return True


cdef int _check_predict(Layout layout, Workspace ws, Input X, Buffers *buf,
                        const floating[::1] params, Py_ssize_t out_rows,
                        Py_ssize_t out_cols, Py_ssize_t n_rows) except -1:
    """The checks every predict makes: X, the layout and the workspace fit
    together, ``out`` has ``n_rows`` rows of the outputs, ``params`` fits."""
    _check_network(layout, ws, X, sizeof(floating))
    _buffers(ws, buf, &params[0])
    _check_matrix(out_rows, out_cols, n_rows, layout.net.units[layout.net.n_layers], "out")
    _check_length(params.shape[0], layout.n_params, "params")
    return 0


def predict(Layout layout not None, Workspace ws not None, Input X not None,
            const floating[::1] params not None,      # IN
            floating[:, ::1] out not None,            # OUT (n_samples x n_outputs)
            bint check_finite=False):
    """Output layer of the network for every row of X. With
    ``check_finite``, dense rows are checked for NaN and infinity chunk by
    chunk, and ``NonFiniteInput`` is raised if there is any."""
    cdef const Net *net = &layout.net
    cdef const Source *src = &X.src
    cdef Py_ssize_t n = X.n_samples, start = 0, nb, cap = layout.cap
    cdef Buffers buf
    cdef Chunk chunk
    cdef bint ok = True
    _check_predict(layout, ws, X, &buf, params, out.shape[0], out.shape[1], n)
    check_finite = check_finite and not X.sparse
    with nogil:
        while start < n:
            nb = min(cap, n - start)
            chunk = _chunk(NULL, start, nb)
            ok = _predict_chunk(net, src, &chunk, &params[0], &buf, check_finite,
                                &out[start, 0])
            if not ok:
                break
            start += nb
    if not ok:
        raise NonFiniteInput("X contains NaN or infinity")


cdef struct TeamPredict:
    # what the threads of ``predict_team`` share
    const Net *net
    const Source *src
    const Py_ssize_t *rows     # NULL: all rows
    Py_ssize_t n, cap, k
    const void *params
    const void *Y              # NULL: no loss
    const void *sw
    void *out
    double *chunk_loss         # one per chunk, added in order at the end
    Py_ssize_t counter         # the next chunk to take
    bint check_finite
    bint failed                # a chunk held NaN or infinity


cdef void _team_predict_run(TeamPredict *t, const Buffers *buf,
                            const floating *dtype_of) noexcept nogil:
    """Chunks taken from ``t.counter`` until none is left (or one failed)."""
    cdef Py_ssize_t c = bp_take(&t.counter), start, nb
    cdef Py_ssize_t n_chunks = (t.n + t.cap - 1) // t.cap
    cdef Chunk chunk
    cdef floating *out = <floating *> t.out
    cdef const floating *sw = <const floating *> t.sw
    while c < n_chunks:
        start = c * t.cap
        nb = min(t.cap, t.n - start)
        chunk = _chunk(t.rows + start if t.rows != NULL else NULL,
                       0 if t.rows != NULL else start, nb)
        if not _predict_chunk(t.net, t.src, &chunk, <const floating *> t.params, buf,
                              t.check_finite, out + start * t.k):
            t.failed = True
            bp_take_none(&t.counter)
            return
        if t.Y != NULL:
            t.chunk_loss[c] = loss_only(t.net.loss, nb, t.k, out + start * t.k,
                                        <const floating *> t.Y + start * t.k,
                                        sw + start if sw != NULL else NULL,
                                        t.net.huber_delta)
        c = bp_take(&t.counter)


def predict_team(Layout layout not None, list workspaces not None, Input X not None,
                 const floating[::1] params not None,     # IN
                 floating[:, ::1] out not None,           # OUT (n_rows x n_outputs)
                 const Py_ssize_t[::1] rows=None,         # IN  rows of X; None: all
                 const floating[:, ::1] Y=None,           # IN  targets of those rows
                 const floating[::1] sw=None,             # IN  their weights
                 bint check_finite=False):
    """``predict`` (rows None) or ``predict_rows`` on an OpenMP team of up to
    ``len(workspaces)`` threads, one workspace each. The threads take chunks
    of ``layout.cap`` rows from a shared counter; chunk c is the same rows
    whoever computes it and the chunks' losses are added in chunk order, so
    outputs and loss equal the one-thread functions' bit for bit, whatever
    the number of threads. With ``Y``, returns the mean loss of the rows
    (weighted by ``sw``; no L2 term); else None. With ``check_finite``,
    raises ``NonFiniteInput`` if a dense row holds NaN or infinity."""
    cdef Py_ssize_t T = len(workspaces), i, r
    cdef Py_ssize_t n = X.n_samples if rows is None else rows.shape[0]
    cdef Py_ssize_t k = layout.net.units[layout.net.n_layers]
    cdef Py_ssize_t n_chunks = (n + layout.cap - 1) // layout.cap
    cdef TeamPredict t
    cdef Buffers *bufs
    cdef double loss = 0.0, sw_sum = 0.0
    if T < 1:
        raise ValueError("predict_team needs one workspace per thread, got none")
    if len(set(map(id, workspaces))) != T:
        raise ValueError("predict_team needs a workspace of its own for each thread")
    cdef unsigned char[::1] bufs_owner = np.empty(T * sizeof(Buffers), dtype=np.uint8)
    bufs = <Buffers *> &bufs_owner[0]
    for i in range(T):
        ws = workspaces[i]
        if not isinstance(ws, Workspace):
            raise TypeError("workspaces: a list of Workspace objects")
        _check_predict(layout, <Workspace> ws, X, &bufs[i], params, out.shape[0],
                       out.shape[1], n)
    if rows is not None:
        _check_rows(rows, X.n_samples, "rows")
    chunk_loss = np.zeros(max(n_chunks, 1), dtype=np.float64)
    cdef double[::1] cl = chunk_loss
    t.net = &layout.net
    t.src = &X.src
    t.rows = &rows[0] if rows is not None and n > 0 else NULL
    t.n = n
    t.cap = layout.cap
    t.k = k
    t.params = &params[0]
    t.Y = NULL
    t.sw = NULL
    t.out = &out[0, 0] if n > 0 else NULL
    t.chunk_loss = &cl[0]
    t.counter = 0
    t.check_finite = check_finite and not X.sparse
    t.failed = False
    if Y is not None:
        _check_matrix(Y.shape[0], Y.shape[1], n, k, "Y")
        t.Y = &Y[0, 0] if n > 0 else NULL
        if sw is not None and sw.shape[0] > 0:
            _check_length(sw.shape[0], n, "sample_weight")
            t.sw = &sw[0]
    if n == 0:
        return None if Y is None else float("nan")
    with nogil:
        if T > 1:
            with parallel(num_threads=T):
                _team_predict_run(&t, &bufs[threadid()], &params[0])
        else:
            _team_predict_run(&t, &bufs[0], &params[0])
    if t.failed:
        raise NonFiniteInput("X contains NaN or infinity")
    if Y is None:
        return None
    for i in range(n_chunks):
        loss += cl[i]
    if t.sw != NULL:
        for r in range(n):
            sw_sum += sw[r]
    else:
        sw_sum = n
    return loss / sw_sum


def predict_rows(Layout layout not None, Workspace ws not None, Input X not None,
                 const floating[::1] params not None,     # IN
                 const Py_ssize_t[::1] rows not None,     # IN  rows of X
                 floating[:, ::1] out not None,           # OUT (n_rows x n_outputs)
                 const floating[:, ::1] Y=None,           # IN  targets of those rows, optional
                 const floating[::1] sw=None):            # IN  their weights, optional
    """Output layer of the network for the rows of X listed in ``rows``.
    With ``Y`` (rows aligned with ``out``), returns the mean loss of those
    rows (weighted by ``sw``; no L2 term); else returns None."""
    cdef const Net *net = &layout.net
    cdef const Source *src = &X.src
    cdef Py_ssize_t k = net.units[net.n_layers], n = rows.shape[0]
    cdef Py_ssize_t start = 0, nb, cap = layout.cap, r
    cdef Buffers buf
    cdef Chunk chunk
    cdef bint with_loss = Y is not None
    cdef const floating *yp = NULL
    cdef const floating *swp = NULL
    cdef double loss = 0.0, sw_sum = 0.0
    _check_predict(layout, ws, X, &buf, params, out.shape[0], out.shape[1], n)
    _check_rows(rows, X.n_samples, "rows")
    if with_loss:
        _check_matrix(Y.shape[0], Y.shape[1], n, k, "Y")
        yp = &Y[0, 0]
        if sw is not None and sw.shape[0] > 0:
            _check_length(sw.shape[0], n, "sample_weight")
            swp = &sw[0]
    with nogil:
        while start < n:
            nb = min(cap, n - start)
            chunk = _chunk(&rows[start], 0, nb)
            _predict_chunk(net, src, &chunk, &params[0], &buf, False, &out[start, 0])
            if with_loss:
                loss += loss_only(net.loss, nb, k, &out[start, 0], yp + start * k,
                                  swp + start if swp != NULL else NULL,
                                  net.huber_delta)
            start += nb
        if with_loss:
            if swp != NULL:
                for r in range(n):
                    sw_sum += swp[r]
            else:
                sw_sum = n
    if with_loss:
        return loss / sw_sum
    return None


def all_finite_params(const floating[::1] params not None):
    """True when every parameter is finite."""
    cdef bint ok
    with nogil:
        ok = all_finite(&params[0], params.shape[0])
    return bool(ok)
