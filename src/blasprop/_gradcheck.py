"""Finite-difference check of the compiled backpropagation."""

import copy
import warnings

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight

from . import _core
from ._base import BaseMLP
from ._threads import training_threads

_ESTIMATOR_TYPES = (
    "a blasprop MLPClassifier or MLPRegressor (scikit-learn's "
    "sklearn.neural_network.MLPClassifier and MLPRegressor are converted to them)"
)


def _sklearn_mlp_class(estimator):
    """blasprop's class for one of scikit-learn's MLPs, else None."""
    from sklearn.neural_network import MLPClassifier as SkClassifier
    from sklearn.neural_network import MLPRegressor as SkRegressor

    from ._classes import MLPClassifier, MLPRegressor

    if isinstance(estimator, SkClassifier):
        return MLPClassifier
    if isinstance(estimator, SkRegressor):
        return MLPRegressor
    return None


def _from_sklearn(estimator, cls):
    """blasprop's estimator with the parameters of scikit-learn's, and its
    weights when it is fitted.

    Only public attributes are read: the label binarizer is rebuilt from
    ``classes_`` and the output activation (softmax: multiclass; logistic
    with one output: binary; with several: multilabel)."""
    params = estimator.get_params(deep=False)
    ours = cls().get_params(deep=False)
    unknown = sorted(set(params) - set(ours))
    if unknown:
        raise TypeError(
            f"{type(estimator).__name__} has parameters blasprop does not know "
            f"({', '.join(unknown)}); pass blasprop.{cls.__name__} instead."
        )
    est = cls(**params)
    if not hasattr(estimator, "coefs_"):
        return est
    est.coefs_ = [np.asarray(c) for c in estimator.coefs_]
    est.intercepts_ = [np.asarray(b) for b in estimator.intercepts_]
    est.n_layers_ = len(est.coefs_) + 1
    est.n_outputs_ = int(estimator.n_outputs_)
    est.out_activation_ = estimator.out_activation_
    est.n_features_in_ = int(estimator.n_features_in_)
    if hasattr(estimator, "feature_names_in_"):
        est.feature_names_in_ = estimator.feature_names_in_
    if cls.__name__ == "MLPClassifier":
        classes = np.asarray(estimator.classes_)
        lb = LabelBinarizer()
        if est.out_activation_ == "logistic" and est.n_outputs_ > 1:
            k = len(classes)
            lb.fit(np.vstack([np.zeros(k, dtype=int), np.ones(k, dtype=int)]))
        else:
            lb.fit(classes)
        lb.classes_ = classes
        est._label_binarizer = lb
        est.classes_ = classes
    return est


def _check_network(est):
    """The fitted weights chain into one network whose input and output
    sizes agree with what the estimator says it was fitted on."""
    coefs, intercepts = est.coefs_, est.intercepts_
    name = type(est).__name__
    if len(coefs) == 0 or len(coefs) != len(intercepts):
        raise ValueError(f"{name}: coefs_ and intercepts_ must be non-empty lists "
                         "of the same length.")
    dtype = np.asarray(coefs[0]).dtype
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"{name}: weights must be float32 or float64, got {dtype}.")
    for i, (c, b) in enumerate(zip(coefs, intercepts)):
        c, b = np.asarray(c), np.asarray(b)
        if (
            c.ndim != 2 or b.shape != (c.shape[1],) or c.dtype != dtype
            or b.dtype != dtype or (i and c.shape[0] != coefs[i - 1].shape[1])
        ):
            raise ValueError(
                f"{name}: coefs_[{i}] of shape {c.shape} and intercepts_[{i}] of "
                f"shape {b.shape} do not continue the network."
            )
    if getattr(est, "n_features_in_", coefs[0].shape[0]) != coefs[0].shape[0]:
        raise ValueError(f"{name}: n_features_in_ is {est.n_features_in_} but the "
                         f"first layer takes {coefs[0].shape[0]} inputs.")
    if est.n_outputs_ != coefs[-1].shape[1]:
        raise ValueError(f"{name}: n_outputs_ is {est.n_outputs_} but the network "
                         f"has {coefs[-1].shape[1]} outputs.")


