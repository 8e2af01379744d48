"""Run the blasprop benchmarks: ``python bench/run.py [--quick] [--only seed,large,predict]``.

Prints markdown tables of blasprop beside scikit-learn and PyTorch (when
installed), all measured in this run, and writes them with a description of
the machine to bench/out/results.md (raw numbers to results.json, the
seed-workload ladder plot to ladder.png beside it; bench/out/ is ignored by
git). The snapshot the README shows is bench/snapshot/, replaced by hand at a
release. See bench/README.md.
"""

import argparse
import datetime
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import large  # noqa: E402
import plot  # noqa: E402
import predict  # noqa: E402
import seed  # noqa: E402
import typical  # noqa: E402
from _common import ALL_CORES, BENCH_DIR, Config, load_impls, machine_info, machine_md, md_table  # noqa: E402

WORKLOADS = {"seed": seed.run, "large": large.run, "predict": predict.run,
             "typical": typical.run}


def goals(sections: dict, real_blasprop: bool) -> str:
    """Measured ratios against the project's goals (reported, never asserted)."""
    rows = []

    def ratio(row, other):
        if row is None or other not in row or "blasprop" not in row:
            return None
        return row[other]["seconds"] / row["blasprop"]["seconds"]

    def add(goal, target, value, fmt="{:.3g}x", bound=None):
        if value is None:
            status = "not measured"
        elif not real_blasprop:
            status = "stand-in, not blasprop"
        else:
            status = "met" if value >= target else "MISSED"
            if bound is not None and bound < value:
                # blasprop beat its own calls' floor: that timing was disturbed.
                status += " (BLAS floor disturbed in this run: below the measured ratio)"
            elif bound is not None and bound < target:
                status += " (out of reach: the BLAS floor allows at most " + fmt.format(bound) + ")"
        shown = "n/a" if value is None else fmt.format(value)
        rows.append([goal, fmt.format(target), shown,
                     "" if bound is None else fmt.format(bound), status])

    def bound(row, other):
        if row is None or not row.get("blas_floor") or other not in row:
            return None
        return row[other]["seconds"] / row["blas_floor"]

    def find(key, **match):
        for r in sections.get(key, {}).get("rows", []):
            if all(r.get(k) == v for k, v in match.items()):
                return r
        return None

    if "seed" in sections:
        for batch, target in ((1, 100), (32, 12), (200, 5)):
            r = find("seed", dtype="float64", batch=batch)
            add(f"seed f64 1 thread, batch {batch}: sklearn / blasprop", target,
                ratio(r, "sklearn"), bound=bound(r, "sklearn"))
            add(f"seed f64 1 thread, batch {batch}: torch / blasprop", target, ratio(r, "torch"),
                bound=bound(r, "torch"))
    if "large" in sections:
        r = find("large", dtype="float32")
        add("large f32 all cores: sklearn / blasprop", 2, ratio(r, "sklearn"))
        add("large f32 all cores: torch / blasprop", 1.2, ratio(r, "torch"))
        frac = r["gemm"] / r["blasprop"]["seconds"] if r and "blasprop" in r else None
        add("large f32 all cores: gemm-bound fraction", 0.8, frac, "{:.0%}")
    if "predict" in sections:
        for net, target in (("seed", 2), ("large", 1.2)):
            for dtype in ("float64", "float32"):
                r = next((x for x in sections["predict"]["rows"]
                          if x["net"].startswith(net) and x["dtype"] == dtype), None)
                add(f"predict {net} net {dtype}: torch no_grad / blasprop", target,
                    ratio(r, "torch"))
    if "typical" in sections:
        t = sections["typical"]
        cores = t.get("threads")

        def row_of(prefix, dtype, key="rows"):
            return next((r for r in t.get(key, []) if r["case"].startswith(prefix)
                         and r["dtype"] == dtype), None)

        def over(r, a, b):
            if r is None or a not in r or b not in r:
                return None
            return r[a]["seconds"] / r[b]["seconds"]

        for dtype, vs_sk in (("float64", 6), ("float32", 9)):
            r = row_of("typical", dtype)
            add(f"typical {dtype} {cores} threads: own 1 thread / all cores", 1.8,
                over(r, "blasprop 1", "blasprop all"))
            add(f"typical {dtype}: sklearn (all cores) / blasprop (all cores)", vs_sk,
                over(r, "sklearn", "blasprop all"))
        add(f"seed batch 200 float64 {cores} threads: own 1 thread / all cores", 1.5,
            over(row_of("seed", "float64"), "blasprop 1", "blasprop all"))
        add(f"large float32 {cores} threads: own 1 thread / all cores", 1.4,
            over(row_of("large", "float32"), "blasprop 1", "blasprop all"))
        add("large float32 all cores: whole-epoch jit JAX / blasprop", 1.0,
            over(row_of("large", "float32"), "jax", "blasprop all"))
        for prefix in ("typical", "large"):
            r = row_of(prefix, "float64" if prefix == "typical" else "float32", "under_load")
            v = over(r, "blasprop 1", "blasprop all")
            # the goal is all-cores time <= 1.3 x one-thread time under load
            add(f"{prefix} under load: 1.3 x n_jobs=1 time / n_jobs=-1 time", 1.0,
                None if v is None else 1.3 * v, "{:.2f}")
    return md_table(["goal", "target", "measured", "BLAS-floor bound", "status"], rows)


