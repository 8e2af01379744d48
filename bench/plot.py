"""Plot the seed-workload ladder (seconds per epoch, log scale).

Reads the results.json that ``python bench/run.py`` writes (by default into
bench/out/, which git ignores); re-plot without re-measuring with
``python bench/plot.py [results.json] [out.png]``.
Skips with a message when matplotlib is not installed.
"""

import json
import os
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
SERIES = (("naive", "pure-Python loop", "#999999"), ("sklearn", "scikit-learn", "#f89939"),
          ("torch", "PyTorch eager", "#ee4c2c"), ("blasprop", "blasprop", "#2a6fdb"))


def plot_ladder(results: dict, out_png: str) -> str | None:
    """Write the ladder plot; return its path, or None (with a message) if skipped."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[plot] matplotlib not installed: skipping the ladder plot "
              "(pip install matplotlib)", file=sys.stderr)
        return None
    seed = results.get("sections", {}).get("seed")
    if not seed:
        print("[plot] no seed-workload results: skipping the ladder plot", file=sys.stderr)
        return None
    bp_label = results.get("blasprop_label", "blasprop")
    dtypes = [d for d in ("float64", "float32") if any(r["dtype"] == d for r in seed["rows"])]
    fig, axes = plt.subplots(1, len(dtypes), figsize=(6 * len(dtypes), 4.5), squeeze=False,
                             sharey=True)
    for ax, dtype in zip(axes[0], dtypes):
        rows = [r for r in seed["rows"] if r["dtype"] == dtype]
        width = 0.8 / len(SERIES)
        for k, (key, label, color) in enumerate(SERIES):
            xs, ys, floors = [], [], []
            for i, r in enumerate(rows):
                v = r.get(key)
                v = v["seconds"] if isinstance(v, dict) else v
                if v:
                    xs.append(i + (k - (len(SERIES) - 1) / 2) * width)
                    ys.append(v)
                    floors.append(r.get("blas_floor"))
            if not ys:
                continue
            if key == "blasprop":
                label = bp_label
            bars = ax.bar(xs, ys, width, label=label, color=color)
            ax.bar_label(bars, [_short(v) for v in ys], fontsize=7, rotation=90, padding=2)
            if key == "blasprop":
                # the BLAS floor (float64 rows): a bar outline at the height of
                # the epoch's matrix products alone
                fl = [(x, f) for x, f in zip(xs, floors) if f]
                if fl:
                    ax.bar([x for x, _ in fl], [f for _, f in fl], width, fill=False,
                           edgecolor="black", linestyle="--", linewidth=1,
                           label="its BLAS calls alone (floor)")
        ax.set_xticks(range(len(rows)), [f"batch {r['batch']}" for r in rows])
        ax.set_yscale("log")
        ax.set_title(f"{dtype}, one thread")
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0][0].set_ylabel("seconds per epoch (10,000 rows, log scale)")
    axes[0][0].legend(fontsize=8, loc="upper right")
    lo, hi = axes[0][0].get_ylim()
    axes[0][0].set_ylim(lo, hi * 8)   # room for the value labels
    fig.suptitle("Seed workload [39, 39, 39, 1], logistic, SGD: the ladder")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def _short(v):
    return f"{v:.3g}s" if v >= 0.1 else f"{v * 1e3:.3g}ms"


if __name__ == "__main__":
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(BENCH_DIR, "out", "results.json")
    dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(BENCH_DIR, "out", "ladder.png")
    with open(src) as f:
        out = plot_ladder(json.load(f), dst)
    if out:
        print(f"wrote {out}")
