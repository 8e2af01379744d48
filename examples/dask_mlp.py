"""One blasprop model trained on all the rows of a Dask cluster (blasprop.dask).

Needs ``pip install "blasprop[dask]"``. By default it starts a LocalCluster of
two single-threaded worker processes on 127.0.0.1; ``--scheduler
tcp://HOST:8786`` uses a running cluster instead (every worker needs the same
blasprop installed).

The rows are generated on the workers and stay there; fit sends the model's
parameters to the partitions and brings sums (lbfgs) or trained parameters
(adam) back, round after round.

    python examples/dask_mlp.py [--scheduler ADDRESS] [--rows 200000]
"""

import argparse
import os
import tempfile
import time
import warnings

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster
from sklearn.exceptions import ConvergenceWarning

import blasprop
from blasprop.dask import DaskMLPClassifier

N_FEATURES, N_CLASSES, PARTITIONS = 20, 3, 4


def data(rows, seed):
    """A three-class problem, computed lazily: the rows are made where the
    tasks run, on the workers, never on this machine."""
    X = da.random.RandomState(seed).standard_normal(
        (rows, N_FEATURES), chunks=(-(-rows // PARTITIONS), N_FEATURES))
    W = np.random.default_rng(0).standard_normal((N_FEATURES, N_CLASSES))
    scores = X @ W + da.sin(3 * X[:, :N_CLASSES])  # a little nonlinearity
    return X, scores.argmax(axis=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scheduler", help="address of a running scheduler")
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    if args.scheduler:
        client, cluster = Client(args.scheduler), None
    else:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                               scheduler_port=0, dashboard_address="127.0.0.1:0")
        client = Client(cluster)  # the default client: the estimators use it
    try:
        print(f"cluster: {len(client.scheduler_info()['workers'])} workers")
        X, y = client.persist(data(args.rows, seed=0))        # train: kept on the workers
        X_test, y_test = client.persist(data(args.rows // 4, seed=1))

        # lbfgs is exact: every evaluation of the objective sums the loss and
        # gradient of all partitions, so the model is that of
        # blasprop.MLPClassifier(...).fit on all the rows in one process.
        warnings.simplefilter("ignore", ConvergenceWarning)  # short fits, on purpose
        start = time.perf_counter()
        exact = DaskMLPClassifier(hidden_layer_sizes=(32,), solver="lbfgs", max_iter=100,
                                  random_state=0).fit(X, y)
        print(f"lbfgs: {exact.n_iter_} iterations in {time.perf_counter() - start:.1f} s, "
              f"classes {exact.classes_}, test accuracy {exact.score(X_test, y_test):.4f}")

        # adam is local SGD with model averaging: each round, every partition
        # trains local_epochs epochs over its own rows from the same model, and
        # the models are averaged; max_iter counts rounds.
        start = time.perf_counter()
        averaged = DaskMLPClassifier(hidden_layer_sizes=(32,), solver="adam", max_iter=10,
                                     local_epochs=1, random_state=0).fit(X, y)
        print(f"adam: {averaged.n_iter_} rounds in {time.perf_counter() - start:.1f} s, "
              f"test accuracy {averaged.score(X_test, y_test):.4f}")

        proba = exact.predict_proba(X_test)  # lazy dask array, one task per partition
        print(f"predict_proba: {type(proba).__name__} of shape {proba.shape}, "
              f"first row {np.round(proba[:1].compute(), 3)}")

        model = exact.to_local()  # a plain blasprop.MLPClassifier: pickle, save, ONNX
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "dask_mlp.bpm")
            blasprop.save(model, path)
            loaded = blasprop.load(path)
            rows = X_test[:1000].compute()
            same = np.array_equal(loaded.predict(rows), exact.predict(rows))
            print(f"saved {type(model).__name__} ({os.path.getsize(path):,} bytes); "
                  f"loaded model predicts as the dask one: {same}")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    main()
