"""Finite-difference check of the compiled backpropagation."""

import copy
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight

from . import _core


def _objective_parts(est, X, y, sample_weight):
    """Validated input, target matrix and weights as ``_fit`` builds them."""
    X, Y = est._validate_input(X, y, incremental=False, reset=False)
    if sample_weight is not None:
        sample_weight = _check_sample_weight(sample_weight, X)
    sample_weight = est._extra_sample_weight(y, sample_weight, False)
    if Y.ndim == 1:
        Y = Y.reshape(-1, 1)
    return X, Y, sample_weight


def _objective(est, X, Y, sw, dtype, dropout_seed=0):
    """A function params -> (training loss with the L2 term, backprop
    gradient), in ``dtype``; layout, buffers and input are built once.

    With dropout, the training-mode network with the masks drawn from
    ``dropout_seed`` (the same masks at every call)."""
    if X.dtype.itemsize > np.dtype(dtype).itemsize:
        X = X.astype(dtype)  # a float32 kernel cannot read float64 rows
    net = est._network(X.shape[0], dtype)
    X_in = _core.Input(X)
    ws = net.workspace(dtype, X_in.sparse)
    Y = np.ascontiguousarray(Y, dtype=dtype)
    sw = np.empty(0, dtype) if sw is None else np.ascontiguousarray(sw, dtype=dtype)
    p = np.empty(net.layout.n_params, dtype=dtype)
    g = np.empty_like(p)
    seed = dropout_seed if net.has_dropout else -1

    def objective(params):
        p[:] = params
        loss = _core.objective(net.layout, ws, X_in, Y, sw, p, g, float(est.alpha), seed)
        return loss, g

    return objective


def check_gradients(estimator, X, y, sample_weight=None, *, eps=1e-6,
                    max_checks=2000, random_state=0):
    """Compare blasprop's backpropagation with central finite differences.

    The training loss (mean loss, the L2 term with ``alpha``, sample weights
    and class weights included) is differentiated numerically in float64,
    ``(L(w + eps) - L(w - eps)) / (2 eps)`` for each parameter, and compared
    with the gradient the compiled backward pass computes in the estimator's
    own dtype (float32 for a float32 model).

    Parameters
    ----------
    estimator : MLPClassifier or MLPRegressor
        A fitted estimator is checked at its weights. An unfitted one is first
        fitted for one iteration on (X, y) (on a copy; the estimator given is
        not changed).
    X, y, sample_weight : the data the loss is evaluated on (keep it small).
    eps : float, default=1e-6
        Finite-difference step.
    max_checks : int, default=2000
        At most this many parameters are checked, a random subset when the
        network has more (every layer keeps at least a few).
    random_state : int, RandomState or None, default=0
        Picks the subset.

    Returns
    -------
    errors : ndarray of shape (n_layers - 1,)
        For each weight layer (its weights and intercepts together), the
        largest absolute difference between the two gradients divided by the
        largest absolute entry of the finite-difference gradient in that
        layer.
    """
    if hasattr(estimator, "coefs_"):
        est = copy.deepcopy(estimator)
    else:
        est = clone(estimator).set_params(max_iter=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y, sample_weight=sample_weight)
    est.warm_start = False
    X, Y, sw = _objective_parts(est, X, y, sample_weight)
    dtype = est.coefs_[0].dtype
    net = est._network(X.shape[0], dtype)
    params = net.pack(est.coefs_, est.intercepts_, np.float64)
    analytic = _objective(est, X, Y, sw, dtype)(params)[1].astype(np.float64)
    loss64 = _objective(est, X, Y, sw, np.float64)

    # parameters to check, per layer
    rng = check_random_state(random_state)
    lay = net.layout
    layers = []
    for i in range(len(est.coefs_)):
        idx = np.concatenate([
            lay.coef_off[i] + np.arange(est.coefs_[i].size),
            lay.icpt_off[i] + np.arange(est.intercepts_[i].size),
        ])
        layers.append(idx)
    total = sum(len(i) for i in layers)
    if total > max_checks:
        layers = [
            rng.choice(idx, size=max(4, min(len(idx), max_checks * len(idx) // total)),
                       replace=False)
            for idx in layers
        ]

    errors = np.empty(len(layers))
    for li, idx in enumerate(layers):
        numeric = np.empty(len(idx))
        for j, p in enumerate(idx):
            old = params[p]
            params[p] = old + eps
            plus = loss64(params)[0]
            params[p] = old - eps
            minus = loss64(params)[0]
            params[p] = old
            numeric[j] = (plus - minus) / (2 * eps)
        scale = max(np.max(np.abs(numeric)), np.finfo(np.float64).tiny)
        errors[li] = np.max(np.abs(analytic[idx] - numeric)) / scale
    return errors
