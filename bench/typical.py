"""Threads workload: blasprop on one thread and on all cores (``n_jobs``).

Typical tabular network (scikit-learn's defaults: hidden (100,), relu,
Adam, batch 200; MLPClassifier, two classes) on 100,000 x 50 and
1,000,000 x 20 synthetic rows (25,000 and 250,000 with ``--quick``),
float64 and float32; and the seed network (batch 200) and the large network
of the other workloads, all with:

- scikit-learn and PyTorch eager with all cores,
- blasprop with ``n_jobs=None`` (scikit-learn's order of sums, one thread),
- blasprop with ``n_jobs=1`` and with ``n_jobs=-1`` (the blocked path, whose
  model does not depend on the number of threads);
- for the large network, when jax is installed, a whole-epoch jit-compiled
  JAX loop (all cores: XLA's own pool).

Then the same blasprop fits of the typical and large networks while another
process keeps one core busy ("under load"), n_jobs=1 against n_jobs=-1.

    python bench/typical.py [--quick] [--no-torch]
"""

import contextlib
import multiprocessing

import large
import numpy as np
import seed
from _common import (
    ALL_CORES,
    Config,
    Section,
    compare_epochs,
    estimator_trainer,
    fmt_s,
    fmt_x,
    jax_trainer,
    md_table,
    standalone,
    torch_dtype,
    torch_trainer,
)

HIDDEN, BATCH = (100,), 200
SHAPES = ((100_000, 50), (1_000_000, 20))
DTYPES = (np.float64, np.float32)


def make_data(n, n_features, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    w = rng.standard_normal(n_features)
    y = (X @ w + 0.5 * rng.standard_normal(n) > 0).astype(np.int64)
    return X, y


def sk_params():
    return dict(hidden_layer_sizes=HIDDEN, activation="relu", solver="adam",
                batch_size=BATCH, shuffle=True, random_state=0)


@contextlib.contextmanager
def _threads(n, torch=None):
    from threadpoolctl import threadpool_limits

    old = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=n):
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(old)


def _pinned(train, n, torch=None):
    """``train`` run with every BLAS/OpenMP pool (and torch) limited to n threads."""

    def run(rows, epochs):
        with _threads(n, torch):
            return train(rows, epochs)

    return run


def torch_typical_trainer(torch, X, y):
    nn = torch.nn
    dt = torch_dtype(torch, X.dtype)
    return torch_trainer(
        torch, X, y.astype(X.dtype).reshape(-1, 1), BATCH,
        lambda: nn.Sequential(nn.Linear(X.shape[1], 100), nn.ReLU(),
                              nn.Linear(100, 1)).to(dt),
        nn.BCEWithLogitsLoss, lambda m: torch.optim.Adam(m.parameters(), lr=1e-3))


def _cases(cfg, impls):
    """(label, n_rows, batch, X, y, estimator class name, params, torch trainer)."""
    scale = 4 if cfg.quick else 1
    for n, d in SHAPES:
        n //= scale
        X64, y = make_data(n, d)
        for dtype in DTYPES:
            X = X64.astype(dtype)
            yield (f"typical {n:,} x {d}", n, BATCH, X, y, "MLPClassifier", sk_params(),
                   None if impls.torch is None else torch_typical_trainer(impls.torch, X, y))
    Xs, ys = seed.make_data()
    for dtype in DTYPES:
        X = Xs.astype(dtype)
        yield ("seed [39, 39, 39, 1], batch 200", len(X), 200, X, ys.astype(dtype),
               "MLPRegressor", seed.sk_params(200),
               None if impls.torch is None else seed.torch_seed_trainer(
                   impls.torch, X, ys.astype(dtype), 200))
    n = cfg.large_rows // scale
    Xl, yl = large.make_data(n)
    X = Xl.astype(np.float32)
    yield ("large [784, 512, 512, 10]", n, large.BATCH, X, yl, "MLPClassifier",
           large.sk_params(), None if impls.torch is None else large.torch_large_trainer(
               impls.torch, X, yl))


def _have_jax():
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def _busy():
    while True:
        pass


@contextlib.contextmanager
def one_core_busy():
    """Another process spinning on one core for the duration."""
    proc = multiprocessing.get_context("spawn").Process(target=_busy, daemon=True)
    proc.start()
    try:
        yield
    finally:
        proc.terminate()
        proc.join()


