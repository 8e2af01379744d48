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

``_fwd_bwd`` is the one kernel every caller shares: for a chunk of rows it
runs the forward pass, the loss and its output delta, and the backward pass,
adding the unnormalised gradient into ``grads``. A training epoch calls it
once per mini-batch and then steps the optimizer; the full-data objective for
L-BFGS and for the gradient checker calls it once per chunk of rows. Every
matrix product goes through ``_blas.gemm``; the elementwise work is in
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
    dropout, mul, dot, bp_take, bp_take_none,
)
from libc.stdint cimport uint64_t, int32_t, int64_t

cdef extern from "Python.h":
    int _check_signals "PyErr_CheckSignals"() noexcept


cdef int _reraise() except -1:
    # The exception set by PyErr_CheckSignals is still pending: returning -1
    # from an ``except -1`` function makes Cython raise it.
    return -1


# Solver codes (enum bp_solver in bp_kernels.h)
from ._codes cimport BP_SGD as SOLVER_SGD, BP_ADAM as SOLVER_ADAM, BP_ADAMW as SOLVER_ADAMW

# Work (rows x parameters) between two checks for Ctrl-C: ~a millisecond.
cdef Py_ssize_t SIGNAL_WORK = 1 << 22

# Codes the C kernels know (enum bp_activation and bp_loss in bp_kernels.h).
MAX_ACTIVATION = 10
MAX_LOSS = 5

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
                 Py_ssize_t cap, dropout=None):
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
        if dropout is not None:
            self.drop[:L - 1] = dropout
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
    """Buffers for ``layout.cap`` rows, allocated once."""
    cdef readonly object xbuf, ybuf, swbuf, acts, zs, d0, d1, keep, mask

    def __init__(self, Layout layout not None, dtype, Py_ssize_t n_features, bint sparse):
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

# The gather reads rows of X in shuffled order, each one a cache miss unless
# asked for early: it asks for the row this many ahead of the one it copies
# (seed network, batch 32: the gather went from 10.5% to 7.3% of the epoch's
# profile samples). The epoch also asks for the next batch's first rows, which
# that look-ahead does not reach: on an AMD EPYC (Zen 5), float64, one thread,
# 12 interleaved fits each way, the epoch's median went down 0.6% at batch 1
# (1.7% in float32), 3.6% at batch 32 and 0.6% at batch 200 (faster in 8 to
# 11 of the 12 pairs); an Intel Xeon had shown nothing measurable at batch 32.
cdef Py_ssize_t PREFETCH_ROWS = 8


cdef inline void _prefetch_row(const Source *src, Py_ssize_t row) noexcept nogil:
    if not src.sparse and src.col_stride > 0:
        bp_prefetch(src.base + row * src.row_stride,
                    (src.n_features - 1) * src.col_stride + src.itemsize)


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


cdef struct Dropout:
    # Training-mode dropout: the buffers of the workspace and the RNG state;
    # a NULL pointer to it means no dropout (prediction).
    void *keep
    void *mask
    uint64_t state


