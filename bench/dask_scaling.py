"""Dask workload: one model trained on a cluster (``blasprop.dask``), on 1
and on 2 worker processes, beside the local estimator on the same rows.

Data: 1,000,000 x 100 float64 rows (``--rows``, ``--features``,
``--dtype``) generated on the workers, never on the client:
``dask.array.random.RandomState(0).standard_normal`` in ``--partitions``
row blocks (default 4, the same for every cluster), and a two-class target
computed lazily from them (a fixed random linear function plus a sine of
another, plus noise). The blocks are computed and persisted on the workers
round-robin (block i on worker i mod W: dask's own placement can leave three
blocks on one worker and one on the other) before anything is timed.

Network: ``DaskMLPClassifier(hidden_layer_sizes=(64,))``, relu, alpha 1e-4,
``n_jobs=None`` (one thread per worker: the LocalCluster has one thread per
worker process, BLAS on one thread).

- lbfgs: ``--lbfgs-iter`` iterations (default 20), ``tol=0``. Seconds per
  evaluation of the objective: the evaluations are counted and timed in the
  client by wrapping the objective SciPy's L-BFGS-B is given (for the local
  fit too); the time from ``fit`` to the first evaluation is "setup"
  (validating and preparing the partitions where they live, initialising).
- adam: ``--adam-rounds`` rounds (default 5), ``local_epochs=1``, batch 200,
  ``tol=0`` and no early stop. Seconds per round from a callback (called on
  the client once per round), from the end of round 1 to the end of the last.
- compute per round: from Dask's task stream, the busiest worker's seconds in
  the partition tasks of one evaluation or round; overhead = wall time per
  round minus that.
- tiny data: the same fits on ``--partitions`` x 1,000 rows, whose compute is
  negligible: the fixed cost of a round on that cluster.
- local: ``blasprop.MLPClassifier`` with the same parameters and
  ``n_jobs=-1`` (all cores of this machine) on the same rows in memory
  (``--local-rows`` fewer when they do not fit), timed the same way, on an
  idle machine (the clusters are closed by then).
- memory and placement: each worker's resident memory before a fit (holding
  the data) and its peak during the fit (Linux: /proc/self/clear_refs, VmHWM);
  inputs the task stream shows copied between workers during the fit (none
  when every task runs where its partition is).
- quality: training loss (``loss_``) and accuracy on 100,000 held-out rows
  drawn from the same distribution; for lbfgs, which is exact, also the
  relative difference of the weights from the local fit's.

One timed fit per solver and cluster (each covers many evaluations/rounds).
Prints a markdown table and writes ``bench/out/dask_scaling.md`` and
``dask_scaling.json`` (``--output`` chooses another path).

    pip install "blasprop[dask]"
    python bench/dask_scaling.py                    # about 80 s on 2 cores
    python bench/dask_scaling.py --rows 100000      # a quick check
    python bench/dask_scaling.py --wait-quiet 300   # first wait for a quiet machine
"""

import argparse
import contextlib
import datetime
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    ALL_CORES,
    BENCH_DIR,
    Config,
    fmt_s,
    fmt_x,
    load_impls,
    machine_info,
    machine_md,
    md_table,
    quiet_fit,
)

HIDDEN = (64,)
BATCH = 200
TEST_ROWS = 100_000
TINY_ROWS = 1_000      # rows per partition of the tiny data set


def params(solver, args):
    common = dict(hidden_layer_sizes=HIDDEN, activation="relu", alpha=1e-4, random_state=0)
    if solver == "lbfgs":
        return dict(common, solver="lbfgs", max_iter=args.lbfgs_iter, tol=0.0)
    return dict(common, solver="adam", batch_size=BATCH, learning_rate_init=1e-3,
                max_iter=args.adam_rounds, tol=0.0, n_iter_no_change=args.adam_rounds + 1)


