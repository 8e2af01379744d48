"""The test that must never be skipped: backpropagation against central
finite differences, for every activation, loss, task and dtype."""

import numpy as np
import pytest
import scipy.sparse as sp

from blasprop import MLPClassifier, MLPRegressor, check_gradients

from ._reference import HIDDEN

# float64 backprop agrees with float64 differences to ~1e-8; a float32
# backprop carries float32 rounding (~1e-7 relative per operation).
TOL = {np.float64: 1e-6, np.float32: 2e-3}


def _data(task, dtype, n=30, n_features=5, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, n_features).astype(dtype)
    if task == "binary":
        y = rng.randint(2, size=n)
    elif task == "multiclass":
        y = rng.randint(4, size=n)
    elif task == "multilabel":
        y = rng.randint(2, size=(n, 3))
        y[0] = [0, 1, 1]  # every label seen both ways
        y[1] = [1, 0, 0]
    elif task == "poisson":
        y = rng.poisson(2.0, size=(n, 2)).astype(float)
    else:
        y = rng.randn(n, 2)
    return X, y


def _estimator(task, activation, loss=None):
    kw = dict(hidden_layer_sizes=(6, 4), activation=activation, random_state=0,
              alpha=0.1)
    if task in ("binary", "multiclass", "multilabel"):
        return MLPClassifier(**kw)
    return MLPRegressor(loss=loss or task, **kw)


def _assert_close(errors, dtype):
    assert errors.shape == (3,)
    assert np.all(errors < TOL[dtype]), errors


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", sorted(HIDDEN))
@pytest.mark.parametrize(
    "task", ["binary", "multiclass", "multilabel", "squared_error", "poisson",
             "huber", "absolute_error"],
)
def test_gradients_every_activation_loss_task(task, activation, dtype):
    X, y = _data("poisson" if task == "poisson" else task, dtype)
    est = _estimator(task, activation)
    if task == "huber":
        est.set_params(huber_delta=0.5)  # both branches of the loss are used
    _assert_close(check_gradients(est, X, y), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gradients_with_sample_weight_and_sparse_input(dtype):
    X, y = _data("multiclass", dtype)
    X[np.abs(X) < 0.7] = 0
    sw = np.random.RandomState(1).rand(X.shape[0]) * 3
    est = _estimator("multiclass", "tanh")
    dense = check_gradients(est, X, y, sample_weight=sw)
    sparse = check_gradients(est, sp.csr_matrix(X), y, sample_weight=sw)
    _assert_close(dense, dtype)
    _assert_close(sparse, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gradients_per_layer_activations_and_class_weight(dtype):
    X, y = _data("multiclass", dtype)
    est = MLPClassifier(hidden_layer_sizes=(6, 5, 4),
                        activation=["gelu", "elu", "logistic"],
                        class_weight={0: 3.0, 1: 0.5}, random_state=0, alpha=0.01)
    errors = check_gradients(est, X, y)
    assert errors.shape == (4,)
    assert np.all(errors < TOL[dtype]), errors


def test_gradient_check_detects_a_wrong_gradient(monkeypatch):
    """The checker must fail when backprop is wrong: corrupt the gradient the
    compiled objective returns and expect a large error."""
    from blasprop import _core

    real = _core.objective

    def wrong(*args):
        loss = real(*args)
        grads = args[6]
        grads[0] *= 1.5
        return loss

    X, y = _data("binary", np.float64)
    est = _estimator("binary", "tanh")
    monkeypatch.setattr(_core, "objective", wrong)
    errors = check_gradients(est, X, y, max_checks=10_000)
    assert errors[0] > 1e-3


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("dropout", [0.3, [0.5, 0.0]])
def test_gradients_with_dropout_fixed_mask(dropout, dtype):
    X, y = _data("multiclass", dtype)
    est = MLPClassifier(hidden_layer_sizes=(6, 4), activation="silu",
                        dropout=dropout, random_state=0, alpha=0.01)
    _assert_close(check_gradients(est, X, y), dtype)


def test_gradient_check_subset_for_large_networks():
    X, y = _data("multiclass", np.float64, n=20, n_features=40)
    est = MLPClassifier(hidden_layer_sizes=(60,), random_state=0)
    errors = check_gradients(est, X, y, max_checks=200)
    assert errors.shape == (2,) and np.all(errors < 1e-6)