cdef void _forward(const Net *net, const Source *src, const Py_ssize_t *rows,
                   Py_ssize_t start, Py_ssize_t n, const floating *params,
                   floating *xbuf, floating *acts, floating *zs,
                   const floating **xin, Py_ssize_t *ldx,
                   Dropout *drop, const double *wscale,
                   floating *z0) noexcept nogil:
    """Z = A W + b and A' = f(Z) for every layer; the output is at
    ``acts + act_off[L-1]``. ``xin``/``ldx`` return the dense input block.
    With ``drop``, hidden layers with a dropout rate keep f(Z) in
    ``drop.keep`` and pass f(Z) * mask on. With ``wscale`` (scaled plain SGD,
    see ``Direct``), layer l's weights are ``wscale[l]`` times the stored
    ones. With ``z0``, the first layer's Z is kept there when the activation
    buffers would not keep it."""
    cdef Py_ssize_t l, fan_in, fan_out, ld = 0
    cdef floating w_a
    cdef const floating *inp
    cdef floating *out_a
    cdef floating *out_z
    cdef floating *kept
    for l in range(net.n_layers):
        fan_in = net.units[l]
        fan_out = net.units[l + 1]
        out_a = acts + net.act_off[l]
        kept = NULL
        if drop != NULL and net.d_off[l] >= 0:
            kept = <floating *> drop.keep + net.d_off[l]
        out_z = zs + net.z_off[l] if net.z_off[l] >= 0 else (
            z0 if l == 0 and z0 != NULL else kept if kept != NULL else out_a)
        w_a = <floating> wscale[l] if wscale != NULL else 1
        # the bias first, then gemm adds A W onto it (beta = 1): no separate
        # pass to add the bias, and BLAS skips its pass that clears C
        fill_rows(out_z, params + net.icpt_off[l], n, fan_out)
        if l == 0:
            if src.sparse:
                _csr_matmul(src, rows, start, n, params + net.coef_off[0],
                            fan_out, out_z)
                xin[0] = NULL
            else:
                inp = _dense_rows(src, rows, start, n, xbuf, &ld)
                xin[0] = inp
                ldx[0] = ld
                gemm(False, False, <blas_int> n, <blas_int> fan_out, <blas_int> fan_in,
                     w_a, inp, <blas_int> ld, params + net.coef_off[0],
                     <blas_int> fan_out, <floating> 1, out_z, <blas_int> fan_out)
        else:
            gemm(False, False, <blas_int> n, <blas_int> fan_out, <blas_int> fan_in,
                 w_a, acts + net.act_off[l - 1], <blas_int> fan_in,
                 params + net.coef_off[l], <blas_int> fan_out, <floating> 1,
                 out_z, <blas_int> fan_out)
        if kept != NULL:
            activate(net.act[l], out_z, kept, n, fan_out)
            dropout(kept, out_a, <floating *> drop.mask + net.d_off[l],
                    n * fan_out, net.drop[l], &drop.state)
        else:
            activate(net.act[l], out_z, out_a, n, fan_out)


cdef const floating *_rows_of(const floating *M, Py_ssize_t width,
                              const Py_ssize_t *rows, Py_ssize_t start,
                              Py_ssize_t n, floating *buf) noexcept nogil:
    """Rows of a contiguous (n_samples x width) array, gathered if needed."""
    cdef Py_ssize_t r
    if rows == NULL:
        return M + start * width
    if width == 1:
        # one target or weight a row: a memcpy call per value was 26 us of
        # the seed network's 3 ms batch-200 epoch, the assignments 4 us
        for r in range(n):
            buf[r] = M[rows[r]]
        return buf
    for r in range(n):
        memcpy(buf + r * width, M + rows[r] * width, width * sizeof(floating))
    return buf


cdef struct Direct:
    # Plain SGD (momentum 0) applied during the backward pass: sklearn's
    # W -= lr (A'delta + alpha W) / S as W *= 1 - lr alpha / S, then
    # W += (-lr / S) A'delta by the same gemm that would have written the
    # gradient. Saves writing and reading back a gradient the size of the
    # weights; the sums round differently from sklearn's in the last place.
    #
    # Scaled (batch size 1, dense X, alpha > 0): the decay of every weight
    # at every row was a fifth of the epoch, so each layer is kept as
    # W_l = wscale[l] V_l, as scikit-learn's SGDClassifier keeps its weights.
    # The decay multiplies wscale[l]; the rank-one data term goes into V_l
    # with the factor divided out; the products take wscale[l] as their
    # alpha. The batch's L2 term needs |W_l|^2 = wscale^2 |V_l|^2, and
    # |V_l|^2 (``wsq``) is updated exactly for V += k a d':
    #     |V + k a d'|^2 = |V|^2 + 2k a'V d + k^2 |a|^2 |d|^2,
    # where a'V d comes from products the backward pass makes anyway
    # (``vdot``). ``epoch`` starts wsq from the weights and folds the
    # factors back into them at its end.
    void *params        # the parameter vector, updated in place
    double lr
    double alpha        # L2 penalty
    double ss           # out: sum of squared weights before the update
    bint scaled
    double *wscale      # n_layers factors
    double *wsq         # n_layers squared norms of the stored weights
    void *z0            # the first layer's Z (units[1] values), for vdot
    double vdot         # a'V_l d of the layer being updated


