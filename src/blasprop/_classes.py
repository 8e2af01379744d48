"""MLPClassifier and MLPRegressor: scikit-learn's API on blasprop's core."""

from numbers import Real

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    type_of_target,
    unique_labels,
)
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ._activations import BINARY_LOG_LOSS, LOG_LOSS, REGRESSION_LOSSES
from ._base import BaseMLP

# Where the HTML repr (Jupyter) links an estimator's name to: the API
# reference of the estimators in the repository's docs/api.md.
_DOCS_URL = "https://github.com/blasprop/blasprop/blob/main/docs/api.md"
_DOC_LINK = _DOCS_URL + "#mlpclassifier-and-mlpregressor"

# numpydoc with standard sections only: scikit-learn's HTML repr parses the
# class docstring for its parameter tooltips and warns on any other section.
_SHARED_DOC = """
    The parameters, defaults, attributes and methods are scikit-learn's
    (``sklearn.neural_network.{name}``, 1.9), and with the same data,
    parameters and ``random_state`` the fitted model is the same, up to
    floating-point rounding. Training runs in compiled code (BLAS matrix
    products, the GIL released for whole epochs); float32 input trains and
    predicts in float32.

    The Parameters section lists blasprop's own parameters and those that
    take more values than in scikit-learn. The others (hidden_layer_sizes,
    alpha, batch_size, learning_rate, learning_rate_init, power_t, max_iter,
    shuffle, random_state, tol, verbose, warm_start, momentum,
    nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2,
    epsilon, n_iter_no_change, max_fun) are scikit-learn's, with the same
    meaning and defaults: see its documentation.

    Parameters
    ----------
{first}    activation : str or list of str, default='relu'
        'identity', 'logistic', 'tanh', 'relu' as in scikit-learn, and also
        'leaky_relu' (slope 0.01), 'elu' (alpha 1), 'gelu' (exact, erf form),
        'silu' (x * sigmoid(x)) and 'softplus' (log(1 + e^x)). A list gives one
        activation per hidden layer.

    solver : {{'adam', 'sgd', 'lbfgs', 'adamw'}}, default='adam'
        'adamw' is Adam with decoupled weight decay: ``alpha`` is then the
        decay rate (each step multiplies the weights by
        ``1 - learning_rate_init * alpha``) instead of an L2 term in the loss.
{extra}
    dropout : float or list of float, default=0.0
        Inverted dropout on the hidden layers during training (stochastic
        solvers only): each hidden unit is zeroed with this probability and
        the others are scaled by 1 / (1 - dropout). A list gives one rate per
        hidden layer. The masks are drawn from ``random_state``, so fits are
        reproducible; prediction never drops units. Not available with
        'lbfgs'.

    callbacks : list of callable, default=None
        Each is called once per epoch (stochastic solvers) as
        ``callback(estimator, info)``; ``info`` holds ``epoch``, ``max_iter``,
        ``loss``, ``validation_score`` (None without early stopping) and
        ``elapsed`` (seconds since fit started). A callback that returns True
        stops training after that epoch.

    n_jobs : int, default=None
        Threads that train (and compute L-BFGS's objective): each mini-batch
        is cut into row blocks that the threads share. ``None`` means 1
        unless in a :obj:`joblib.parallel_config` context; ``-1`` means all
        processors. With ``None`` (and no such context) training follows
        scikit-learn's order of operations; with any value the batch is cut
        into blocks whose number depends on the batch size alone, so the
        fitted model is the same, bit for bit, with 1, 2 or 16 threads (and
        differs from the ``None`` model by rounding). BLAS runs on one thread
        inside each training thread. ``threadpoolctl.threadpool_limits``
        bounds the threads as for scikit-learn's OpenMP code.

    Attributes
    ----------
    validation_loss_curve_ : list of float or None
        With ``early_stopping``, the mean loss on the validation set after each
        epoch (weighted by ``sample_weight``, without the L2 term), beside
        ``validation_scores_``; else None. The other fitted attributes
        ({attributes}) are
        scikit-learn's.

    See Also
    --------
    sklearn.neural_network.{name} : The scikit-learn estimator this one
        replaces, where the shared parameters and attributes are documented.
    blasprop.check_gradients : Finite-difference check of the backpropagation.
    blasprop.save : Save a fitted model to a file that loads without pickle.

    Notes
    -----
    The API reference, with what differs from scikit-learn, is docs/api.md
    in blasprop's repository: {url}

    Examples
    --------
{example}
"""

