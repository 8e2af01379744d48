"""Train blasprop on data that does not have to fit in memory.

Two ways, shown on a few tens of MB so that the example runs in seconds
(``--rows`` makes it bigger; nothing below ever holds all of X in memory):

1. One float32 ``.npy`` file opened as a read-only memory map. ``fit``
   gathers the rows of each minibatch straight from the map into one small
   buffer and never copies X, so its memory use does not grow with the file
   (measured here with ``tracemalloc``, which sees NumPy's allocations).
2. Many ``.npy`` chunk files and a ``partial_fit`` loop: one pass over the
   chunks in a new random order is one epoch; a held-out chunk decides when
   to stop.

    python examples/out_of_core.py [--rows 400000] [--features 64] [--dir DIR]

See docs/scaling.md.
"""

import argparse
import copy
import pathlib
import tempfile
import time
import tracemalloc
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from blasprop import MLPClassifier

CHUNK_ROWS = 50_000


def teacher(n_features, seed=0):
    """A fixed random network whose decisions (3 classes) are the labels."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((n_features, 16)).astype(np.float32) / np.sqrt(n_features)
    w2 = rng.standard_normal((16, 3)).astype(np.float32)

    def label(X):
        return np.argmax(np.tanh(X @ w1) @ w2, axis=1).astype(np.int8)

    return label


def write_data(directory, n_rows, n_features):
    """Write X (float32) and y chunk by chunk, both as one memory-mappable
    file and as chunk files; return the paths."""
    label = teacher(n_features)
    rng = np.random.default_rng(1)
    x_path, y_path = directory / "X.npy", directory / "y.npy"
    X = np.lib.format.open_memmap(
        x_path, mode="w+", dtype=np.float32, shape=(n_rows, n_features)
    )
    y = np.lib.format.open_memmap(y_path, mode="w+", dtype=np.int8, shape=(n_rows,))
    chunks = []
    for k, start in enumerate(range(0, n_rows, CHUNK_ROWS)):
        stop = min(start + CHUNK_ROWS, n_rows)
        Xc = rng.standard_normal((stop - start, n_features), dtype=np.float32)
        yc = label(Xc)
        X[start:stop], y[start:stop] = Xc, yc
        np.save(directory / f"X_{k:03d}.npy", Xc)
        np.save(directory / f"y_{k:03d}.npy", yc)
        chunks.append((directory / f"X_{k:03d}.npy", directory / f"y_{k:03d}.npy"))
    X.flush()
    y.flush()
    del X, y
    return x_path, y_path, chunks


def fit_from_memmap(x_path, y_path):
    X = np.load(x_path, mmap_mode="r")  # read-only np.memmap, nothing read yet
    y = np.load(y_path)  # labels are small: in memory
    clf = MLPClassifier(
        hidden_layer_sizes=(64,),
        batch_size=256,
        max_iter=5,
        early_stopping=True,  # the validation split is of row indices: no copy
        random_state=0,
    )
    tracemalloc.start()
    start = time.perf_counter()
    with warnings.catch_warnings():  # a short demo run: few epochs on purpose
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"[memmap] X is {X.nbytes / 1e6:.0f} MB on disk ({X.dtype}); fit: "
        f"{clf.n_iter_} epochs in {seconds:.1f} s, peak NumPy/Python memory "
        f"{peak / 1e6:.1f} MB (row indices, labels and a row buffer of at most "
        f"~32 MB for validation; no copy of X); best validation accuracy "
        f"{clf.best_validation_score_:.3f}; weights {clf.coefs_[0].dtype}"
    )
    return clf, peak


def fit_from_chunks(chunks, max_epochs=5, patience=2):
    *train, held_out = chunks  # the last chunk is kept for validation
    X_val, y_val = np.load(held_out[0]), np.load(held_out[1])
    classes = np.arange(3)  # partial_fit needs every class up front
    clf = MLPClassifier(hidden_layer_sizes=(64,), batch_size=256, random_state=0)
    rng = np.random.default_rng(0)
    best, best_score, waited = None, -np.inf, 0
    start = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        for i in rng.permutation(len(train)):  # a new chunk order every epoch
            X_path, y_path = train[i]
            clf.partial_fit(np.load(X_path, mmap_mode="r"), np.load(y_path), classes=classes)
        score = clf.score(X_val, y_val)
        print(f"[chunks] epoch {epoch}: held-out accuracy {score:.3f}")
        if score > best_score + 1e-4:
            best, best_score, waited = copy.deepcopy(clf), score, 0
        else:
            waited += 1
            if waited >= patience:
                break
    print(
        f"[chunks] {len(train)} chunk files, {epoch} epochs in "
        f"{time.perf_counter() - start:.1f} s; best held-out accuracy {best_score:.3f}"
    )
    return best, best_score


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--dir", help="where to write the data (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = pathlib.Path(args.dir or tmp)
        directory.mkdir(parents=True, exist_ok=True)
        x_path, y_path, chunks = write_data(directory, args.rows, args.features)
        fit_from_memmap(x_path, y_path)
        fit_from_chunks(chunks)


if __name__ == "__main__":
    main()