cdef void _sgd_update(Direct *direct, const Net *net, const Source *src,
                      const Py_ssize_t *rows, Py_ssize_t start, Py_ssize_t n,
                      Py_ssize_t l, const floating *a_in, Py_ssize_t ld_in,
                      const floating *delta, double s) noexcept nogil:
    """Layer l's weights, in place: the L2 decay (summing the squares it
    decays: this batch's L2 term), then the data term."""
    cdef Py_ssize_t fan_in = net.units[l], fan_out = net.units[l + 1]
    cdef floating *W = <floating *> direct.params + net.coef_off[l]
    cdef floating scale = <floating> (-direct.lr / s)
    cdef double c, sig, k
    if direct.scaled:
        c = 1.0 - direct.lr * direct.alpha / s
        sig = direct.wscale[l]
        if c >= 0.5:
            # W = sig V before, sig c V' after: V' = V + (-lr / (s sig c)) a d'
            k = -direct.lr / (s * sig * c)
            direct.ss += sig * sig * direct.wsq[l]
            direct.wsq[l] += (2.0 * k * direct.vdot
                              + k * k * dot(a_in, a_in, fan_in) * dot(delta, delta, fan_out))
            gemm(True, False, <blas_int> fan_in, <blas_int> fan_out, <blas_int> 1,
                 <floating> k, a_in, <blas_int> ld_in, delta, <blas_int> fan_out,
                 <floating> 1, W, <blas_int> fan_out)
            direct.wscale[l] = sig * c
            if sig * c < WSCALE_MIN:
                _fold_scale(direct, W, fan_in * fan_out, l)
            return
        # a decay this strong (or a zero weight sum): unscaled, as below
        _fold_scale(direct, W, fan_in * fan_out, l)
    if direct.alpha > 0:
        direct.ss += decay_sumsq(W, fan_in * fan_out,
                                 <floating> (1.0 - direct.lr * direct.alpha / s))
    if l == 0 and src.sparse:
        _csr_grad(src, rows, start, n, delta, fan_out, scale, W)
    else:
        gemm(True, False, <blas_int> fan_in, <blas_int> fan_out, <blas_int> n,
             scale, a_in, <blas_int> ld_in, delta, <blas_int> fan_out,
             <floating> 1, W, <blas_int> fan_out)
    if direct.scaled:
        direct.wsq[l] = sumsq(W, fan_in * fan_out)


# A scaled layer's factor is folded into its weights when it falls below
# this (it falls by 1 - lr alpha per row: ~1e-6 with the defaults).
cdef double WSCALE_MIN = 1e-3


cdef void _fold_scale(Direct *direct, floating *W, Py_ssize_t n,
                      Py_ssize_t l) noexcept nogil:
    """W_l = wscale[l] V_l stored as such, with factor 1."""
    cdef double sig = direct.wscale[l]
    if sig != 1.0:
        direct.wsq[l] = decay_sumsq(W, n, <floating> sig) * sig * sig
        direct.wscale[l] = 1.0


