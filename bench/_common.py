"""Shared helpers for the blasprop benchmarks.

Everything that more than one workload script needs lives here, once:

* ``Config``            -- repeats and time budgets (``--quick`` shrinks them)
* ``load_impls``        -- blasprop / scikit-learn / PyTorch, whichever are importable
* ``pinned_threads``    -- pin BLAS/OpenMP (threadpoolctl) and torch threads
* ``compare_epochs``    -- seconds per training epoch, median of repeats,
                           implementations interleaved round-robin
* ``compare_calls``     -- seconds per call (used for predict), same scheme
* ``estimator_trainer`` -- fit an sklearn-API estimator for exactly N epochs
* ``torch_trainer``     -- the plain PyTorch eager training loop
* ``machine_info``      -- CPU, cores, BLAS, library versions
* ``md_table`` / ``fmt_s`` / ``fmt_x`` -- markdown output

No timing here ever asserts anything: numbers are measured and printed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ALL_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# --------------------------------------------------------------------------- config
@dataclasses.dataclass
class Config:
    quick: bool = False
    repeats: int = 5           # timed samples per measurement (median reported)
    target_s: float = 1.0      # aim for about this long per timed sample
    max_epoch_s: float = 4.0   # an epoch estimated longer than this is timed on a row slice
    max_epochs: int = 30       # cap on epochs per timed sample
    naive_rows: int = 500      # rows the pure-Python loop is timed on
    large_rows: int = 20_000   # rows of the BLAS-bound workload
    predict_rows: int = 100_000
    use_torch: bool = True
    standin: bool = False      # use sklearn in place of a missing blasprop (labelled)

    @classmethod
    def make(cls, quick=False, repeats=None, **kw):
        cfg = cls(**kw)
        if quick:
            cfg.quick = True
            cfg.repeats = 3
            cfg.target_s = 0.25
            cfg.max_epoch_s = 0.6
            cfg.max_epochs = 10
            cfg.naive_rows = 40
            cfg.predict_rows = 25_000
        if repeats:
            cfg.repeats = repeats
        return cfg


# --------------------------------------------------------------------------- implementations
@dataclasses.dataclass
class Impls:
    sklearn: object                # module with MLPClassifier / MLPRegressor
    blasprop: object | None        # same, or None when blasprop is not importable
    blasprop_label: str            # "blasprop", or "blasprop*" when sklearn stands in
    blasprop_error: str
    torch: object | None

    @property
    def standin_note(self):
        return ("\n\n**\\* blasprop is not installed: scikit-learn stands in for it in the "
                "`blasprop*` columns. These are NOT blasprop numbers.**"
                if self.blasprop_label != "blasprop" else "")


def load_impls(cfg: Config) -> Impls:
    import sklearn.neural_network as skl

    bp, label, err = None, "blasprop", ""
    try:
        import blasprop as bp  # noqa: F811  (editable install may rebuild here)
    except Exception as exc:  # ImportError, or a failed rebuild
        err = f"{type(exc).__name__}: {exc}"
        print(f"[bench] blasprop not installed / not importable ({err})", file=sys.stderr)
        if cfg.standin:
            bp, label = skl, "blasprop*"
            print("[bench] --standin: sklearn stands in for blasprop; "
                  "the 'blasprop' numbers below are NOT blasprop", file=sys.stderr)
    tr = None
    if cfg.use_torch:
        try:
            import torch as tr
        except ImportError:
            print("[bench] torch not installed: torch columns skipped", file=sys.stderr)
    return Impls(skl, bp, label, err, tr)


# --------------------------------------------------------------------------- threads
@contextlib.contextmanager
def pinned_threads(n: int, torch=None):
    """Limit every BLAS / OpenMP pool threadpoolctl can see, and torch, to n threads."""
    from threadpoolctl import threadpool_limits

    old = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=n):
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield n
        finally:
            if torch is not None:
                torch.set_num_threads(old)


def threads_line(n: int, torch=None) -> str:
    s = f"threads: {n} (BLAS/OpenMP via threadpoolctl"
    if torch is not None:
        s += f", torch.set_num_threads({n})"
    return s + ")"


# --------------------------------------------------------------------------- timing
@dataclasses.dataclass
class Measure:
    seconds: float            # median seconds per epoch (full data) or per call
    samples: list             # every timed sample, same unit
    note: str = ""            # e.g. "extrapolated from 1,000 rows"

    def as_dict(self):
        return dataclasses.asdict(self)


def _clock(fn, *args):
    gc.collect()
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


@contextlib.contextmanager
def quiet_fit():
    """Silence ConvergenceWarning (fits with a small max_iter always raise it)."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def estimator_trainer(cls, X, y, **params):
    """Trainer for an sklearn-API estimator (sklearn or blasprop): a fresh
    ``cls(**params)`` fitted for exactly ``epochs`` epochs (no early stop)."""

    def train(rows, epochs):
        est = cls(max_iter=epochs, n_iter_no_change=epochs + 1, **params)
        with quiet_fit():
            est.fit(X[:rows], y[:rows])
        return est.n_iter_

    return train


