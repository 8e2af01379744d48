"""Small helpers shared by several test modules."""

import numpy as np
from numpy.testing import assert_array_equal


def regression_data(n, n_features, seed=0, dtype=np.float64):
    """X, three-class labels and a regression target from one linear signal."""
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, n_features)).astype(dtype)
    w = rng.standard_normal(n_features)
    y_reg = X @ w / np.sqrt(n_features) + 0.1 * rng.standard_normal(n)
    y_clf = np.digitize(y_reg, [-0.5, 0.5])  # three classes
    return X, y_clf, y_reg


def assert_same_model(a, b):
    """Two fitted estimators hold the same model, bit for bit: weights (and
    their dtype), iterations, loss and loss curve."""
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert p.dtype == q.dtype
        assert_array_equal(p, q)
    assert a.n_iter_ == b.n_iter_
    assert a.loss_ == b.loss_
    if getattr(a, "loss_curve_", None) is not None:
        assert_array_equal(a.loss_curve_, b.loss_curve_)
