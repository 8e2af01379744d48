"""Seed workload: the small network of the seed question, one BLAS thread.

Layers [39, 39, 39, 1] (``hidden_layer_sizes=(39, 39)``), logistic hidden
units, squared error (MLPRegressor), plain SGD (momentum 0, learning rate
0.01, shuffled), 10,000 x 39 synthetic rows; batch 1, 32 and 200 in float64
and float32.  Reports seconds per epoch for the pure-Python loop (float64,
batch 1 only), scikit-learn, PyTorch eager and blasprop.

    python bench/seed.py [--quick] [--standin] [--no-torch]
"""

import statistics
import time

import floor
import naive
import numpy as np
from _common import (
    Config,
    Section,
    compare_epochs,
    estimator_trainer,
    fmt_s,
    fmt_x,
    md_table,
    pinned_threads,
    standalone,
    threads_line,
    torch_dtype,
    torch_trainer,
)

N_ROWS, N_FEATURES, HIDDEN = 10_000, 39, (39, 39)
BATCHES = (1, 32, 200)
DTYPES = (np.float64, np.float32)


def make_data(n=N_ROWS, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, N_FEATURES))
    w = rng.standard_normal(N_FEATURES) / np.sqrt(N_FEATURES)
    y = np.tanh(X @ w) + 0.1 * rng.standard_normal(n)
    return X, y


def sk_params(batch):
    return dict(hidden_layer_sizes=HIDDEN, activation="logistic", solver="sgd",
                momentum=0.0, learning_rate_init=0.01, shuffle=True,
                batch_size=batch, random_state=0)


def torch_seed_trainer(torch, X, y, batch):
    nn, dt = torch.nn, torch_dtype(torch, X.dtype)

    def model():
        return nn.Sequential(nn.Linear(39, 39), nn.Sigmoid(), nn.Linear(39, 39),
                             nn.Sigmoid(), nn.Linear(39, 1)).to(dt)

    return torch_trainer(torch, X, y.reshape(-1, 1), batch, model, nn.MSELoss,
                         lambda m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.0))


def time_naive(X, y, cfg):
    """Seconds per 10,000-row epoch of the pure-Python loop, extrapolated
    from ``cfg.naive_rows`` rows (median of repeats)."""
    rows = cfg.naive_rows
    Xl, yl = X[:rows].tolist(), y[:rows].tolist()
    samples = []
    for r in range(cfg.repeats):
        w, b = naive.init_net([N_FEATURES, *HIDDEN, 1], seed=r)
        t0 = time.perf_counter()
        naive.train_epoch(w, b, Xl, yl, lr=0.01, seed=r)
        samples.append((time.perf_counter() - t0) * N_ROWS / rows)
    return statistics.median(samples), samples, f"extrapolated from {rows:,} rows"


def run(cfg: Config, impls) -> Section:
    """Seed workload (seconds per epoch, one thread)."""
    X64, y64 = make_data()
    tr = impls.torch
    data, notes = [], []
    with pinned_threads(1, tr):
        nv, nv_samples, nv_note = time_naive(X64, y64, cfg)
        notes.append(f"naive Python: {nv_note}")
        for dtype in DTYPES:
            X, y = X64.astype(dtype), y64.astype(dtype)
            for batch in BATCHES:
                trains = {"sklearn": estimator_trainer(
                    impls.sklearn.MLPRegressor, X, y, **sk_params(batch))}
                if tr is not None:
                    trains["torch"] = torch_seed_trainer(tr, X, y, batch)
                if impls.blasprop is not None:
                    trains["blasprop"] = estimator_trainer(
                        impls.blasprop.MLPRegressor, X, y, **sk_params(batch))
                # The floor is timed before and after the libraries and the
                # faster kept, so one burst of load elsewhere on a shared
                # machine does not decide it.
                timed = dtype is np.float64
                fl0 = floor.blas_floor(batch) if timed else None
                m = compare_epochs(trains, N_ROWS, batch, cfg)
                fl, fl_note = floor.faster(fl0, floor.blas_floor(batch)) if timed else (None, "")
                row = {"dtype": np.dtype(dtype).name, "batch": batch,
                       "naive": nv if (dtype is np.float64 and batch == 1) else None,
                       "blas_floor": fl, "blas_floor_note": fl_note,
                       **{k: v.as_dict() for k, v in m.items()}}
                if dtype is np.float64 and batch == BATCHES[0]:
                    notes.append(f"BLAS floor: {fl_note}" if fl is not None
                                 else f"BLAS floor not measured: {fl_note}")
                data.append(row)
                for k, v in m.items():
                    if v.note.startswith("extrapolated"):
                        notes.append(f"{k}, {row['dtype']}, batch {batch}: {v.note}")
                print(f"[seed] {row['dtype']} batch {batch}: " + ", ".join(
                    f"{k} {fmt_s(v.seconds)}" for k, v in m.items()), flush=True)

    def s(row, k):
        return row[k]["seconds"] if isinstance(row.get(k), dict) else row.get(k)

    bp = impls.blasprop_label
    headers = ["dtype", "batch", "naive Python", "sklearn", "torch", bp, "BLAS floor",
               f"sklearn / {bp}", f"torch / {bp}", f"naive / {bp}", "sklearn / floor"]
    rows = [[r["dtype"], r["batch"], fmt_s(s(r, "naive")) if s(r, "naive") else "",
             fmt_s(s(r, "sklearn")), fmt_s(s(r, "torch")), fmt_s(s(r, "blasprop")),
             fmt_s(r["blas_floor"]) if r["blas_floor"] else "",
             fmt_x(s(r, "sklearn"), s(r, "blasprop")), fmt_x(s(r, "torch"), s(r, "blasprop")),
             fmt_x(s(r, "naive"), s(r, "blasprop")) if s(r, "naive") else "",
             fmt_x(s(r, "sklearn"), r["blas_floor"]) if r["blas_floor"] else ""]
            for r in data]
    md = (f"Seconds per epoch of {N_ROWS:,} rows, layers [39, 39, 39, 1], logistic, "
          f"squared error, SGD lr 0.01 momentum 0; median of {cfg.repeats}; "
          f"{threads_line(1, tr)}. *BLAS floor*: the float64 epoch's matrix products "
          "alone, through the same BLAS with the call kinds blasprop uses (blas_floor.c); "
          "*sklearn / floor* is the largest speedup over scikit-learn that those "
          "BLAS calls leave room for.\n\n"
          + md_table(headers, rows) + "\n\n"
          + "\n".join(f"- {n}" for n in notes) + impls.standin_note)
    return Section("seed", "Seed workload: [39, 39, 39, 1], SGD, one thread", md,
                   {"rows": data, "naive_samples": nv_samples, "threads": 1})


if __name__ == "__main__":
    standalone(run)