cdef double _fwd_bwd(const Net *net, const Source *src, const Py_ssize_t *rows,
                     Py_ssize_t start, Py_ssize_t n, const floating *Y,
                     const floating *sw, const floating *params,
                     floating *grads, floating *xbuf, floating *ybuf,
                     floating *swbuf, floating *acts, floating *zs,
                     floating *d0, floating *d1, double *sw_sum,
                     bint accumulate, Dropout *drop, Direct *direct) noexcept nogil:
    """Forward, loss and backward for one chunk of rows.

    Writes (or with ``accumulate`` adds) X'delta and colsum(delta) of every
    layer into ``grads`` (not yet divided by the weight sum, no L2 term),
    adds the chunk's weight sum into ``sw_sum`` and returns the chunk's
    weighted loss sum. With ``direct`` (plain SGD), the weights are updated
    in place instead (see ``_sgd_update``) and only the intercepts' sums go
    into ``grads``."""
    cdef Py_ssize_t L = net.n_layers, k = net.units[L]
    cdef Py_ssize_t l, r, fan_in, fan_out, ldx = 0
    cdef const floating *xin = NULL
    cdef const floating *y
    cdef const floating *w = NULL
    cdef floating *delta = d0
    cdef floating *other = d1
    cdef floating *tmp
    cdef floating *a_prev
    cdef floating *z_prev
    cdef const floating *a_in
    cdef Py_ssize_t ld_in
    cdef double loss, s = 0.0
    cdef floating beta = 1 if accumulate else 0
    cdef bint scaled = direct != NULL and direct.scaled
    cdef const double *wscale = direct.wscale if scaled else NULL
    cdef floating *z0 = <floating *> direct.z0 if scaled else NULL
    cdef floating w_a = 1

    if not accumulate:
        # the matrix products below overwrite the weights' gradients; the
        # intercepts' (and a sparse first layer's) are sums, start them at 0
        memset(grads + net.n_coef, 0, (net.n_params - net.n_coef) * sizeof(floating))
        if src.sparse and direct == NULL:
            memset(grads, 0, net.units[0] * net.units[1] * sizeof(floating))

    y = _rows_of(Y, k, rows, start, n, ybuf)
    if sw != NULL:
        w = _rows_of(sw, 1, rows, start, n, swbuf)
        for r in range(n):
            s += w[r]
    else:
        s = n
    sw_sum[0] += s

    _forward(net, src, rows, start, n, params, xbuf, acts, zs, &xin, &ldx, drop,
             wscale, z0)
    if scaled and net.z_off[0] >= 0:
        z0 = zs + net.z_off[0]
    loss = loss_delta(net.loss, n, k, acts + net.act_off[L - 1], y, w, delta,
                      net.huber_delta)

    for l in range(L - 1, -1, -1):
        fan_in = net.units[l]
        fan_out = net.units[l + 1]
        a_in = xin if l == 0 else acts + net.act_off[l - 1]
        ld_in = ldx if l == 0 else fan_in
        # dW_l += A_l' delta ; db_l += colsum(delta)
        if direct != NULL:
            pass    # W_l is updated below, once delta_{l-1} no longer needs it
        elif l == 0 and src.sparse:
            _csr_grad(src, rows, start, n, delta, fan_out, <floating> 1,
                      grads + net.coef_off[0])
        else:
            gemm(True, False, <blas_int> fan_in, <blas_int> fan_out, <blas_int> n,
                 <floating> 1, a_in, <blas_int> ld_in, delta, <blas_int> fan_out,
                 beta, grads + net.coef_off[l], <blas_int> fan_out)
        colsum_add(delta, n, fan_out, grads + net.icpt_off[l])
        if scaled:
            w_a = <floating> wscale[l]
            if l == 0:
                # a'V_0 d = (Z_0 - b_0) d / wscale_0, one row
                direct.vdot = (dot(z0, delta, fan_out)
                               - dot(params + net.icpt_off[0], delta, fan_out)) / wscale[0]
        if l > 0:
            # delta_{l-1} = (delta W_l') * f'(Z_{l-1})
            gemm(False, True, <blas_int> n, <blas_int> fan_in, <blas_int> fan_out,
                 w_a, delta, <blas_int> fan_out, params + net.coef_off[l],
                 <blas_int> fan_out, <floating> 0, other, <blas_int> fan_in)
            if scaled:
                # a'V_l d = a' (delta W_l')' / wscale_l, one row
                direct.vdot = dot(a_in, other, fan_in) / wscale[l]
            a_prev = acts + net.act_off[l - 1]
            z_prev = zs + net.z_off[l - 1] if net.z_off[l - 1] >= 0 else a_prev
            if drop != NULL and net.d_off[l - 1] >= 0:
                # through the mask, then f' at the activation before dropout
                mul(other, <floating *> drop.mask + net.d_off[l - 1], n * fan_in)
                a_prev = <floating *> drop.keep + net.d_off[l - 1]
                if net.z_off[l - 1] < 0:
                    z_prev = a_prev
            act_grad(net.act[l - 1], z_prev, a_prev, other, n * fan_in)
        if direct != NULL:
            _sgd_update(direct, net, src, rows, start, n, l, a_in, ld_in, delta, s)
        if l > 0:
            tmp = delta
            delta = other
            other = tmp
    return loss


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
            ("keep", layout.d_size), ("mask", layout.d_size))
    for name, size in need:
        buf = getattr(ws, name)
        if buf.shape[0] < size:
            raise ValueError(
                f"the workspace's {name} holds {buf.shape[0]} values where this "
                f"layout needs {size}: a Workspace built for another Layout"
            )
    return 0


