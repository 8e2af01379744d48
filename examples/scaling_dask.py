"""blasprop on a Dask cluster: Incremental, ParallelPostFit, GridSearchCV.

Needs ``pip install dask distributed dask-ml`` (see docs/scaling.md for the
versions tested). By default it starts a LocalCluster of two single-threaded
worker processes on 127.0.0.1; ``--scheduler tcp://HOST:8786`` uses a running
cluster instead (every worker needs the same blasprop installed).

    python examples/scaling_dask.py [--scheduler ADDRESS]

Each step is checked against the same computation done locally.
"""

import argparse
import time
import warnings

import dask.array as da
import joblib
import numpy as np
from dask_ml.wrappers import Incremental, ParallelPostFit
from distributed import Client, LocalCluster
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from blasprop import MLPClassifier

BLOCK = 5_000  # rows per dask block: one partial_fit call each


def data():
    X, y = make_classification(
        n_samples=8 * BLOCK, n_features=20, n_informative=10, n_classes=3, random_state=0
    )
    X = X.astype(np.float32)  # float32 stays float32, on the workers too
    # A real data set would come from storage, already in blocks, e.g.
    # da.from_zarr(...), da.from_npy_stack(...), or a dask DataFrame's
    # .to_dask_array(lengths=True).
    return X, y, da.from_array(X, chunks=(BLOCK, -1)), da.from_array(y, chunks=BLOCK)


def incremental(X, y, dX, dy, epochs=3):
    """partial_fit block by block, on the workers, in block order."""
    classes = np.unique(y)  # every class, before the first block is seen
    est = MLPClassifier(hidden_layer_sizes=(64,), batch_size=128, random_state=0)
    inc = Incremental(est, shuffle_blocks=False)  # or shuffle_blocks=True, random_state=...
    start = time.perf_counter()
    for _ in range(epochs):  # each call is one pass over all blocks
        inc.partial_fit(dX, dy, classes=classes)
    seconds = time.perf_counter() - start

    local = clone(est)
    for _ in range(epochs):
        for lo in range(0, len(X), BLOCK):
            local.partial_fit(X[lo : lo + BLOCK], y[lo : lo + BLOCK], classes=classes)
    diff = max(np.abs(a - b).max() for a, b in zip(inc.estimator_.coefs_, local.coefs_))
    print(
        f"Incremental: {epochs} passes over {dX.numblocks[0]} blocks in {seconds:.1f} s; "
        f"max |coef difference| vs the local partial_fit loop: {diff:.1e}"
    )
    return inc.estimator_, diff


def parallel_post_fit(fitted, X, dX):
    """Predict over the partitions in parallel with an already fitted model.

    ParallelPostFit(est).fit(X_small, y_small) trains est here (an ordinary
    fit) and then predicts on dask arrays; a model trained elsewhere, as
    here, is wrapped as it is.
    """
    ppf = ParallelPostFit(fitted)
    labels = ppf.predict(dX)  # lazy dask array, one task per block
    proba = ppf.predict_proba(dX)
    labels, proba = da.compute(labels, proba)
    same = all(
        np.array_equal(labels[lo : lo + BLOCK], fitted.predict(X[lo : lo + BLOCK]))
        for lo in range(0, len(X), BLOCK)
    )
    print(
        f"ParallelPostFit: {len(labels)} predictions from {dX.numblocks[0]} partitions "
        f"({proba.dtype}); identical to local predict on the same blocks: {same}"
    )
    return same


def grid_search(X, y):
    """Each (candidate, fold) fit is a task on the cluster."""
    search = GridSearchCV(
        MLPClassifier(max_iter=30, random_state=0),
        {"hidden_layer_sizes": [(16,), (64,)], "alpha": [1e-4, 1e-1]},
        cv=3,
    )
    X, y = X[:3000], y[:3000]
    warnings.simplefilter("ignore", ConvergenceWarning)  # 30 epochs, on purpose
    start = time.perf_counter()
    with joblib.parallel_backend("dask"):
        remote = clone(search).fit(X, y)
    seconds = time.perf_counter() - start
    local = clone(search).fit(X, y)
    same = np.array_equal(
        remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"]
    )
    print(
        f"GridSearchCV on the dask backend: {len(remote.cv_results_['params'])} "
        f"candidates x 3 folds in {seconds:.1f} s; best {remote.best_params_}; "
        f"scores identical to the default backend: {same}"
    )
    return same


def ship_to_a_worker(client, fitted, X):
    """A fitted model is a small pickle: send it with the task."""
    X_remote = client.scatter(X)  # send big inputs once, then refer to them
    labels = client.submit(fitted.predict, X_remote).result()
    same = np.array_equal(labels, fitted.predict(X))
    print(f"client.submit(est.predict, X): equal to local: {same}")
    return same


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scheduler", help="address of a running scheduler")
    args = parser.parse_args()
    if args.scheduler:
        client, cluster = Client(args.scheduler), None
    else:
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", scheduler_port=0,
            # dashboard_address=None still starts the dashboard on 8787 (or,
            # when that is taken, on a random port of every interface)
            dashboard_address="127.0.0.1:0",
        )
        client = Client(cluster)
    try:
        print(f"cluster: {len(client.scheduler_info()['workers'])} workers")
        X, y, dX, dy = data()
        fitted, _ = incremental(X, y, dX, dy)
        parallel_post_fit(fitted, X, dX)
        grid_search(X, y)
        ship_to_a_worker(client, fitted, X)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    main()