# --------------------------------------------------------------------------- data
def lazy_data(n, d, parts, seed=0):
    """X (n x d, float64) and a 0/1 target, as lazy dask arrays in ``parts``
    row blocks: nothing is computed here, and the graph holds only the seeds
    and two d-vectors. (The fit's dtype is applied after the blocks are
    placed: see ``place``.)"""
    import dask.array as da

    chunk = -(-n // parts)
    X = da.random.RandomState(seed).standard_normal((n, d), chunks=(chunk, d))
    noise = da.random.RandomState(seed + 1000).standard_normal(n, chunks=chunk)
    w = np.random.default_rng(12345).standard_normal((2, d)) / np.sqrt(d)
    z = X @ w[0] + da.sin(2.0 * (X @ w[1])) + 0.5 * noise
    return X, (z > 0).astype(np.int64)


def place(client, X, y, dtype):
    """X and y computed on the workers, row block i on worker i mod W, and
    returned as dask arrays of those blocks (same chunks), X in ``dtype``.

    The conversion runs after the blocks are in place: with an ``astype`` in
    the graphs of these block-by-block computes, distributed 2026.8's
    scheduler failed an internal assertion and lost a worker."""
    import dask.array as da
    import distributed

    workers = sorted(client.scheduler_info()["workers"])
    xs, ys = [], []
    for i in range(X.numblocks[0]):
        fx, fy = client.compute([X.blocks[i], y.blocks[i]], workers=[workers[i % len(workers)]])
        rows = X.chunks[0][i]
        xs.append(da.from_delayed(fx, shape=(rows, X.shape[1]), dtype=X.dtype))
        ys.append(da.from_delayed(fy, shape=(rows,), dtype=y.dtype))
    Xp, yp = client.persist([da.concatenate(xs), da.concatenate(ys)])
    if Xp.dtype != dtype:
        Xp = client.persist(Xp.astype(dtype))  # block by block, where each block is
    distributed.wait([Xp, yp])
    where = {}
    for holders in client.who_has(Xp).values():
        for w in holders:
            where[w] = where.get(w, 0) + 1
    return Xp, yp, where


# --------------------------------------------------------------------------- timing
@contextlib.contextmanager
def lbfgs_timer():
    """Wrap the objective every L-BFGS-B fit hands SciPy: each evaluation's
    start and end (time.perf_counter) go into the yielded list."""
    import scipy.optimize

    records = []
    real = scipy.optimize.minimize

    def minimize(fun, x0, *a, **kw):
        def timed(x):
            t0 = time.perf_counter()
            out = fun(x)
            records.append((t0, time.perf_counter()))
            return out

        return real(timed, x0, *a, **kw)

    scipy.optimize.minimize = minimize
    try:
        yield records
    finally:
        scipy.optimize.minimize = real


def timed_fit(est, X, y):
    """Fit once; wall seconds, setup seconds and seconds per evaluation (lbfgs)
    or per round/epoch (stochastic solvers)."""
    marks = []

    def mark(_est, info):
        marks.append(time.perf_counter())

    if est.solver != "lbfgs":
        est.set_params(callbacks=[mark])
    with quiet_fit(), lbfgs_timer() as evals:
        t0 = time.perf_counter()
        est.fit(X, y)
        wall = time.perf_counter() - t0
    est.set_params(callbacks=None)
    if est.solver == "lbfgs":
        n = len(evals)
        per = (evals[-1][1] - evals[0][0]) / n
        setup = evals[0][0] - t0
    else:
        n = len(marks)
        per = (marks[-1] - marks[0]) / (n - 1) if n > 1 else marks[0] - t0
        setup = max(0.0, marks[0] - t0 - per)
    return {"wall_s": wall, "setup_s": setup, "per_round_s": per, "rounds": n,
            "n_iter": int(est.n_iter_), "loss": float(est.loss_),
            "loss_curve": [float(v) for v in getattr(est, "loss_curve_", [])]}


def busiest_compute(stream, prefix, n_rounds):
    """Seconds per round the busiest worker spent computing tasks whose key
    starts with ``prefix`` (from the task stream)."""
    per_worker = {}
    for rec in stream:
        key = rec["key"] if isinstance(rec["key"], str) else str(rec["key"])
        if not key.startswith(prefix):
            continue
        busy = sum(s["stop"] - s["start"] for s in rec["startstops"] if s["action"] == "compute")
        per_worker[rec["worker"]] = per_worker.get(rec["worker"], 0.0) + busy
    return max(per_worker.values()) / n_rounds if per_worker else None, per_worker


def transfers(stream):
    """Inputs copied from worker to worker during the fit (the task stream's
    "transfer" steps) and their seconds: none, when every task runs where
    its partition is."""
    steps = [s for rec in stream for s in rec["startstops"] if s["action"] == "transfer"]
    return len(steps), sum(s["stop"] - s["start"] for s in steps)


TASK = {"lbfgs": "_partition_sums", "adam": "_local_round"}


def run_cluster(n_workers, args, X_lazy, y_lazy, tiny):
    import distributed
    from distributed import Client, LocalCluster

    from blasprop.dask import DaskMLPClassifier

    dtype = np.dtype(args.dtype)
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           host="127.0.0.1", scheduler_port=0,
                           dashboard_address="127.0.0.1:0", worker_dashboard_address=None)
    client = Client(cluster)
    out = {"workers": n_workers}
    try:
        t0 = time.perf_counter()
        X, y, where = place(client, X_lazy, y_lazy, dtype)
        out["generate_s"] = time.perf_counter() - t0
        out["blocks_per_worker"] = sorted(where.values())
        Xt, yt, _ = place(client, *tiny, dtype)
        print(f"[dask] {n_workers} worker(s): data generated and persisted in "
              f"{out['generate_s']:.1f} s, blocks per worker {out['blocks_per_worker']}",
              file=sys.stderr, flush=True)
        # the tiny fits first: they also take the workers' first-call costs
        # (imports) out of the timed fits
        tiny_s = {solver: timed_fit(DaskMLPClassifier(**params(solver, args), client=client),
                                    Xt, yt)["per_round_s"] for solver in ("lbfgs", "adam")}
        for solver in ("lbfgs", "adam"):
            est = DaskMLPClassifier(**params(solver, args), client=client)
            rss = client.run(_reset_peak_memory)
            with distributed.get_task_stream(client=client) as ts:
                res = timed_fit(est, X, y)
            peak = client.run(_peak_memory)
            res["rss_before_mb"] = [_mb(rss[w]) for w in sorted(rss)]
            res["rss_peak_mb"] = [_mb(peak[w]) for w in sorted(peak)]
            res["compute_s"], busy = busiest_compute(ts.data, TASK[solver], res["rounds"])
            res["compute_by_worker_s"] = busy
            res["transfers"], res["transfer_s"] = transfers(ts.data)
            res["model"] = est.to_local()
            res["tiny_per_round_s"] = tiny_s[solver]
            out[solver] = res
            print(f"[dask] {n_workers} worker(s), {solver}: {res['rounds']} "
                  f"{'evaluations' if solver == 'lbfgs' else 'rounds'}, "
                  f"{fmt_s(res['per_round_s'])} each (busiest worker computing "
                  f"{fmt_s(res['compute_s'])}), tiny data {fmt_s(res['tiny_per_round_s'])}",
                  file=sys.stderr, flush=True)
    finally:
        client.close()
        cluster.close()
    return out


