"""The parts of the parallel epoch's cost: what the scaling model of
docs/performance.md is built from.

- phase cost: a network so small that its items take almost no time
  ([2, 2, 1], batches of 32 rows: two blocks and four slices a batch), so the
  time per batch is the work queue's own: taking items, finishing a phase,
  publishing the next, and a thread noticing it;
- the typical network's two phases (blocks: forward, loss and deltas;
  slices: gradient products and optimizer steps) per batch, on 1 and on all
  threads, from the phase timings the core keeps for measurements;
- core-to-core latency: the same queue with one item per phase, so that each
  phase hands the work from one thread to another.

The compiled core is called directly (blasprop._core.epoch), BLAS on one
thread, as the estimators call it with n_jobs set.

    python bench/sync.py
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import ALL_CORES, md_table  # noqa: E402


def _tsc_hz():
    """Ticks per second of the time-stamp counter the core's phase timings use."""
    from blasprop import _core

    t0, c0 = time.perf_counter(), _core._ticks()
    time.sleep(0.2)
    return (_core._ticks() - c0) / (time.perf_counter() - t0)


def epochs(units, n, batch, n_threads, dtype=np.float64, repeats=5):
    """Best seconds per epoch of the blocked path, and the phase timings
    (ticks in the blocks and the slices phases) of that epoch."""
    from blasprop import _core
    from blasprop._network import Network
    from blasprop._optimizer import SOLVER_CODES
    from blasprop._threads import one_blas_thread

    rng = np.random.RandomState(0)
    X = rng.standard_normal((n, units[0])).astype(dtype)
    Y = rng.standard_normal((n, units[-1])).astype(dtype)
    net = Network(units, ["relu"] * (len(units) - 2), "identity", 0, 1.0, batch)
    ws = net.workspace(dtype, False, blocked=True)
    X_in = _core.Input(X)
    params = (0.1 * rng.standard_normal(net.layout.n_params)).astype(dtype)
    grads, s1, s2 = (np.zeros_like(params) for _ in range(3))
    best = (np.inf, None)
    with one_blas_thread():
        for _ in range(repeats):
            order = rng.permutation(n).astype(np.intp)
            opt = _core.Solver(SOLVER_CODES["adam"], 1e-3, alpha=1e-4)
            t0 = time.perf_counter()
            _core.epoch(net.layout, ws, X_in, Y, np.empty(0, dtype), order, batch, params,
                        grads, s1, s2, opt, -1, n_threads)
            dt = time.perf_counter() - t0
            if dt < best[0]:
                best = (dt, _core._last_sleeps())
    return best


def run():
    hz = _tsc_hz()
    threads = sorted({1, 2, ALL_CORES})
    rows = []
    # the queue alone: items that do almost nothing
    n, batch = 64_000, 32
    for t in threads:
        dt, (sleeps, _, _) = epochs([2, 2, 1], n, batch, t)
        rows.append(["queue: [2, 2, 1], batch 32", t, f"{dt / (n // batch) * 1e6:.2f}",
                     "", "", sleeps])
    # hand-over: one block and few slices a batch, on a network whose items
    # take some microseconds
    n, batch = 20_000, 16
    for t in threads:
        dt, (sleeps, _, _) = epochs([16, 16, 1], n, batch, t)
        rows.append(["hand-over: [16, 16, 1], batch 16", t,
                     f"{dt / (n // batch) * 1e6:.2f}", "", "", sleeps])
    # the typical network's phases
    n, batch = 100_000, 200
    for dtype in (np.float64, np.float32):
        for t in threads:
            dt, (sleeps, f, g) = epochs([50, 100, 1], n, batch, t, dtype)
            nb = n // batch
            rows.append([f"typical [50, 100, 1], batch 200, {np.dtype(dtype).name}", t,
                         f"{dt / nb * 1e6:.1f}", f"{f / hz / nb * 1e6:.1f}",
                         f"{g / hz / nb * 1e6:.1f}", sleeps])
    print(md_table(["workload", "threads", "us per batch", "blocks phase, us",
                    "slices phase, us", "waits that slept"], rows))


if __name__ == "__main__":
    run()