cdef int _buffers(Workspace ws, floating **xbuf, floating **ybuf,
                  floating **swbuf, floating **acts, floating **zs,
                  floating **d0, floating **d1, floating **keep,
                  floating **mask) except -1:
    """Data pointers of a workspace's buffers, checked against the dtype
    (their sizes are checked by ``_check_network``)."""
    cdef floating[::1] a = ws.xbuf, b = ws.ybuf, c = ws.swbuf, d = ws.acts
    cdef floating[::1] e = ws.zs, f = ws.d0, g = ws.d1, h = ws.keep, i = ws.mask
    xbuf[0] = &a[0]
    ybuf[0] = &b[0]
    swbuf[0] = &c[0]
    acts[0] = &d[0]
    zs[0] = &e[0]
    d0[0] = &f[0]
    d1[0] = &g[0]
    keep[0] = &h[0]
    mask[0] = &i[0]
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
# Entry points (called from Python once per epoch / objective / predict)

class NonFiniteInput(ValueError):
    """``predict(check_finite=True)`` met NaN or infinity in X."""

cdef int _dropout_state(Layout layout, void *keep, void *mask, long long seed,
                        Dropout *drop, Dropout **dp) except -1:
    """Point ``dp`` at ``drop`` when the network has dropout and a seed is
    given (training); else NULL (no dropout)."""
    dp[0] = NULL
    if seed >= 0 and layout.d_size > 0:
        drop.keep = keep
        drop.mask = mask
        drop.state = <uint64_t> seed
        dp[0] = drop
    return 0


