"""How blasprop uses threads: its own training threads and BLAS's.

Training with ``n_jobs`` set runs the blocked path of the compiled core on
an OpenMP team (``training_threads``), with BLAS on one thread inside it.
Without ``n_jobs``, training on small matrix products runs BLAS on one
thread (hand-offs between threads cost more than the products). Prediction
spreads its chunks over an OpenMP team as large as BLAS's thread count and
OpenMP's limit both allow, with BLAS on one thread inside it (as does early
stopping's validation pass, on the fit's threads). BLAS has one thread count
per process:
overlapping users share the one-thread limit, the first to enter sets it,
the last to leave restores it.
"""

import contextlib
import threading
import time

from . import _core

# When the largest matrix product of a batch has fewer multiply-adds than
# this, training runs BLAS on one thread: spreading such small products over
# threads costs more in hand-offs than it gains, and far more on a busy
# machine (docs/performance.md, 2026-12-04).
_SMALL_GEMM = 1 << 22
_THREADPOOLS = None
# The limit is process-wide (BLAS has one thread count), so overlapping fits
# share it: the first to enter sets one thread, the last to leave restores
# what was there. Saving and restoring per fit would let a fit that started
# under another's limit "restore" that limit for good.
_THREAD_LOCK = threading.Lock()
_THREAD_USERS = 0
_THREAD_RESTORE = None


def _threadpools():
    global _THREADPOOLS
    if _THREADPOOLS is None:
        from threadpoolctl import ThreadpoolController

        _THREADPOOLS = ThreadpoolController()  # scans the loaded libraries once
    return _THREADPOOLS


def training_threads(n_jobs, batch_rows, units):
    """Threads of the blocked training path for scikit-learn's ``n_jobs``,
    or 0 for the one-thread path that follows scikit-learn's order of sums
    (``n_jobs`` None and no joblib ``parallel_config`` that sets it).

    OpenMP's limit (threadpoolctl's ``threadpool_limits``) bounds it, and so
    does the number of row blocks of a batch of ``batch_rows`` rows of the
    network of layer widths ``units``: a thread with no block would only
    wait."""
    from joblib import effective_n_jobs

    n = effective_n_jobs(n_jobs)
    if n_jobs is None and n == 1:
        return 0
    blocks = len(_core.block_rows(batch_rows, units))
    return max(1, min(n, _core.max_threads(), blocks))


class ThreadChooser:
    """Threads for each call of the blocked path: ``n_threads`` or one,
    whichever was faster when last timed.

    The blocked path gives the same model bit for bit with any number of
    threads, so the choice can change from call to call. Sharing a batch
    between cores pays when moving its activations between them is cheap;
    on a busy machine, or where the cores are far apart (virtual machines
    whose CPUs the host places on different chiplets), one thread can be
    faster (docs/performance.md). Every ``every`` calls both are timed again:
    the machine changes."""

    def __init__(self, n_threads, every=16):
        self.n_threads = n_threads
        self.every = every
        self.calls = 0
        self.seconds = {}

    def threads(self):
        """The number of threads for the next call."""
        if self.n_threads < 2:
            return self.n_threads
        probe = self.calls % self.every
        if probe < 2:
            return (self.n_threads, 1)[probe]
        return min(self.seconds, key=self.seconds.get)

    def timed(self, call, *args, **kwargs):
        """``call(*args, n_threads=..., **kwargs)``, timed for the choice."""
        n = self.threads()
        t0 = time.perf_counter()
        out = call(*args, n_threads=n, **kwargs)
        self.seconds[n] = time.perf_counter() - t0
        self.calls += 1
        return out


_CHOOSERS = {}
_CHOOSERS_MAX = 64


def thread_chooser(n_threads, *key):
    """The ``ThreadChooser`` of this process for work described by ``key``
    (the network, the batch, the dtype...): what one fit learnt about the
    machine serves the next (a fit of a single epoch learns nothing by
    itself)."""
    if n_threads < 2:
        return ThreadChooser(n_threads)
    key = (n_threads, *key)
    chooser = _CHOOSERS.get(key)
    if chooser is None:
        if len(_CHOOSERS) >= _CHOOSERS_MAX:
            _CHOOSERS.clear()
        chooser = _CHOOSERS[key] = ThreadChooser(n_threads)
    return chooser


def blas_thread_count():
    """How many threads BLAS may use now (threadpoolctl's limit, if any)."""
    return max((c.num_threads for c in _threadpools().lib_controllers
                if c.user_api == "blas"), default=1)


@contextlib.contextmanager
def blas_threads_for_fit(units, rows, n_threads=0):
    """One BLAS thread for the duration of a fit on small products, or on
    ``n_threads`` training threads of the blocked path."""
    work = max(rows * a * b for a, b in zip(units, units[1:]))
    if work >= _SMALL_GEMM and n_threads < 2:
        yield
        return
    with one_blas_thread():
        yield


@contextlib.contextmanager
def one_blas_thread():
    """BLAS on one thread until the last overlapping user leaves."""
    global _THREAD_USERS, _THREAD_RESTORE
    with _THREAD_LOCK:
        _threadpools()
        if _THREAD_USERS == 0:
            _THREAD_RESTORE = _THREADPOOLS.limit(limits=1, user_api="blas")
        _THREAD_USERS += 1
    try:
        yield
    finally:
        with _THREAD_LOCK:
            _THREAD_USERS -= 1
            if _THREAD_USERS == 0:
                _THREAD_RESTORE.restore_original_limits()
                _THREAD_RESTORE = None


def parallel_predict(net, dtype, X_in, params, out, n_threads, rows=None, Y=None, sw=None,
                     check_finite=False):
    """``_core.predict_team``: the output layer for the rows ``rows`` of
    ``X_in`` (all if None) into ``out`` on an OpenMP team of up to
    ``n_threads`` threads (BLAS on one thread meanwhile), each taking the
    next chunk of rows when it is free (the cores of a shared machine are
    often not equally fast; an even split waits for the slower one). The
    chunks are the same whatever the number of threads, so the predictions
    and the loss (returned with targets ``Y``) are too, bit for bit."""
    n, cap = out.shape[0], net.layout.cap
    n_threads = max(1, min(n_threads, _core.max_threads(), -(-n // cap)))
    workspaces = [net.workspace(dtype, X_in.sparse) for _ in range(n_threads)]
    with one_blas_thread() if n_threads > 1 else contextlib.nullcontext():
        return _core.predict_team(net.layout, workspaces, X_in, params, out, rows, Y, sw,
                                  check_finite)