def compare_epochs(trains: dict, n_rows: int, batch: int, cfg: Config) -> dict:
    """Median seconds per epoch over ``n_rows`` rows for each trainer.

    ``trains[name](rows, epochs)`` trains a fresh model on the first ``rows`` rows
    for ``epochs`` epochs and returns the number of epochs it actually ran.  The
    timed span includes model construction and input checks, amortised over the
    epochs.  Each trainer is first calibrated: if one epoch is estimated to take
    longer than ``cfg.max_epoch_s`` it is timed on a row slice and extrapolated
    linearly to ``n_rows`` (said in ``Measure.note``); otherwise it runs as many
    whole epochs as fit in ``cfg.target_s``.  Timed samples of the different
    trainers are interleaved round-robin so background noise hits all alike.
    """
    plans = {}
    for name, train in trains.items():
        train(min(n_rows, max(2 * batch, 64)), 1)   # warm-up: first-call costs
        n0 = min(n_rows, max(4 * batch, 400))
        dt, k = _clock(train, n0, 1)
        est = dt / k * n_rows / n0
        if est > cfg.max_epoch_s:
            rows = int(n_rows * cfg.max_epoch_s / est) // batch * batch
            rows = min(n_rows, max(8 * batch, 200, rows))     # never fewer than 8 batches
            plans[name] = (rows, 1)
        else:
            dt, k = _clock(train, n_rows, 1)          # warm-up on the full data
            epochs = max(1, min(cfg.max_epochs, round(cfg.target_s / max(dt / k, 1e-9))))
            plans[name] = (n_rows, epochs)
    samples = {name: [] for name in trains}
    for _ in range(cfg.repeats):
        for name, train in trains.items():
            rows, epochs = plans[name]
            dt, k = _clock(train, rows, epochs)
            samples[name].append(dt / k * n_rows / rows)
    out = {}
    for name, (rows, epochs) in plans.items():
        note = (f"extrapolated from {rows:,} rows" if rows < n_rows
                else f"{epochs} epoch{'s' if epochs > 1 else ''} per sample")
        out[name] = Measure(statistics.median(samples[name]), samples[name], note)
    return out


def compare_calls(fns: dict, cfg: Config) -> dict:
    """Median seconds per call of each zero-argument function (one warm-up call,
    calls looped so a sample lasts about ``cfg.target_s``, round-robin)."""
    loops = {}
    for name, fn in fns.items():
        dt, _ = _clock(fn)                               # warm-up and calibration
        loops[name] = max(1, min(50, math.ceil(cfg.target_s / max(dt, 1e-9))))
    samples = {name: [] for name in fns}

    def looped(fn, n):
        for _ in range(n):
            fn()

    for _ in range(cfg.repeats):
        for name, fn in fns.items():
            dt, _ = _clock(looped, fn, loops[name])
            samples[name].append(dt / loops[name])
    return {name: Measure(statistics.median(s), s, f"{loops[name]} call(s) per sample")
            for name, s in samples.items()}


# --------------------------------------------------------------------------- torch
def torch_trainer(torch, X, y, batch, make_model, make_loss, make_opt, seed=0):
    """The ordinary PyTorch eager loop: randperm, index, zero_grad, forward,
    loss, backward, step.  Data is converted to tensors once, outside timing."""
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

    def train(rows, epochs):
        torch.manual_seed(seed)
        model = make_model()
        loss_fn, opt = make_loss(), make_opt(model)
        xs, ys = Xt[:rows], yt[:rows]
        for _ in range(epochs):
            perm = torch.randperm(rows)
            for i in range(0, rows, batch):
                idx = perm[i:i + batch]
                xb, yb = xs[idx], ys[idx]
                opt.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
        return epochs

    return train