def _status_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:  # not Linux
        pass
    return None


def _reset_peak_memory():
    """This process's resident memory now (kB), after resetting its peak
    (Linux: /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _status_kb("VmRSS")


def _peak_memory():
    """Peak resident memory (kB) since the last reset."""
    return _status_kb("VmHWM")


def _mb(kb):
    return None if kb is None else kb / 1024


def run_local(args, X_lazy, y_lazy, tiny):
    from blasprop import MLPClassifier

    dtype = np.dtype(args.dtype)
    n = min(args.local_rows or X_lazy.shape[0], X_lazy.shape[0])
    t0 = time.perf_counter()
    X = X_lazy[:n].astype(dtype).compute(scheduler="threads")
    y = y_lazy[:n].compute(scheduler="threads")
    Xt = tiny[0].astype(dtype).compute(scheduler="threads")
    yt = tiny[1].compute(scheduler="threads")
    print(f"[local] {n:,} rows in memory ({X.nbytes / 1e6:,.0f} MB) in "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    out = {"rows": n}
    for solver in ("lbfgs", "adam"):
        tiny_s = timed_fit(MLPClassifier(**params(solver, args), n_jobs=-1),
                           Xt, yt)["per_round_s"]
        est = MLPClassifier(**params(solver, args), n_jobs=-1)
        res = timed_fit(est, X, y)
        res["model"] = est
        res["tiny_per_round_s"] = tiny_s
        out[solver] = res
        print(f"[local] {solver}: {res['rounds']} "
              f"{'evaluations' if solver == 'lbfgs' else 'epochs'}, "
              f"{fmt_s(res['per_round_s'])} each", file=sys.stderr, flush=True)
    return out


def n_params(d):
    units = [d, *HIDDEN, 1]
    return sum(a * b + b for a, b in zip(units[:-1], units[1:]))


# --------------------------------------------------------------------------- report
def report(args, results, local, test, info, elapsed):
    Xte, yte = test
    itemsize = np.dtype(args.dtype).itemsize
    P = n_params(args.features)
    K = args.partitions
    base = {s: results[0][s]["per_round_s"] for s in ("lbfgs", "adam")}
    rows, data = [], []
    for solver in ("lbfgs", "adam"):
        entries = [(f"dask, {r['workers']} worker{'s' if r['workers'] > 1 else ''}", r[solver])
                   for r in results]
        if local is not None:
            entries.append((f"local, n_jobs=-1 ({ALL_CORES} threads)", local[solver]))
        for where, r in entries:
            acc = float(r["model"].score(Xte, yte))
            diff = ""
            if solver == "lbfgs" and local is not None and not where.startswith("local"):
                a = np.concatenate([w.ravel() for w in r["model"].coefs_ + r["model"].intercepts_])
                b = np.concatenate([w.ravel() for w in local["lbfgs"]["model"].coefs_
                                    + local["lbfgs"]["model"].intercepts_])
                diff = f"{np.linalg.norm(a - b) / np.linalg.norm(b):.1e}"
            compute = r.get("compute_s")
            overhead = None if compute is None else r["per_round_s"] - compute
            unit = ("evaluations" if solver == "lbfgs"
                    else "epochs" if where.startswith("local") else "rounds")
            rows.append([solver, where, f"{r['rounds']} {unit}", fmt_s(r["per_round_s"]),
                         fmt_x(base[solver], r["per_round_s"]),
                         fmt_s(compute) if compute is not None else "",
                         fmt_s(overhead) if overhead is not None else "",
                         fmt_s(r["tiny_per_round_s"]), f"{r['setup_s']:.2f} s",
                         f"{r['loss']:.4f}", f"{acc:.4f}", diff])
            data.append({"solver": solver, "where": where, "test_accuracy": acc,
                         "weights_vs_local": diff,
                         **{k: v for k, v in r.items() if k != "model"}})
    first = results[0]["workers"]
    headers = ["solver", "where", "timed", "s per evaluation / round",
               f"speed-up vs {first} worker{'s' if first > 1 else ''}",
               "busiest worker computing", "overhead", "tiny data (fixed cost)", "setup",
               "training loss", "test accuracy", "‖Δw‖/‖w‖ vs local"]
    kb = P * itemsize / 1e3

    def same_model(solver):
        models = [r[solver]["model"] for r in results]
        return all(all(np.array_equal(a, b) for a, b in zip(m.coefs_ + m.intercepts_,
                                                            models[0].coefs_
                                                            + models[0].intercepts_))
                   for m in models[1:])

    same = ", ".join(f"{s} {'yes' if same_model(s) else 'NO'}" for s in TASK)
    curves = ["by round (dask): "
              + ", ".join(f"{v:.4f}" for v in results[0]["adam"]["loss_curve"])]
    if local is not None:
        curves.append("by epoch (local): "
                      + ", ".join(f"{v:.4f}" for v in local["adam"]["loss_curve"]))
    local_line = ("" if local is None else
                  f" The local rows: `blasprop.MLPClassifier(..., n_jobs=-1)` on "
                  f"{local['rows']:,} rows in this process, same parameters (one lbfgs "
                  "iteration or adam epoch per row of the table).")
    md = (
        f"{args.rows:,} x {args.features} {args.dtype} rows "
        f"({args.rows * args.features * itemsize / 1e6:,.0f} MB) generated on the workers in "
        f"{K} partitions; hidden {HIDDEN}, relu, two classes; lbfgs {args.lbfgs_iter} "
        f"iterations (tol=0), adam {args.adam_rounds} rounds of local_epochs=1, batch "
        f"{BATCH}. LocalCluster worker processes with one thread each on this "
        f"{ALL_CORES}-core machine; one timed fit each. *busiest worker computing*: from "
        "the task stream, per evaluation or round; *overhead*: the rest of the wall time; "
        f"*tiny data*: the same fit on {K} x {TINY_ROWS:,} rows. Test accuracy on "
        f"{TEST_ROWS:,} held-out rows.{local_line}\n\n"
        + md_table(headers, rows)
        + f"\n\nP = {P:,} parameters ({kb:,.1f} kB in {args.dtype}). Per lbfgs evaluation "
        f"the client sends the point to each of the {K} partition tasks and gets back a "
        f"loss, a weight and a gradient: 2 x {K} x {kb:,.1f} kB = "
        f"{2 * K * kb:,.0f} kB through the client. Per adam round it sends parameters and "
        f"both moment vectors to each partition and gets them back: 2 x {K} x 3 x "
        f"{kb:,.1f} kB = {6 * K * kb:,.0f} kB.\n\n"
        f"The same model, bit for bit, on every cluster: {same}. adam's training loss "
        + "; ".join(curves) + ".\n\n"
        + "\n".join(f"- {r['workers']} worker(s): data generated and persisted in "
                    f"{r['generate_s']:.1f} s, blocks per worker {r['blocks_per_worker']}; "
                    "resident memory per worker before the fit (holding the data) / peak "
                    "during it: " + "; ".join(
                        f"{s} " + ", ".join(f"{_fmt_mb(a)} / {_fmt_mb(b)}" for a, b in
                                            zip(r[s]["rss_before_mb"], r[s]["rss_peak_mb"]))
                        for s in ("lbfgs", "adam")) + "; "
                    "inputs copied between workers during the fit: " + "; ".join(
                        f"{s} {r[s]['transfers']} ({r[s]['transfer_s']:.2f} s)"
                        for s in ("lbfgs", "adam")) + "; "
                    "busiest-worker compute by worker (s, whole fit): "
                    + "; ".join(f"{s}: " + ", ".join(f"{v:.2f}" for v in
                                                     r[s]["compute_by_worker_s"].values())
                                for s in ("lbfgs", "adam"))
                    for r in results))
    cmd = " ".join(["python bench/dask_scaling.py", *sys.argv[1:]])
    date = datetime.datetime.now().isoformat(timespec="seconds")
    doc = ["# blasprop.dask scaling\n",
           f"Measured {date} with `{cmd}` in {elapsed:.0f} s (1-min load average "
           f"{info['loadavg_1m']} at start, {os.getloadavg()[0]:.2f} at end).\n",
           "## Machine\n", machine_md(info) + "\n",
           f"- dask {_version('dask')}, distributed {_version('distributed')}\n",
           "## One model on 1 and 2 workers\n", md + "\n"]
    return md, "\n".join(doc), {"date": date, "argv": sys.argv[1:], "args": vars(args),
                                "machine": info, "elapsed_s": round(elapsed, 1),
                                "parameters": P, "rows": data,
                                "clusters": [{k: v for k, v in r.items()
                                              if k not in ("lbfgs", "adam")} for r in results]}


def _fmt_mb(mb):
    return "n/a" if mb is None else f"{mb:,.0f} MB"


def _version(name):
    try:
        return __import__(name).__version__
    except ImportError:
        return "not installed"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--workers", default="1,2", help="cluster sizes, comma-separated")
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--lbfgs-iter", type=int, default=20)
    ap.add_argument("--adam-rounds", type=int, default=5)
    ap.add_argument("--local-rows", type=int, default=None,
                    help="rows of the local reference fits (default: all; 0 skips them)")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                    help="first wait up to SECONDS for the load average to drop below 0.5")
    ap.add_argument("--output", default=os.path.join(BENCH_DIR, "out", "dask_scaling.md"),
                    help="markdown report (the .json goes beside it; default bench/out/, "
                         "ignored by git)")
    args = ap.parse_args(argv)
    if args.adam_rounds < 2:
        ap.error("--adam-rounds must be at least 2 (seconds per round are timed between rounds)")
    workers = [int(w) for w in args.workers.split(",")]

    if args.wait_quiet:
        from run import wait_quiet

        wait_quiet(args.wait_quiet)
    info = machine_info(load_impls(Config.make(use_torch=False)))
    started = time.time()
    dtype = np.dtype(args.dtype)
    X_lazy, y_lazy = lazy_data(args.rows, args.features, args.partitions)
    tiny = lazy_data(args.partitions * TINY_ROWS, args.features, args.partitions, seed=7)
    Xte, yte = lazy_data(TEST_ROWS, args.features, 1, seed=99)
    Xte, yte = Xte.astype(dtype).compute(scheduler="threads"), yte.compute(scheduler="threads")
    print(f"# blasprop.dask scaling\n\n{machine_md(info)}\n", flush=True)

    results = [run_cluster(w, args, X_lazy, y_lazy, tiny) for w in workers]
    local = None
    if args.local_rows != 0:
        local = run_local(args, X_lazy, y_lazy, tiny)
    elapsed = time.time() - started
    md, doc, data = report(args, results, local, (Xte, yte), info, elapsed)
    print(f"## One model on 1 and 2 workers\n\n{md}\n", flush=True)

    out_dir = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(out_dir, exist_ok=True)
    with open(args.output, "w") as f:
        f.write(doc)
    with open(os.path.splitext(args.output)[0] + ".json", "w") as f:
        json.dump(data, f, indent=1, default=float)
    print(f"[dask] wrote {args.output} in {elapsed:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