def _class_doc(summary, name, attributes, example, first="", extra=""):
    return summary + "\n" + _SHARED_DOC.format(
        name=name, attributes=attributes, url=_DOCS_URL,
        example=example, first=first, extra=extra,
    )


class MLPClassifier(ClassifierMixin, BaseMLP):
    __doc__ = _class_doc(
        "Multi-layer perceptron classifier.",
        "MLPClassifier",
        attributes="classes_, loss_, best_loss_, loss_curve_,\n        "
        "validation_scores_, best_validation_score_, t_, coefs_, intercepts_,\n        "
        "n_features_in_, feature_names_in_, n_iter_, n_layers_, n_outputs_,\n        "
        "out_activation_",
        example="""\
    >>> from sklearn.datasets import load_digits
    >>> from blasprop import MLPClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = MLPClassifier(hidden_layer_sizes=(64,), early_stopping=True,
    ...                     random_state=0).fit(X / 16, y)
    >>> clf.predict(X[:3] / 16)
    array([0, 1, 2])""",
        extra="""
    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes, multiplied into ``sample_weight`` (the
        ``compute_sample_weight`` convention of scikit-learn): they act on the
        loss, its gradient and the early-stopping score. 'balanced' is not
        available in ``partial_fit``.
""",
    )

    _doc_link_module = "blasprop"
    _doc_link_template = _DOC_LINK

    _parameter_constraints: dict = {
        **BaseMLP._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        class_weight=None,
        dropout=0.0,
        callbacks=None,
        n_jobs=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.class_weight = class_weight
        self.dropout = dropout
        self.callbacks = callbacks
        self.n_jobs = n_jobs

    loss = "log_loss"

    def _task_output_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _loss_code(self):
        return LOG_LOSS if self.out_activation_ == "softmax" else BINARY_LOG_LOSS

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
            dtype=(np.float64, np.float32), reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            # fitted before it is published: a predict in another thread may
            # read the attribute at any moment
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same "
                        "classes as in the previous call to fit. Previously "
                        f"got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    "`y` has classes not in `self.classes_`. "
                    f"`self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y

    def _extra_sample_weight(self, y, sample_weight, incremental):
        if self.class_weight is None:
            return sample_weight
        if self.class_weight == "balanced" and incremental:
            raise ValueError(
                "class_weight 'balanced' is not supported for partial_fit. Pass the "
                "weights of the classes as a dict, e.g. from "
                "sklearn.utils.class_weight.compute_class_weight."
            )
        cw = compute_sample_weight(self.class_weight, y)
        if sample_weight is None:
            return cw.astype(np.float64)
        return sample_weight * cw.astype(sample_weight.dtype)

    def _validation_targets(self, Y_val):
        return self._label_binarizer.inverse_transform(Y_val)

    def _predict_from_output(self, y_pred, model=None):
        # ``model``: the snapshot the output was computed from (see
        # BaseMLP._model_snapshot); the attributes as they are now if None
        n_outputs = self.n_outputs_ if model is None else model.n_outputs
        binarizer = self._label_binarizer if model is None else model.label_binarizer
        if n_outputs == 1:
            y_pred = y_pred.ravel()
        return binarizer.inverse_transform(y_pred)

    def _score_output(self, output, y, sample_weight):
        return self._score_with_function(output, y, sample_weight, accuracy_score)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and target(s) y.

        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns self.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def predict(self, X):
        """Predict using the multi-layer perceptron classifier."""
        # one attribute, not a scan of vars(self): a fit in another thread
        # adds and removes attributes (RuntimeError: dictionary changed size)
        check_is_fitted(self, "coefs_")
        model = self._model_snapshot()
        return self._predict_from_output(self._forward_pass_fast(X, model=model), model)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Update the model with a single iteration over the given data.

        ``classes`` is required on the first call (all labels that will ever
        appear); ``y`` need not contain all of them.
        """
        if _check_partial_fit_first_call(self, classes):
            # fitted before it is published, as in _validate_input
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer = LabelBinarizer().fit(y)
            else:
                self._label_binarizer = LabelBinarizer().fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_log_proba(self, X):
        """Log of the probability estimates, ``log(predict_proba(X))``."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def predict_proba(self, X):
        """Probability estimates, columns ordered as ``classes_``."""
        # one attribute, not a scan of vars(self): a fit in another thread
        # adds and removes attributes (RuntimeError: dictionary changed size)
        check_is_fitted(self, "coefs_")
        model = self._model_snapshot()
        y_pred = self._forward_pass_fast(X, model=model)
        if model.n_outputs == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMLP):
    __doc__ = _class_doc(
        "Multi-layer perceptron regressor.",
        "MLPRegressor",
        attributes="loss_, best_loss_, loss_curve_, validation_scores_,\n        "
        "best_validation_score_, t_, coefs_, intercepts_, n_features_in_,\n        "
        "feature_names_in_, n_iter_, n_layers_, n_outputs_, out_activation_",
        example="""\
    >>> from sklearn.datasets import make_regression
    >>> from blasprop import MLPRegressor
    >>> X, y = make_regression(n_samples=200, n_features=5, random_state=0)
    >>> reg = MLPRegressor(hidden_layer_sizes=(16,), solver="lbfgs",
    ...                    max_iter=1000, random_state=0).fit(X, y / 100)
    >>> round(reg.score(X, y / 100), 2)
    1.0""",
        first="""\
    loss : {'squared_error', 'poisson', 'huber', 'absolute_error'}, default='squared_error'
        'squared_error' (half squared error, identity output) and 'poisson'
        (half Poisson deviance, exponential output) as in scikit-learn;
        'huber' (quadratic within ``huber_delta`` of the target, linear
        beyond) and 'absolute_error', both with identity output. Losses of
        several outputs are averaged over the outputs, except poisson (summed,
        as in scikit-learn). Unlike scikit-learn, the gradient for several
        outputs is the gradient of the reported loss (scikit-learn's is
        n_outputs times larger for squared_error, its issue #8349).

""",
        extra="""
    huber_delta : float, default=1.0
        Threshold of the Huber loss.
""",
    )

    _doc_link_module = "blasprop"
    _doc_link_template = _DOC_LINK

    _parameter_constraints: dict = {
        **BaseMLP._parameter_constraints,
        "loss": [StrOptions(set(REGRESSION_LOSSES))],
        "huber_delta": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        huber_delta=1.0,
        dropout=0.0,
        callbacks=None,
        n_jobs=None,
    ):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.huber_delta = huber_delta
        self.dropout = dropout
        self.callbacks = callbacks
        self.n_jobs = n_jobs

    def _task_output_activation(self):
        return REGRESSION_LOSSES[self.loss][1]

    def _loss_code(self):
        return REGRESSION_LOSSES[self.loss][0]

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
            y_numeric=True, dtype=(np.float64, np.float32), reset=reset,
        )
        if y.dtype.kind in "USV":
            # scikit-learn fails here with NumPy's TypeError (no subtraction
            # of strings) rather than training on text parsed as numbers
            raise TypeError(
                f"The target y must be numeric for regression, got dtype {y.dtype}."
            )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _predict_from_output(self, y_pred, model=None):
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    def _score_output(self, output, y, sample_weight):
        return self._score_with_function(output, y, sample_weight, r2_score)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and target(s) y. Returns self."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def predict(self, X):
        """Predict using the multi-layer perceptron model."""
        # one attribute, not a scan of vars(self): a fit in another thread
        # adds and removes attributes (RuntimeError: dictionary changed size)
        check_is_fitted(self, "coefs_")
        return self._predict_from_output(self._forward_pass_fast(X))

    # scikit-learn 1.9's MLPRegressor guards partial_fit with
    # ``available_if(lambda est: est._check_solver)``: the method is never
    # called, so partial_fit exists for every solver (with 'lbfgs' it runs a
    # full fit). Kept as it is for drop-in behaviour.
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with a single iteration over the given data."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)