def torch_dtype(torch, dtype):
    return {np.float32: torch.float32, np.float64: torch.float64}[np.dtype(dtype).type]


# --------------------------------------------------------------------------- machine
def machine_info(impls: Impls | None = None) -> dict:
    cpu = "unknown"
    flags = set()
    ident = []     # x86 family and model: which generation a generic name is
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu == "unknown":
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith(("cpu family", "model\t")) and len(ident) < 2:
                    ident.append(line.split(":", 1)[1].strip())
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = [f for f in ("avx", "avx2", "fma", "avx512f") if f in flags]
    if len(ident) == 2:
        cpu += f" (family {ident[0]}, model {ident[1]})"
    import scipy
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS so threadpoolctl sees it)
    import sklearn
    from threadpoolctl import threadpool_info

    info = {
        "cpu": cpu,
        "simd": " ".join(simd) or "n/a",
        "logical_cores": os.cpu_count(),
        "usable_cores": ALL_CORES,
        "loadavg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "torch": "not installed",
        "blasprop": "not installed",
    }
    if impls is not None:
        if impls.torch is not None:
            t = impls.torch
            info["torch"] = (f"{t.__version__} "
                             f"(MKL {'yes' if t.backends.mkl.is_available() else 'no'})")
        if impls.blasprop is not None:
            if impls.blasprop_label == "blasprop":
                info["blasprop"] = getattr(impls.blasprop, "__version__", "unknown version")
            else:
                info["blasprop"] = "NOT INSTALLED -- sklearn stand-in used"
    pools = []
    for p in threadpool_info():
        pools.append(f"{p.get('internal_api')} {p.get('version') or ''} "
                     f"[{p.get('architecture') or p.get('threading_layer') or ''}] "
                     f"{os.path.basename(p.get('filepath', ''))} "
                     f"(default {p.get('num_threads')} threads)".replace("  ", " "))
    info["thread_pools"] = pools
    # OpenBLAS reads these when it loads; OPENBLAS_CORETYPE replaces its CPU
    # detection and so decides which kernels every OpenBLAS here runs
    info["blas_env"] = {k: v for k, v in sorted(os.environ.items())
                        if k.startswith(("OPENBLAS_", "GOTO_")) or k == "OMP_NUM_THREADS"}
    archs = {p.get("architecture") for p in threadpool_info()
             if p.get("internal_api") == "openblas"}
    info["blas_core_forced"] = bool(info["blas_env"].get("OPENBLAS_CORETYPE"))
    info["blas_core_note"] = ""
    info["blas_core_detected"] = _detected_cores() if info["blas_core_forced"] else None
    if info["blas_core_forced"]:
        detected = ", ".join(info["blas_core_detected"] or ["unknown"])
        info["blas_core_note"] = (
            f"OPENBLAS_CORETYPE={info['blas_env']['OPENBLAS_CORETYPE']} is set in this "
            f"environment: OpenBLAS runs the {', '.join(sorted(a for a in archs if a))} kernels, "
            f"where without the variable it detects {detected} on this CPU. It applies to "
            "numpy, SciPy, scikit-learn and blasprop alike, not to PyTorch's MKL")
    return info


def _detected_cores():
    """The OpenBLAS cores a fresh interpreter loads without OPENBLAS_CORETYPE."""
    import subprocess

    code = ("import numpy, scipy.linalg\nfrom threadpoolctl import threadpool_info\n"
            "print(' '.join(sorted({p.get('architecture') or '?' for p in threadpool_info() "
            "if p.get('internal_api') == 'openblas'})))")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    try:
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.split() if res.returncode == 0 else None


def machine_md(info: dict) -> str:
    lines = [f"- CPU: {info['cpu']} ({info['simd']}); {info['logical_cores']} logical cores, "
             f"{info['usable_cores']} usable; 1-min load average at start: {info['loadavg_1m']}",
             f"- OS: {info['os']}; Python {info['python']}",
             f"- numpy {info['numpy']}, scipy {info['scipy']}, "
             f"scikit-learn {info['scikit-learn']}, "
             f"torch {info['torch']}, blasprop {info['blasprop']}",
             "- BLAS / OpenMP pools (threadpoolctl):"]
    lines += [f"  - {p}" for p in info["thread_pools"]]
    env = info.get("blas_env") or {}
    lines.append("- BLAS environment: " + (", ".join(f"{k}={v}" for k, v in env.items())
                                           or "no OPENBLAS_* / OMP_NUM_THREADS set"))
    if info.get("blas_core_note"):
        lines.append(f"  - **{info['blas_core_note']}**")
    return "\n".join(lines)