def epoch(Layout layout not None, Workspace ws not None, Input X not None,
          const floating[:, ::1] Y not None,          # IN  targets (n_samples x n_outputs)
          const floating[::1] sw not None,            # IN  sample weights, or length 0
          const Py_ssize_t[::1] order not None,       # IN  rows of X in visiting order
          Py_ssize_t batch_size,
          floating[::1] params not None,              # IN/OUT flat parameters
          floating[::1] grads not None,               # scratch
          floating[::1] state1 not None,              # IN/OUT velocity (sgd) / m (adam)
          floating[::1] state2 not None,              # IN/OUT v (adam)
          int solver, double learning_rate, double momentum, bint nesterov,
          double beta_1, double beta_2, double epsilon, long long adam_t,
          double alpha, long long dropout_seed):
    """One pass over ``order`` in mini-batches, updating ``params`` in place.

    Returns (sum over batches of batch_loss * batch_rows, adam_t). The
    ``batch_loss`` is the batch's mean loss plus the L2 term, computed before
    the batch's update, as scikit-learn reports it. With solver ADAMW,
    ``alpha`` is the decoupled weight decay instead of the L2 term. A pending
    signal (Ctrl-C) stops the loop at a batch boundary and is raised.
    """
    cdef const Net *net = &layout.net
    cdef const Source *src = &X.src
    cdef Py_ssize_t n = order.shape[0], start, nb, r, work = 0
    cdef Py_ssize_t P = layout.n_params, NC = layout.n_coef
    cdef floating *pxbuf, *pybuf, *pswbuf, *pacts, *pzs, *pd0, *pd1, *pkeep, *pmask
    cdef double total = 0.0, batch_loss, sw_sum, lr_t, decay, ss = 0.0
    cdef double grad_alpha = 0.0 if solver == SOLVER_ADAMW else alpha
    cdef int interrupted = 0
    cdef Dropout drop
    cdef Dropout *dp
    cdef Direct direct
    cdef Direct *dir_p = NULL
    cdef Py_ssize_t l, L = net.n_layers
    cdef double[::1] wscale, wsq
    cdef floating[::1] z0
    _check_network(layout, ws, X, sizeof(floating))
    _buffers(ws, &pxbuf, &pybuf, &pswbuf, &pacts, &pzs, &pd0, &pd1, &pkeep, &pmask)
    _check_matrix(Y.shape[0], Y.shape[1], X.n_samples, net.units[L], "Y")
    if sw.shape[0] != 0:
        _check_length(sw.shape[0], X.n_samples, "sample_weight")
    _check_length(params.shape[0], P, "params")
    _check_length(grads.shape[0], P, "grads")
    if solver != SOLVER_SGD and solver != SOLVER_ADAM and solver != SOLVER_ADAMW:
        raise ValueError(f"unknown solver code {solver}")
    _check_length(state1.shape[0], P, "state1")
    if solver != SOLVER_SGD:
        _check_length(state2.shape[0], P, "state2")
    if batch_size > layout.cap or batch_size < 1:
        raise ValueError(
            f"batch_size {batch_size} is not within the workspace's 1 to {layout.cap} rows"
        )
    _check_rows(order, X.n_samples, "order")
    cdef const floating *swp = &sw[0] if sw.shape[0] > 0 else NULL
    _dropout_state(layout, pkeep, pmask, dropout_seed, &drop, &dp)
    direct.scaled = False
    if solver == SOLVER_SGD and momentum == 0.0:
        # plain SGD: weights updated in the backward pass (see Direct)
        direct.params = <void *> &params[0]
        direct.lr = learning_rate
        direct.alpha = grad_alpha
        dir_p = &direct
        if batch_size == 1 and grad_alpha > 0 and not X.sparse:
            direct.scaled = True
            wscale = np.ones(L)
            wsq = np.empty(L)
            z0 = np.empty(layout.units[1], dtype=ws.acts.dtype)
            direct.wscale = &wscale[0]
            direct.wsq = &wsq[0]
            direct.z0 = <void *> &z0[0]
    with nogil:
        if grad_alpha > 0 and dir_p == NULL:
            ss = sumsq(&params[0], NC)
        if direct.scaled:
            for l in range(L):
                direct.wsq[l] = sumsq(&params[net.coef_off[l]], net.units[l] * net.units[l + 1])
        start = 0
        while start < n:
            nb = min(batch_size, n - start)
            # the next batch's first rows, which the gather's look-ahead does
            # not reach (at batch size 1 no gather runs at all)
            for r in range(start + nb, min(n, start + nb + min(nb, PREFETCH_ROWS))):
                _prefetch_row(src, order[r])
            sw_sum = 0.0
            direct.ss = 0.0
            batch_loss = _fwd_bwd(net, src, &order[start], 0, nb, &Y[0, 0], swp,
                                  &params[0], &grads[0], pxbuf, pybuf, pswbuf,
                                  pacts, pzs, pd0, pd1, &sw_sum, False, dp, dir_p)
            if dir_p != NULL:
                ss = direct.ss
            # the L2 term of the loss uses the weights before this batch's step
            batch_loss = batch_loss / sw_sum + 0.5 * grad_alpha * ss / sw_sum
            decay = 0.0
            if solver == SOLVER_SGD:
                lr_t = learning_rate
            else:
                adam_t += 1
                lr_t = (learning_rate * sqrt(1.0 - pow(beta_2, <double> adam_t))
                        / (1.0 - pow(beta_1, <double> adam_t)))
                if solver == SOLVER_ADAMW:
                    decay = learning_rate * alpha
            if dir_p != NULL:
                # the weights are done; the intercepts' step
                step(0, &params[NC], &state1[0], &state2[0], &grads[NC], 0, P - NC,
                     0.0, sw_sum, lr_t, 0.0, False, beta_1, beta_2, epsilon, 0.0)
            else:
                ss = step(0 if solver == SOLVER_SGD else 1, &params[0], &state1[0],
                          &state2[0], &grads[0], NC, P, grad_alpha, sw_sum, lr_t,
                          momentum, nesterov, beta_1, beta_2, epsilon, decay)
            total += batch_loss * nb
            start += nb
            work += nb * P
            if work >= SIGNAL_WORK and start < n:
                work = 0
                with gil:
                    if _check_signals() != 0:
                        interrupted = 1
                if interrupted:
                    break
        if direct.scaled:
            for l in range(L):
                _fold_scale(&direct, &params[net.coef_off[l]],
                            net.units[l] * net.units[l + 1], l)
    if interrupted:
        _reraise()
    return total, adam_t