def wait_quiet(limit_s: float, threshold=0.5):
    """Wait (at most limit_s) for the 1-minute load average to drop below threshold."""
    t0 = time.time()
    while os.getloadavg()[0] >= threshold and time.time() - t0 < limit_s:
        print(f"[bench] load average {os.getloadavg()[0]:.2f}, waiting for a quieter machine",
              file=sys.stderr, flush=True)
        time.sleep(15)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="short run (fewer repeats, smaller time budgets): a couple of minutes")
    ap.add_argument("--only", default=",".join(WORKLOADS),
                    help="comma-separated workloads to run (default: seed,large,predict,typical)")
    ap.add_argument("--repeats", type=int, help="timed samples per measurement (median kept)")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    ap.add_argument("--no-plot", action="store_true", help="do not write the ladder plot")
    ap.add_argument("--standin", action="store_true",
                    help="if blasprop is not importable, time sklearn in its place "
                         "(labelled 'blasprop*'; for testing these scripts only)")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                    help="first wait up to SECONDS for the load average to drop below 0.5")
    ap.add_argument("--output", default=os.path.join(BENCH_DIR, "out", "results.md"),
                    help="markdown report path (results.json and ladder.png go beside it; "
                         "default bench/out/, ignored by git)")
    a = ap.parse_args(argv)
    only = [w.strip() for w in a.only.split(",") if w.strip()]
    unknown = set(only) - set(WORKLOADS)
    if unknown:
        ap.error(f"unknown workload(s) {sorted(unknown)}; choose from {list(WORKLOADS)}")

    if a.wait_quiet:
        wait_quiet(a.wait_quiet)
    cfg = Config.make(a.quick, a.repeats, use_torch=not a.no_torch, standin=a.standin)
    impls = load_impls(cfg)
    info = machine_info(impls)
    started = time.time()
    print(f"# blasprop benchmarks{' (--quick)' if cfg.quick else ''}\n\n{machine_md(info)}\n",
          flush=True)

    sections = {}
    parts = []
    for name in only:
        t0 = time.time()
        sec = WORKLOADS[name](cfg, impls)
        print(f"[bench] {name}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        sections[name] = sec.data
        parts.append(f"## {sec.title}\n\n{sec.markdown}\n")
        print(parts[-1], flush=True)

    real = impls.blasprop is not None and impls.blasprop_label == "blasprop"
    goal_md = goals(sections, real)
    print(f"## Goals\n\n{goal_md}\n")
    elapsed = time.time() - started
    end_load = os.getloadavg()[0]

    out_dir = os.path.dirname(os.path.abspath(a.output))
    os.makedirs(out_dir, exist_ok=True)
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
               "argv": sys.argv[1:], "config": vars(cfg), "machine": info,
               "blasprop_label": impls.blasprop_label, "blasprop_error": impls.blasprop_error,
               "elapsed_s": round(elapsed, 1), "loadavg_1m_end": round(end_load, 2),
               "sections": sections}
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    png = None
    if not a.no_plot and "seed" in sections:
        png = plot.plot_ladder(results, os.path.join(out_dir, "ladder.png"))

    cmd = "python bench/run.py" + ("" if not sys.argv[1:] else " " + " ".join(sys.argv[1:]))
    md = ["# blasprop benchmark results\n",
          f"Measured {results['date']} with `{cmd}` in {elapsed:.0f} s "
          f"(1-min load average {info['loadavg_1m']} at start, {end_load:.2f} at end; "
          "the machine may be shared, so compare columns within a row: they were timed "
          "interleaved in the same run).\n",
          "## Machine\n", machine_md(info) + "\n"]
    if max(info["loadavg_1m"] or 0, end_load) >= ALL_CORES:
        md.append(f"**The load average reached the core count ({ALL_CORES}) during this run: "
                  "other work shared the CPU, so the all-cores rows (BLAS-bound workload, "
                  "inference) are much noisier than the one-thread rows.**\n")
    if not real:
        md.append("**blasprop was not importable for this run"
                  + (": scikit-learn stood in for it (`blasprop*`)." if impls.blasprop else ".")
                  + f"** ({impls.blasprop_error})\n")
    md += parts
    md += ["## Goals\n", "Ratios are speedups (other library's time / blasprop's time); "
           "reported, not asserted. *BLAS-floor bound*: the other library's time divided by "
           "the seed epoch's BLAS calls alone (see the seed table), the most any ratio of "
           "blasprop's design could reach on this machine.\n", goal_md + "\n"]
    if png:
        md.append(f"![seed-workload ladder]({os.path.basename(png)})\n")
    with open(a.output, "w") as f:
        f.write("\n".join(md))
    print(f"[bench] wrote {a.output}" + (f" and {png}" if png else "")
          + f" in {elapsed:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
