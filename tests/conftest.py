"""Shared fixtures for blasprop's test-suite.

``make_data(task, dtype=..., sparse=...)`` returns a small, seeded data set for
one learning task together with what an estimator needs to learn it:

================  ==========  ===================================================
task              estimator   y
================  ==========  ===================================================
binary            classifier  labels in {0, 1}
multiclass        classifier  labels in {0, 1, 2}
string_labels     classifier  labels in {"ant", "bee", "cat"} (object dtype)
multilabel        classifier  indicator matrix (n, 4)
regression        regressor   standardised float (n,)
regression_multi  regressor   standardised float (n, 3), squared error
poisson           regressor   counts (n,), ``loss="poisson"``
poisson_multi     regressor   counts (n, 2), ``loss="poisson"``
================  ==========  ===================================================

Every call returns fresh copies, so a test may modify what it gets.
"""

import os
from dataclasses import dataclass, field

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import (
    make_classification,
    make_multilabel_classification,
    make_regression,
)

N_SAMPLES = 240  # the default batch size 200 does not divide it
N_FEATURES = 10

CLASSIFICATION_TASKS = ("binary", "multiclass", "string_labels", "multilabel")
REGRESSION_TASKS = ("regression", "regression_multi", "poisson", "poisson_multi")
TASKS = CLASSIFICATION_TASKS + REGRESSION_TASKS


@dataclass
class Data:
    """A data set plus the facts an estimator needs to learn it."""

    task: str
    X: object  # ndarray or scipy sparse matrix
    y: np.ndarray
    is_classifier: bool
    params: dict = field(default_factory=dict)  # estimator params the task needs

    @property
    def n_samples(self):
        return self.X.shape[0]


def _standardize(X):
    return (X - X.mean(axis=0)) / X.std(axis=0)


def _poisson_targets(rng, X, n_outputs):
    coef = rng.uniform(-0.3, 0.3, size=(X.shape[1], n_outputs))
    y = rng.poisson(np.exp(X @ coef + 0.5)).astype(np.float64)
    return y.ravel() if n_outputs == 1 else y


def _build(task):
    if task in ("binary", "multiclass", "string_labels"):
        n_classes = 2 if task == "binary" else 3
        X, y = make_classification(
            n_samples=N_SAMPLES,
            n_features=N_FEATURES,
            n_informative=6,
            n_redundant=2,
            n_classes=n_classes,
            random_state=0,
        )
        if task == "string_labels":
            y = np.array(["ant", "bee", "cat"], dtype=object)[y]
        return X, y, {}
    if task == "multilabel":
        X, y = make_multilabel_classification(
            n_samples=N_SAMPLES, n_features=N_FEATURES, n_classes=4, random_state=0
        )
        return _standardize(X.astype(np.float64)), y, {}
    if task in ("regression", "regression_multi"):
        n_targets = 1 if task == "regression" else 3
        X, y = make_regression(
            n_samples=N_SAMPLES,
            n_features=N_FEATURES,
            n_informative=6,
            n_targets=n_targets,
            noise=10.0,
            random_state=0,
        )
        return X, _standardize(y), {}
    if task in ("poisson", "poisson_multi"):
        rng = np.random.RandomState(0)
        X = rng.normal(size=(N_SAMPLES, N_FEATURES))
        y = _poisson_targets(rng, X, 1 if task == "poisson" else 2)
        return X, y, {"loss": "poisson"}
    raise ValueError(f"unknown task {task!r}")


_CACHE = {}


def _sparsify(X):
    """Zero out ~70% of the entries (seeded), keeping the same shape."""
    mask = np.random.RandomState(1).uniform(size=X.shape) < 0.3
    return X * mask


@pytest.fixture
def make_data():
    """Factory fixture: ``make_data(task, dtype=np.float64, sparse=None)``.

    ``sparse`` is None (dense), "csr" or "csc"; a sparse X has ~70% zeros.
    """

    def _make(task, dtype=np.float64, sparse=None):
        if task not in _CACHE:
            _CACHE[task] = _build(task)
        X, y, params = _CACHE[task]
        X = X.copy()
        if sparse is not None:
            X = sp.csr_matrix(_sparsify(X)) if sparse == "csr" else sp.csc_matrix(
                _sparsify(X)
            )
            X.sort_indices()
        X = X.astype(dtype)
        return Data(
            task=task,
            X=X,
            y=y.copy(),
            is_classifier=task in CLASSIFICATION_TASKS,
            params=dict(params),
        )

    return _make


def _global_random_seeds():
    # Same convention as scikit-learn's own conftest (SKLEARN_TESTS_GLOBAL_RANDOM_SEED):
    # unset -> 42, "all" -> 0..99, "a-b" -> a..b, "n" -> n.
    value = os.environ.get("SKLEARN_TESTS_GLOBAL_RANDOM_SEED")
    if value is None:
        return [42]
    if value == "all":
        return list(range(100))
    if "-" in value:
        start, stop = value.split("-")
        return list(range(int(start), int(stop) + 1))
    return [int(value)]


@pytest.fixture(params=_global_random_seeds())
def global_random_seed(request):
    """scikit-learn's ``global_random_seed`` fixture, needed by its test_mlp.py."""
    return request.param


def _local_dask_cluster(n_workers=2):
    """Single-threaded worker processes on loopback, every server on a port
    the system picks (scheduler, workers, nannies, the scheduler's HTTP
    server).

    ``dashboard_address=None`` does not do that: the scheduler still serves
    HTTP (metrics, health), on 8787 when it is free and else on a random port
    of every interface after a UserWarning "Port 8787 is already in use",
    which the suite's warning filter turns into a failure to start."""
    distributed = pytest.importorskip("distributed")
    return distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address=None,
    )


@pytest.fixture(scope="session")
def local_dask_cluster():
    """Factory fixture: ``local_dask_cluster(n_workers=2)`` returns a new
    ``distributed.LocalCluster`` (a context manager) as the tests use them."""
    return _local_dask_cluster