def objective(Layout layout not None, Workspace ws not None, Input X not None,
              const floating[:, ::1] Y not None,      # IN
              const floating[::1] sw not None,        # IN  or length 0
              floating[::1] params not None,          # IN
              floating[::1] grads not None,           # OUT gradient of the returned loss
              double alpha, long long dropout_seed=-1):
    """Mean loss over all of X plus 0.5 alpha |W|^2 / sum(sw), and its
    gradient, computed chunk by chunk (``layout.cap`` rows at a time).

    With ``dropout_seed >= 0`` the training-mode network (dropout masks drawn
    from that seed, the same masks at every call) is differentiated: that is
    how the gradient checker checks dropout with a fixed mask."""
    cdef const Net *net = &layout.net
    cdef const Source *src = &X.src
    cdef Py_ssize_t n = X.n_samples, start, nb, cap = layout.cap
    cdef Py_ssize_t P = layout.n_params, NC = layout.n_coef
    cdef floating *pxbuf, *pybuf, *pswbuf, *pacts, *pzs, *pd0, *pd1, *pkeep, *pmask
    cdef double loss = 0.0, sw_sum = 0.0
    cdef Dropout drop
    cdef Dropout *dp
    _check_network(layout, ws, X, sizeof(floating))
    _buffers(ws, &pxbuf, &pybuf, &pswbuf, &pacts, &pzs, &pd0, &pd1, &pkeep, &pmask)
    _check_matrix(Y.shape[0], Y.shape[1], n, net.units[net.n_layers], "Y")
    if sw.shape[0] != 0:
        _check_length(sw.shape[0], n, "sample_weight")
    _check_length(params.shape[0], P, "params")
    _check_length(grads.shape[0], P, "grads")
    cdef const floating *swp = &sw[0] if sw.shape[0] > 0 else NULL
    _dropout_state(layout, pkeep, pmask, dropout_seed, &drop, &dp)
    with nogil:
        memset(&grads[0], 0, P * sizeof(floating))
        start = 0
        while start < n:
            nb = min(cap, n - start)
            loss += _fwd_bwd(net, src, NULL, start, nb, &Y[0, 0], swp, &params[0],
                             &grads[0], pxbuf, pybuf, pswbuf, pacts, pzs, pd0,
                             pd1, &sw_sum, True, dp, NULL)
            start += nb
        loss = loss / sw_sum + 0.5 * alpha * sumsq(&params[0], NC) / sw_sum
        finish_grad(&grads[0], &params[0], NC, P, alpha, sw_sum)
    return loss


cdef inline Py_ssize_t _taken_rows(Py_ssize_t *counter, Py_ssize_t cap,
                                   Py_ssize_t n) noexcept nogil:
    """First row of the next chunk taken from the counter; n when none is left."""
    cdef Py_ssize_t c = bp_take(counter)
    return c * cap if c < (n + cap - 1) // cap else n