def run(cfg: Config, impls) -> Section:
    """blasprop on one thread and on all cores, beside scikit-learn and PyTorch."""
    tr = impls.torch
    data, notes, load_rows = [], [], []
    for label, n, batch, X, y, cls_name, params, torch_train in _cases(cfg, impls):
        dtype = np.dtype(X.dtype).name
        trains = {"sklearn": _pinned(estimator_trainer(getattr(impls.sklearn, cls_name),
                                                       X, y, **params), ALL_CORES)}
        if torch_train is not None:
            trains["torch"] = _pinned(torch_train, ALL_CORES, tr)
        if label.startswith("large") and _have_jax():
            trains["jax"] = jax_trainer(X, y, large.LAYERS, batch)
        bp = impls.blasprop
        if bp is not None:
            cls = getattr(bp, cls_name)
            trains["blasprop None"] = _pinned(estimator_trainer(cls, X, y, **params), 1)
            trains["blasprop 1"] = _pinned(estimator_trainer(cls, X, y, n_jobs=1, **params), 1)
            trains["blasprop all"] = _pinned(
                estimator_trainer(cls, X, y, n_jobs=-1, **params), ALL_CORES)
        m = compare_epochs(trains, n, batch, cfg)
        row = {"case": label, "dtype": dtype, **{k: v.as_dict() for k, v in m.items()}}
        data.append(row)
        notes += [f"{label}, {dtype}, {k}: {v.note}" for k, v in m.items()]
        print(f"[typical] {label} {dtype}: " + ", ".join(
            f"{k} {fmt_s(v.seconds)}" for k, v in m.items()), flush=True)
        if bp is not None and (label.startswith("typical") and n == max(
                r[0] for r in SHAPES) // (4 if cfg.quick else 1) or label.startswith("large")):
            with one_core_busy():
                u = compare_epochs({k: trains[k] for k in ("blasprop 1", "blasprop all")},
                                   n, batch, cfg)
            load_rows.append({"case": label, "dtype": dtype,
                              **{k: v.as_dict() for k, v in u.items()}})
            print(f"[typical] under load, {label} {dtype}: " + ", ".join(
                f"{k} {fmt_s(v.seconds)}" for k, v in u.items()), flush=True)

    def s(row, k):
        return row[k]["seconds"] if k in row else None

    headers = ["network", "dtype", "sklearn", "torch", "jax", "blasprop n_jobs=None",
               "blasprop n_jobs=1", f"blasprop n_jobs=-1 ({ALL_CORES} threads)",
               "n_jobs=1 / n_jobs=-1", "sklearn / blasprop -1", "torch / blasprop -1"]
    rows = [[r["case"], r["dtype"], fmt_s(s(r, "sklearn")), fmt_s(s(r, "torch")),
             fmt_s(s(r, "jax")),
             fmt_s(s(r, "blasprop None")), fmt_s(s(r, "blasprop 1")),
             fmt_s(s(r, "blasprop all")), fmt_x(s(r, "blasprop 1"), s(r, "blasprop all")),
             fmt_x(s(r, "sklearn"), s(r, "blasprop all")),
             fmt_x(s(r, "torch"), s(r, "blasprop all"))] for r in data]
    load_md = ""
    if load_rows:
        load_md = (
            "\n\n**Under load**: the same blasprop fits while another process keeps one "
            "core busy; the goal is n_jobs=-1 at most 1.3x the n_jobs=1 time.\n\n"
            + md_table(["network", "dtype", "n_jobs=1", "n_jobs=-1", "n_jobs=-1 / n_jobs=1"],
                       [[r["case"], r["dtype"], fmt_s(s(r, "blasprop 1")),
                         fmt_s(s(r, "blasprop all")),
                         f"{s(r, 'blasprop all') / s(r, 'blasprop 1'):.2f}"]
                        for r in load_rows]))
    md = (f"Seconds per epoch; median of {cfg.repeats}, implementations interleaved. "
          f"scikit-learn and torch run with all {ALL_CORES} cores (threadpoolctl, "
          "torch.set_num_threads); blasprop n_jobs=None and n_jobs=1 with one, n_jobs=-1 "
          f"with all {ALL_CORES}. The typical network: hidden (100,), relu, Adam, batch "
          f"{BATCH}, two classes; seed and large as in their own workloads.\n\n"
          + md_table(headers, rows) + load_md + "\n\n"
          + "\n".join(f"- {x}" for x in notes) + impls.standin_note)
    return Section("typical", "Threads: typical, seed and large networks, 1 thread and all "
                   "cores", md, {"rows": data, "under_load": load_rows,
                                 "threads": ALL_CORES})


if __name__ == "__main__":
    standalone(run)