def _check_labels(est, y):
    """y is of the kind of labels the fitted classifier's output layer
    predicts, and every label is one of its classes."""
    binarizer = getattr(est, "_label_binarizer", None)
    if binarizer is None or not hasattr(est, "classes_"):
        raise ValueError(
            f"{type(est).__name__} has weights but no classes_: not a fitted classifier."
        )
    classes = est.classes_
    multilabel = binarizer.y_type_.startswith("multilabel")
    kind = type_of_target(y, input_name="y")
    shape = np.shape(y)
    if multilabel:
        if kind != "multilabel-indicator" or shape[1] != len(classes):
            raise ValueError(
                "y does not fit the model: the classifier was fitted on a "
                f"multilabel indicator matrix of {len(classes)} columns; y is "
                f"{kind} of shape {shape}."
            )
        return
    if kind not in ("binary", "multiclass"):
        raise ValueError(
            "y does not fit the model: the classifier was fitted on "
            f"{binarizer.y_type_} labels; y is {kind} of shape {shape}."
        )
    known = set(classes.tolist())
    unknown = [c for c in unique_labels(y).tolist() if c not in known]
    if unknown:
        raise ValueError(
            f"y has labels the classifier does not know: {_some(unknown)}; its "
            f"classes_ are {_some(classes.tolist())}."
        )


def _some(labels, n=10):
    text = ", ".join(repr(c) for c in labels[:n])
    return f"[{text}, ... ({len(labels)} in all)]" if len(labels) > n else f"[{text}]"


def _objective_parts(est, X, y, sample_weight):
    """Validated input, target matrix and weights as ``_fit`` builds them,
    the targets checked against the fitted network.

    A classifier's labels are binarized with its own classes (as
    ``partial_fit`` does), never with classes found in y: a label set of
    another size would give a target matrix of another width than the
    network's output."""
    n_outputs = est.coefs_[-1].shape[1]
    if is_classifier(est):
        _check_labels(est, y)
    X, Y = est._validate_input(X, y, incremental=True, reset=False)
    if sample_weight is not None:
        sample_weight = _check_sample_weight(sample_weight, X)
    sample_weight = est._extra_sample_weight(y, sample_weight, False)
    if Y.ndim == 1:
        Y = Y.reshape(-1, 1)
    if Y.shape[1] != n_outputs:
        raise ValueError(
            f"y has {Y.shape[1]} output{'s' if Y.shape[1] != 1 else ''} but the "
            f"fitted network has {n_outputs}."
        )
    return X, Y, sample_weight


def _objective(est, X, Y, sw, dtype, dropout_seed=0):
    """A function params -> (training loss with the L2 term, backprop
    gradient), in ``dtype``; layout, buffers and input are built once.

    With dropout, the training-mode network with the masks drawn from
    ``dropout_seed`` (the same masks at every call). An estimator with
    ``n_jobs`` set is checked on the path its training takes then (row
    blocks shared by threads)."""
    net = est._network(X.shape[0], dtype)
    n_threads = training_threads(getattr(est, "n_jobs", None), net.layout.cap, net.units)
    if X.shape[1] != net.units[0] or Y.shape != (X.shape[0], net.units[-1]):
        # the compiled objective would read past the rows it is given
        raise ValueError(
            f"X of shape {X.shape} and targets of shape {Y.shape} do not fit a "
            f"network of layers {net.units}."
        )
    if X.dtype.itemsize > np.dtype(dtype).itemsize:
        X = X.astype(dtype)  # a float32 kernel cannot read float64 rows
    X_in = _core.Input(X)
    ws = net.workspace(dtype, X_in.sparse, blocked=n_threads > 0)
    Y = np.ascontiguousarray(Y, dtype=dtype)
    sw = np.empty(0, dtype) if sw is None else np.ascontiguousarray(sw, dtype=dtype)
    p = np.empty(net.layout.n_params, dtype=dtype)
    g = np.empty_like(p)
    seed = dropout_seed if net.has_dropout else -1

    def objective(params):
        p[:] = params
        loss = _core.objective(net.layout, ws, X_in, Y, sw, p, g, float(est.alpha), seed,
                               n_threads)
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
        not changed). scikit-learn's ``MLPClassifier`` and ``MLPRegressor``
        are accepted too: blasprop's estimator with the same parameters (and
        weights, when fitted) is checked.
    X, y, sample_weight : the data the loss is evaluated on (keep it small).
        For a fitted estimator, X must have its number of features and y
        must fit its output layer: labels among ``classes_``, of the kind it
        was fitted on (binary or multiclass labels, or a multilabel indicator
        matrix of as many columns as classes); a regressor's y must have
        ``n_outputs_`` columns.
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

    Raises
    ------
    TypeError
        If ``estimator`` is not one of the MLPs above.
    ValueError
        If X or y does not fit a fitted estimator's network.
    """
    sk_class = _sklearn_mlp_class(estimator)
    if sk_class is not None:
        estimator = _from_sklearn(estimator, sk_class)
    elif not isinstance(estimator, BaseMLP):
        raise TypeError(
            f"check_gradients takes {_ESTIMATOR_TYPES}; got {estimator!r}."
        )
    if hasattr(estimator, "coefs_"):
        est = copy.deepcopy(estimator)
        _check_network(est)
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