def predict(Layout layout not None, Workspace ws not None, Input X not None,
            const floating[::1] params not None,      # IN
            const Py_ssize_t[::1] rows not None,      # IN  rows of X, or length 0 for all
            floating[:, ::1] out not None,            # OUT (n_rows x n_outputs)
            const floating[:, ::1] Y=None,   # IN  targets of those rows, optional
            const floating[::1] sw=None,     # IN  their weights, optional
            bint check_finite=False,
            Py_ssize_t[::1] chunks=None):    # IN/OUT shared chunk counter, optional
    """Output layer of the network for rows of X, ``layout.cap`` rows at a
    time: the rows listed in ``rows``, or else all rows. With ``Y`` (rows aligned with ``out``), also returns
    the mean loss of those rows (weighted by ``sw``; no L2 term); else returns
    None. With ``check_finite``, dense rows are checked for NaN and infinity
    while the chunk is in cache (instead of a pass over all of X before), and
    ``NonFiniteInput`` is raised if there is any.

    With ``chunks`` (one counter, shared by threads that call this at once
    with the same ``out`` and no ``rows`` or ``Y``), the call computes only
    the chunks it takes from the counter, one at a time, until none is left:
    chunk c is rows ``c * cap`` to ``(c + 1) * cap``, whoever computes it."""
    cdef const Net *net = &layout.net
    cdef const Source *src = &X.src
    cdef Py_ssize_t L = net.n_layers, k = net.units[L]
    cdef Py_ssize_t n = rows.shape[0] if rows.shape[0] > 0 else X.n_samples
    cdef Py_ssize_t start, nb, cap = layout.cap, ldx
    cdef floating *pxbuf, *pybuf, *pswbuf, *pacts, *pzs, *pd0, *pd1, *pkeep, *pmask
    cdef const floating *xin
    cdef const Py_ssize_t *rp = &rows[0] if rows.shape[0] > 0 else NULL
    cdef bint with_loss = Y is not None
    cdef const floating *yp = NULL
    cdef const floating *swp = NULL
    cdef double loss = 0.0, sw_sum = 0.0
    cdef Py_ssize_t r, nf = X.n_features
    cdef bint bad = False
    cdef Py_ssize_t *counter = NULL
    check_finite = check_finite and not X.sparse
    _check_network(layout, ws, X, sizeof(floating))
    _buffers(ws, &pxbuf, &pybuf, &pswbuf, &pacts, &pzs, &pd0, &pd1, &pkeep, &pmask)
    if chunks is not None:
        if chunks.shape[0] != 1 or rows.shape[0] > 0 or Y is not None:
            raise ValueError("chunks: one counter, for all rows and no targets")
        counter = &chunks[0]
    _check_rows(rows, X.n_samples, "rows")
    _check_matrix(out.shape[0], out.shape[1], n, k, "out")
    _check_length(params.shape[0], layout.n_params, "params")
    if with_loss:
        _check_matrix(Y.shape[0], Y.shape[1], n, k, "Y")
        yp = &Y[0, 0]
        if sw is not None and sw.shape[0] > 0:
            _check_length(sw.shape[0], n, "sample_weight")
            swp = &sw[0]
    with nogil:
        start = 0 if counter == NULL else _taken_rows(counter, cap, n)
        while start < n:
            nb = min(cap, n - start)
            _forward(net, src, rp + start if rp != NULL else NULL,
                     start if rp == NULL else 0, nb, &params[0], pxbuf,
                     pacts, pzs, &xin, &ldx, NULL, NULL, NULL)
            if check_finite:
                if ldx == nf:
                    bad = not all_finite(xin, nb * nf)
                else:
                    for r in range(nb):
                        if not all_finite(xin + r * ldx, nf):
                            bad = True
                            break
                if bad:
                    if counter != NULL:
                        bp_take_none(counter)
                    break
            memcpy(&out[start, 0], pacts + net.act_off[L - 1],
                   nb * k * sizeof(floating))
            if with_loss:
                loss += loss_only(net.loss, nb, k, &out[start, 0], yp + start * k,
                                  swp + start if swp != NULL else NULL,
                                  net.huber_delta)
            start = start + nb if counter == NULL else _taken_rows(counter, cap, n)
        if with_loss and not bad:
            if swp != NULL:
                for r in range(n):
                    sw_sum += swp[r]
            else:
                sw_sum = n
    if bad:
        raise NonFiniteInput("X contains NaN or infinity")
    if with_loss:
        return loss / sw_sum
    return None


def all_finite_params(const floating[::1] params not None):
    """True when every parameter is finite."""
    cdef bint ok
    with nogil:
        ok = all_finite(&params[0], params.shape[0])
    return bool(ok)