# --------------------------------------------------------------------------- output
def fmt_s(x) -> str:
    """Seconds with 3 significant digits, in a readable unit."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if x >= scale or unit == "µs":
            v = x / scale
            return f"{v:.3g} {unit}" if v < 1000 else f"{v:,.0f} {unit}"


def fmt_x(num, den) -> str:
    """Ratio num/den as a speedup, e.g. '12.3x' (n/a if either is missing)."""
    if num is None or den is None or den <= 0:
        return "n/a"
    r = num / den
    return f"{r:.3g}x" if r < 1000 else f"{r:,.0f}x"


def md_table(headers, rows) -> str:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [line([str(h) for h in headers]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


@dataclasses.dataclass
class Section:
    """One workload's result: markdown for humans, ``data`` for results.json."""
    key: str
    title: str
    markdown: str
    data: dict


def seconds(m: Measure | None):
    return None if m is None else m.seconds


def standalone(run: Callable):
    """``python bench/<workload>.py [--quick] [--standin] ...`` runs one workload."""
    import argparse

    ap = argparse.ArgumentParser(description=run.__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--standin", action="store_true")
    a = ap.parse_args()
    cfg = Config.make(a.quick, a.repeats, use_torch=not a.no_torch, standin=a.standin)
    impls = load_impls(cfg)
    sec = run(cfg, impls)
    print(f"## {sec.title}\n\n{sec.markdown}")


# --------------------------------------------------------------------------- jax
def jax_trainer(X, y, layers, batch, seed=0, lr=1e-3):
    """An expert's JAX training loop for a relu network with a softmax +
    log-loss output and Adam: the whole epoch (shuffle, every batch's
    forward, backward and step) is one jit-compiled function, its batches a
    ``lax.scan``. Glorot-uniform weights, zero intercepts. XLA uses its own
    thread pool (all cores); threadpoolctl does not limit it."""
    import functools

    import jax
    import jax.numpy as jnp

    Xj, yj = jnp.asarray(X), jnp.asarray(y, dtype=jnp.int32)
    dt = Xj.dtype
    tree = jax.tree_util.tree_map

    def init(key):
        params = []
        for a, b in zip(layers[:-1], layers[1:]):
            key, k = jax.random.split(key)
            lim = float(np.sqrt(6.0 / (a + b)))
            params.append((jax.random.uniform(k, (a, b), dt, -lim, lim), jnp.zeros(b, dt)))
        return params

    def loss(params, x, yb):
        for W, b in params[:-1]:
            x = jax.nn.relu(x @ W + b)
        W, b = params[-1]
        logp = jax.nn.log_softmax(x @ W + b)
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))

    grad = jax.grad(loss)

    def step(state, rows):
        params, m, v, t = state
        g = grad(params, Xj[rows], yj[rows])
        t = t + 1
        m = tree(lambda m, g: 0.9 * m + 0.1 * g, m, g)
        v = tree(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
        rate = lr * jnp.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        params = tree(lambda p, m, v: p - rate * m / (jnp.sqrt(v) + 1e-8), params, m, v)
        return (params, m, v, t), None

    @functools.partial(jax.jit, static_argnums=2)
    def epoch(state, key, rows):
        perm = jax.random.permutation(key, rows)
        full = rows // batch
        state, _ = jax.lax.scan(step, state, perm[: full * batch].reshape(full, batch))
        if rows % batch:
            state, _ = step(state, perm[full * batch:])
        return state

    def train(rows, epochs):
        key = jax.random.PRNGKey(seed)
        params = init(key)
        zeros = tree(jnp.zeros_like, params)
        state = (params, zeros, zeros, jnp.asarray(0, dt))
        for _ in range(epochs):
            key, k = jax.random.split(key)
            state = epoch(state, k, rows)
        jax.block_until_ready(state)
        return epochs

    return train
