"""Two fits at once: the wall-time speedup of fitting two models in two
threads over fitting them one after the other.

blasprop releases the GIL for each whole epoch, so two fits in two Python
threads can use two cores. BLAS is pinned to one thread (threadpoolctl), so
each fit uses one core and any speedup comes from the threads alone.

Workload: layers [784, 256, 10], relu, Adam, batch 200, 10,000 synthetic rows,
float32, a fixed number of epochs (no early stop). Sequential and threaded
runs are interleaved, ``--repeats`` times each; the medians are printed.
This is a measurement, not a test: nothing is asserted, and on a loaded
machine (see the load average printed) the numbers mean little.

    python bench/threads.py [--rows 10000] [--epochs 3] [--repeats 5]
"""

import argparse
import hashlib
import os
import resource
import statistics
import threading
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from blasprop import MLPClassifier

N_FEATURES, HIDDEN, N_CLASSES = 784, (256,), 10


def make_data(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.random((n, N_FEATURES), dtype=np.float32)
    W = rng.standard_normal((N_FEATURES, N_CLASSES)).astype(np.float32)
    y = np.argmax(X @ W + rng.standard_normal((n, N_CLASSES)), axis=1)
    return X, y


def make_model(epochs, seed):
    return MLPClassifier(HIDDEN, activation="relu", solver="adam", batch_size=200,
                         max_iter=epochs, tol=0.0, n_iter_no_change=10**9,
                         random_state=seed)


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sequential(jobs):
    c, t = cpu_seconds(), time.perf_counter()
    for est, X, y in jobs:
        est.fit(X, y)
    return time.perf_counter() - t, cpu_seconds() - c


def threaded(jobs):
    barrier = threading.Barrier(len(jobs) + 1)
    errors = []

    def run(est, X, y):
        try:
            barrier.wait()
            est.fit(X, y)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for th in threads:
        th.start()
    barrier.wait()
    c, t = cpu_seconds(), time.perf_counter()
    for th in threads:
        th.join()
    elapsed, cpu = time.perf_counter() - t, cpu_seconds() - c
    if errors:
        raise errors[0]
    return elapsed, cpu


def control_speedup(repeats):
    """The same comparison for a workload known to run in parallel (SHA-256
    of a large buffer releases the GIL): what this machine allows now."""
    buf = bytes(64 << 20)

    def work():
        for _ in range(4):
            hashlib.sha256(buf).digest()

    seq, par = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        work()
        work()
        seq.append(time.perf_counter() - t)
        threads = [threading.Thread(target=work) for _ in range(2)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        par.append(time.perf_counter() - t)
    return statistics.median(seq) / statistics.median(par)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    data = [make_data(args.rows, seed) for seed in (0, 1)]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"layers {[N_FEATURES, *HIDDEN, N_CLASSES]}, relu, adam, float32, "
          f"{args.rows:,} rows, {args.epochs} epochs per fit, 2 fits")
    print(f"cores available: {cores}; load average at start: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    def jobs():
        return [(make_model(args.epochs, seed), X, y) for seed, (X, y) in enumerate(data)]

    seq, par = [], []
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sequential(jobs())  # warm-up: first-call costs out of the timings
        for _ in range(args.repeats):
            seq.append(sequential(jobs()))
            par.append(threaded(jobs()))
        # the threaded fits give the models the sequential fits give
        a, b = jobs(), jobs()
        sequential(a)
        threaded(b)
        same = all(np.array_equal(p, q) for (ea, _, _), (eb, _, _) in zip(a, b)
                   for p, q in zip(ea.coefs_, eb.coefs_))

    s = statistics.median(w for w, _ in seq)
    p = statistics.median(w for w, _ in par)
    print()
    print("| run | median wall time | cores busy (CPU s / wall s) | wall samples |")
    print("|---|---:|---:|---|")
    for name, runs, med in (("one after the other", seq, s), ("two threads", par, p)):
        busy = sum(c for _, c in runs) / sum(w for w, _ in runs)
        samples = ", ".join(f"{w:.3f}" for w, _ in runs)
        print(f"| {name} | {med:.3f} s | {busy:.2f} | {samples} |")
    print()
    print(f"speedup of two threads: {s / p:.2f}x (ideal on >= 2 free cores: 2x)")
    print(f"control, two threads of SHA-256 (GIL-free C): "
          f"{control_speedup(args.repeats):.2f}x -- what the machine allows now")
    print(f"threaded models identical to sequential ones: {same}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
