"""BLAS-bound workload: a wide network where matrix products dominate, all cores.

Layers [784, 512, 512, 10], relu, softmax output (MLPClassifier, 10 classes),
Adam, batch 256, 20,000 x 784 synthetic rows, float32 and float64.  Reports
seconds per epoch for scikit-learn, PyTorch eager and blasprop, and the
*gemm-bound fraction*: the time of the epoch's own matrix products alone
(scipy.linalg.blas gemm, the BLAS blasprop calls, on preallocated arrays,
same shapes, same threads) divided by
blasprop's epoch time.  100% would mean blasprop spends nothing outside gemm.

    python bench/large.py [--quick] [--standin] [--no-torch]
"""

import numpy as np
from _common import (
    ALL_CORES,
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

N_FEATURES, HIDDEN, N_CLASSES, BATCH = 784, (512, 512), 10, 256
LAYERS = (N_FEATURES, *HIDDEN, N_CLASSES)
DTYPES = (np.float32, np.float64)


def make_data(n, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.random((n, N_FEATURES), dtype=np.float64)
    y = np.argmax(X @ rng.standard_normal((N_FEATURES, N_CLASSES))
                  + rng.standard_normal((n, N_CLASSES)), axis=1)
    return X.astype(dtype, copy=False), y


def sk_params():
    return dict(hidden_layer_sizes=HIDDEN, activation="relu", solver="adam",
                batch_size=BATCH, shuffle=True, random_state=0)


def torch_large_model(torch, dtype):
    nn = torch.nn
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                         nn.Linear(512, N_CLASSES)).to(torch_dtype(torch, dtype))


def torch_large_trainer(torch, X, y):
    return torch_trainer(torch, X, y.astype(np.int64), BATCH,
                         lambda: torch_large_model(torch, X.dtype), torch.nn.CrossEntropyLoss,
                         lambda m: torch.optim.Adam(m.parameters(), lr=1e-3))


def gemm_trainer(dtype):
    """A stand-in "trainer" that does only an epoch's matrix products, so it is
    timed exactly like the libraries (same calibration, interleaved samples):
    per batch, X.W for each layer (forward), A^T.delta for each layer (weight
    gradients) and delta.W^T for each layer but the first (deltas below).

    It calls scipy.linalg.blas gemm -- the OpenBLAS that blasprop reaches
    through scipy.linalg.cython_blas -- on preallocated row-major arrays,
    passed as their Fortran-order transposes so that nothing is copied:
    row-major C = A.B is column-major C^T = B^T.A^T."""
    from scipy.linalg import blas

    gemm = blas.sgemm if np.dtype(dtype) == np.float32 else blas.dgemm
    rng = np.random.default_rng(0)
    W = [rng.standard_normal((a, b)).astype(dtype) for a, b in zip(LAYERS[:-1], LAYERS[1:])]
    G = [np.empty_like(w) for w in W]
    bufs = {}

    def buffers(b):
        if b not in bufs:
            bufs[b] = ([rng.random((b, k)).astype(dtype) for k in LAYERS[:-1]],   # inputs
                       [np.empty((b, k), dtype) for k in LAYERS[1:]],             # outputs
                       [rng.standard_normal((b, k)).astype(dtype) for k in LAYERS[1:]],
                       [np.empty((b, k), dtype) for k in LAYERS[:-1]])            # deltas below
        return bufs[b]

    def train(rows, epochs):
        sizes = [BATCH] * (rows // BATCH) + ([rows % BATCH] if rows % BATCH else [])
        for b in set(sizes):
            buffers(b)
        for _ in range(epochs):
            for b in sizes:
                A, Z, D, E = bufs[b]
                for i in range(len(W)):        # Z = A W
                    gemm(1.0, W[i].T, A[i].T, c=Z[i].T, overwrite_c=1)
                for i in range(len(W)):        # G = A^T D
                    gemm(1.0, D[i].T, A[i].T, trans_b=1, c=G[i].T, overwrite_c=1)
                for i in range(1, len(W)):     # E = D W^T
                    gemm(1.0, W[i].T, D[i].T, trans_a=1, c=E[i].T, overwrite_c=1)
        return epochs

    return train


def check_gemm_trainer():
    """The products above are the intended ones, in place (no copies)."""
    from scipy.linalg import blas

    rng = np.random.default_rng(1)
    A, W, D = rng.random((5, 4)), rng.random((4, 3)), rng.random((5, 3))
    Z, G, E = np.empty((5, 3)), np.empty((4, 3)), np.empty((5, 4))
    assert np.shares_memory(blas.dgemm(1.0, W.T, A.T, c=Z.T, overwrite_c=1), Z)
    assert np.shares_memory(blas.dgemm(1.0, D.T, A.T, trans_b=1, c=G.T, overwrite_c=1), G)
    assert np.shares_memory(blas.dgemm(1.0, W.T, D.T, trans_a=1, c=E.T, overwrite_c=1), E)
    np.testing.assert_allclose(Z, A @ W)
    np.testing.assert_allclose(G, A.T @ D)
    np.testing.assert_allclose(E, D @ W.T)


def run(cfg: Config, impls) -> Section:
    """BLAS-bound workload (seconds per epoch, all cores)."""
    check_gemm_trainer()
    n = cfg.large_rows
    tr = impls.torch
    X64, y = make_data(n)
    data, notes = [], []
    with pinned_threads(ALL_CORES, tr):
        for dtype in DTYPES:
            X = X64.astype(dtype)
            trains = {"sklearn": estimator_trainer(impls.sklearn.MLPClassifier, X, y,
                                                   **sk_params())}
            if tr is not None:
                trains["torch"] = torch_large_trainer(tr, X, y)
            if impls.blasprop is not None:
                trains["blasprop"] = estimator_trainer(impls.blasprop.MLPClassifier, X, y,
                                                       **sk_params())
            trains["gemm"] = gemm_trainer(dtype)
            m = compare_epochs(trains, n, BATCH, cfg)
            g = m.pop("gemm")
            row = {"dtype": np.dtype(dtype).name, "gemm": g.seconds, "gemm_samples": g.samples,
                   **{k: v.as_dict() for k, v in m.items()}}
            data.append(row)
            for k, v in m.items():
                notes.append(f"{k}, {row['dtype']}: {v.note}")
            print(f"[large] {row['dtype']}: "
                  + ", ".join(f"{k} {fmt_s(v.seconds)}" for k, v in m.items())
                  + f", gemm only {fmt_s(g.seconds)}",
                  flush=True)

    def s(row, k):
        return row[k]["seconds"] if k in row else None

    def frac(row, k):
        return f"{100 * row['gemm'] / s(row, k):.0f}%" if k in row else "n/a"

    bp = impls.blasprop_label
    headers = ["dtype", "sklearn", "torch", bp, f"sklearn / {bp}", f"torch / {bp}",
               "gemm only", f"gemm-bound fraction ({bp})", "(sklearn)", "(torch)"]
    rows = [[r["dtype"], fmt_s(s(r, "sklearn")), fmt_s(s(r, "torch")), fmt_s(s(r, "blasprop")),
             fmt_x(s(r, "sklearn"), s(r, "blasprop")), fmt_x(s(r, "torch"), s(r, "blasprop")),
             fmt_s(r["gemm"]), frac(r, "blasprop"), frac(r, "sklearn"), frac(r, "torch")]
            for r in data]
    md = (f"Seconds per epoch of {n:,} rows, layers {list(LAYERS)}, relu, softmax + log-loss, "
          f"Adam, batch {BATCH}; median of {cfg.repeats}; {threads_line(ALL_CORES, tr)}. "
          "'gemm only' times just the epoch's matrix products (scipy.linalg.blas gemm, the "
          "OpenBLAS blasprop calls, on preallocated arrays; timed interleaved with the "
          "libraries); "
          "the fraction columns are gemm-only time / epoch time of each library.\n\n"
          + md_table(headers, rows) + "\n\n" + "\n".join(f"- {x}" for x in notes)
          + impls.standin_note)
    return Section("large", f"BLAS-bound workload: {list(LAYERS)}, Adam, all cores", md,
                   {"rows": data, "threads": ALL_CORES, "n_rows": n})


if __name__ == "__main__":
    standalone(run)
