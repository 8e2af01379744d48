"""The estimators' base class: validation, initialisation and the fit loops.

Python here validates input and runs once per epoch (stopping rules,
learning-rate schedule, early stopping, verbose output, callbacks); the
compiled core (``_core``) runs every batch. The random-number use and the
arithmetic follow scikit-learn's ``BaseMultilayerPerceptron`` step by step, so
that the same data, parameters and ``random_state`` give the same model.

The network's layout and parameter vector are in ``_network.py``, the BLAS
thread policy and parallel prediction in ``_threads.py``, the stochastic
solvers' state in ``_optimizer.py``.
"""

import time
import warnings
from abc import ABC, abstractmethod
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, validate_data

from . import _core
from ._activations import HIDDEN_ACTIVATIONS, glorot_factor, hidden_activation_names
from ._network import (
    Network,
    checked_model,
    chunk_rows,
    frozen,
    inconsistent,
    layer_units,
    model_snapshot,
    predict_chunk_rows,
    views_of_one_vector,
)
from ._optimizer import SOLVERS, STOCHASTIC_SOLVERS, Optimizer
from ._progress import EpochReporter
from ._threads import (
    blas_thread_count,
    blas_threads_for_fit,
    parallel_predict,
    thread_chooser,
    training_threads,
)

# Pickles of fitted estimators from blasprop 0.1.0 name the optimizer state
# blasprop._base._Optimizer; it has the same attributes under its new name.
_Optimizer = Optimizer

try:  # scikit-learn >= 1.9: its callback API (set_callbacks, ProgressBar, ...)
    from sklearn.callback import CallbackSupportMixin as _CallbackSupport
except ImportError:  # pragma: no cover - older scikit-learn

    class _CallbackSupport:
        pass


def _check_sparse_structure(X):
    """ValueError for a malformed sparse X other than CSR, before scikit-learn's
    validation converts it to CSR (scipy's converters trust indptr and the
    indices). CSR itself is checked by ``_core.Input``, where nothing
    has read it yet either."""
    if sp.issparse(X) and X.format != "csr":
        _core.check_sparse(X)


class _EpochOrder:
    """The training rows of each epoch, in the order scikit-learn visits them."""

    def __init__(self, train_idx, shuffle):
        self.train_idx = train_idx
        self.shuffle = shuffle
        self.sample_idx = np.arange(train_idx.shape[0], dtype=np.intp)
        self.identity = bool(np.array_equal(train_idx, self.sample_idx))

    def next(self, rng):
        if not self.shuffle:
            return self.train_idx
        # sklearn.utils.shuffle(sample_idx, random_state=rng) shuffles an
        # arange and indexes sample_idx with it; the same swaps applied to
        # sample_idx itself give the same order without its input checks or
        # the two gathers, which cost a noticeable share of a short epoch.
        rng.shuffle(self.sample_idx)
        return self.sample_idx if self.identity else self.train_idx[self.sample_idx]


class BaseMLP(_CallbackSupport, BaseEstimator, ABC):
    """Base class for MLP classification and regression (do not use directly)."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(HIDDEN_ACTIVATIONS)), list, tuple],
        "solver": [StrOptions(set(SOLVERS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [
            Interval(Integral, 1, None, closed="left"),
            Options(Real, {np.inf}),
        ],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left"), list, tuple],
        "callbacks": [list, tuple, None],
        "n_jobs": [Integral, None],
    }

    @abstractmethod
    def __init__(self, **params):
        for name, value in params.items():
            setattr(self, name, value)

    # ------------------------------------------------------------------
    # What the subclasses define

    @abstractmethod
    def _validate_input(self, X, y, incremental, reset):
        """Validated X and the 2-D target matrix the network is trained on."""

    @abstractmethod
    def _task_output_activation(self):
        """Output activation for the task being fitted."""

    @abstractmethod
    def _loss_code(self):
        """Loss code of the C kernels for ``out_activation_``."""

    @abstractmethod
    def _score_output(self, output, y, sample_weight):
        """Validation score (early stopping) from the network's output."""

    def _extra_sample_weight(self, y, sample_weight, incremental):
        return sample_weight

    # ------------------------------------------------------------------
    # Network description

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if not hasattr(sizes, "__iter__"):
            sizes = [sizes]
        sizes = list(sizes)
        if np.any(np.array(sizes) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % sizes)
        return sizes

    def _network(self, n_rows_cap, dtype, units=None, exact_cap=False):
        """Layout for chunks of at most ``n_rows_cap`` rows (exactly that many
        with ``exact_cap``, as training batches need)."""
        if units is None:
            units = layer_units(self.coefs_)
        hidden = hidden_activation_names(self.activation, len(units) - 2)
        cap = n_rows_cap if exact_cap else chunk_rows(
            units, np.dtype(dtype).itemsize, n_rows_cap
        )
        return Network(
            units, hidden, self.out_activation_, self._loss_code(),
            getattr(self, "huber_delta", 1.0), cap,
            self._dropout_rates(len(units) - 2),
        )

    def _dropout_rates(self, n_hidden):
        rates = self.dropout
        if np.isscalar(rates):
            return [float(rates)] * n_hidden
        rates = [float(r) for r in rates]
        if len(rates) != n_hidden or any(not 0 <= r < 1 for r in rates):
            raise ValueError(
                f"dropout must be a float in [0, 1) or a list of {n_hidden} such "
                f"floats, one per hidden layer; got {self.dropout!r}."
            )
        return rates

    def _init_coef(self, rng, fan_in, fan_out, factor, dtype):
        init_bound = np.sqrt(factor / (fan_in + fan_out))
        coef = rng.uniform(-init_bound, init_bound, (fan_in, fan_out))
        intercept = rng.uniform(-init_bound, init_bound, fan_out)
        return coef.astype(dtype, copy=False), intercept.astype(dtype, copy=False)

    def _initialize(self, rng, y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._task_output_activation()
        hidden = hidden_activation_names(self.activation, len(layer_units) - 2)
        # built whole, then published: a predict in another thread must not
        # find a network with only some of its layers
        coefs, intercepts = [], []
        for i in range(self.n_layers_ - 1):
            # the layer's own activation; the output layer takes the last
            # hidden one (scikit-learn's single activation when no list), and
            # with no hidden layer at all, the `activation` parameter
            if i < len(hidden):
                act = hidden[i]
            elif hidden:
                act = hidden[-1]
            else:
                act = self.activation if isinstance(self.activation, str) else "relu"
            coef, intercept = self._init_coef(
                rng, layer_units[i], layer_units[i + 1], glorot_factor(act), dtype
            )
            coefs.append(coef)
            intercepts.append(intercept)
        self.coefs_, self.intercepts_ = coefs, intercepts
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [i.copy() for i in self.intercepts_]
        if self.solver in STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.validation_loss_curve_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.validation_loss_curve_ = None
                self.best_validation_score_ = None

    # ------------------------------------------------------------------
    # Fitting

    def _checked_hidden_sizes(self):
        """The hidden layers' sizes, after the checks of the parameters that
        depend on them (activations and dropout rates per layer)."""
        hidden_sizes = self._hidden_sizes()
        hidden_activation_names(self.activation, len(hidden_sizes))
        drop = self._dropout_rates(len(hidden_sizes))
        if self.solver == "lbfgs" and any(drop):
            raise ValueError(
                "dropout is not available with solver='lbfgs' (its objective must "
                "be deterministic); use solver='adam', 'adamw' or 'sgd'."
            )
        return hidden_sizes

    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden_sizes = self._checked_hidden_sizes()
        first_pass = not hasattr(self, "coefs_") or (
            not self.warm_start and not incremental
        )
        _check_sparse_structure(X)
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        n_samples, n_features = X.shape
        dtype = X.dtype
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        sample_weight = self._extra_sample_weight(y, sample_weight, incremental)
        if Y.ndim == 1:
            Y = Y.reshape((-1, 1))
        # n_outputs_ is set by _initialize, or already equal: a partial_fit
        # refused below must not leave the model describing another network
        layer_units = [n_features] + hidden_sizes + [Y.shape[1]]
        rng = check_random_state(self.random_state)
        if first_pass:
            self._initialize(rng, Y, layer_units, dtype)
        else:
            # the attributes training continues from, checked as a predict
            # checks them (they may have been set by hand)
            fitted = checked_model(frozen(self.coefs_), frozen(self.intercepts_),
                                    self.out_activation_, self.activation, None).units
            if fitted != layer_units:
                raise ValueError(
                    "warm_start and partial_fit need the same network shape as the "
                    f"previous fit: got layers {layer_units}, the fitted model has "
                    f"{fitted}."
                )
        Y_split = Y  # labels as scikit-learn stratifies them (bool for classifiers)
        Y = np.ascontiguousarray(Y, dtype=dtype)
        sw = (
            np.empty(0, dtype=dtype)
            if sample_weight is None
            else np.ascontiguousarray(sample_weight, dtype=dtype)
        )
        X_in = _core.Input(X)
        stochastic = self.solver in STOCHASTIC_SOLVERS
        if stochastic:
            rows = self._batch_size(n_samples, warn=False)
        else:
            rows = chunk_rows(layer_units, X.dtype.itemsize, n_samples)
        # scikit-learn's callback API: the fit is a task, each epoch a subtask
        ctx = None
        if hasattr(self, "_init_callback_context"):
            ctx = self._init_callback_context(
                max_subtasks=(1 if incremental else self.max_iter) if stochastic else 0
            )
            ctx.call_on_fit_task_begin(estimator=self, X=X, y=y)
        n_threads = training_threads(self.n_jobs, rows, layer_units)
        with blas_threads_for_fit(layer_units, rows, n_threads):
            if stochastic:
                self._fit_stochastic(
                    X_in, Y, Y_split, sw, rng, layer_units, incremental, (ctx, X, y),
                    n_threads,
                )
            else:
                self._fit_lbfgs(X_in, Y, sw, layer_units, n_threads)
        self._check_finite_weights()
        if ctx is not None:
            ctx.call_on_fit_task_end(
                estimator=self, X=X, y=y,
                reconstruction_attributes=self._reconstruction_attributes(),
            )
        return self

    def _check_finite_weights(self):
        """scikit-learn's error when training ended with NaN or infinite weights."""
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
            )

    def _reconstruction_attributes(self):
        """What a callback needs to evaluate the model as it is now."""
        return {
            "coefs_": [c.copy() for c in self.coefs_],
            "intercepts_": [b.copy() for b in self.intercepts_],
        }

    def _fit_lbfgs(self, X_in, Y, sw, layer_units, n_threads=0):
        # SciPy's L-BFGS-B keeps its memory in float64 but evaluates the
        # objective at points of x0's dtype: a float32 model is evaluated in
        # float32 at float32 points, as in scikit-learn.
        dtype = Y.dtype
        net = self._network(X_in.n_samples, dtype, layer_units)
        ws = net.workspace(dtype, X_in.sparse, blocked=n_threads > 0)
        params = net.pack(self.coefs_, self.intercepts_, dtype)
        grads = np.empty_like(params)
        alpha = float(self.alpha)
        chooser = thread_chooser(n_threads, "objective", tuple(layer_units),
                                 net.layout.cap, dtype.name, X_in.sparse)

        def fun(x):
            params[:] = x
            loss = chooser.timed(_core.objective, net.layout, ws, X_in, Y, sw, params,
                                 grads, alpha, -1)
            return loss, grads.astype(np.float64)

        self._minimize_lbfgs(fun, params, net)

    def _minimize_lbfgs(self, fun, params, net):
        """SciPy's L-BFGS-B from ``params`` on ``fun`` (loss and gradient),
        with fit's options; sets n_iter_, loss_, coefs_ and intercepts_."""
        iprint = 1 if (self.verbose is True or self.verbose >= 1) else -1
        options = {"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol}
        try:  # SciPy < 1.15 still takes iprint
            from sklearn.utils.fixes import _get_additional_lbfgs_options_dict

            options.update(_get_additional_lbfgs_options_dict("iprint", iprint))
        except ImportError:  # pragma: no cover
            pass
        opt_res = scipy.optimize.minimize(
            fun, params.copy(), method="L-BFGS-B", jac=True, options=options
        )
        self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
        self.loss_ = float(opt_res.fun)
        self.coefs_, self.intercepts_ = net.unpack(opt_res.x.astype(params.dtype))

    def _fit_stochastic(self, X_in, Y, Y_split, sw, rng, layer_units, incremental,
                        callback_task=(None, None, None), n_threads=0):
        """Epochs of a stochastic solver: split off the validation rows, size
        the batches, then per epoch run the compiled epoch, score it and
        apply the stopping rules."""
        dtype = Y.dtype
        early_stopping = self.early_stopping
        if early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        train_idx, validation = self._early_stopping_split(X_in.n_samples, Y, Y_split,
                                                           sw, rng)
        n_samples = train_idx.shape[0]
        batch_size = self._batch_size(n_samples)

        net = self._network(batch_size, dtype, layer_units, exact_cap=True)
        ws = net.workspace(dtype, X_in.sparse, blocked=n_threads > 0)
        params = net.pack(self.coefs_, self.intercepts_, dtype)
        self.coefs_, self.intercepts_ = net.unpack(params)
        grads = np.empty_like(params)
        opt = self._stochastic_optimizer(params, incremental)
        order = _EpochOrder(train_idx, self.shuffle)
        chooser = thread_chooser(n_threads, "epoch", tuple(layer_units), batch_size,
                                 dtype.name, X_in.sparse)

        def run_epoch():
            total = self._epoch(net, ws, X_in, Y, sw, order.next(rng), batch_size, params,
                                grads, opt, rng, chooser)
            return total, n_samples

        def validate():
            self._update_validation(X_in, *validation, n_threads=n_threads)

        self._stochastic_loop(run_epoch, validate, params, opt, incremental, callback_task)

    def _stochastic_loop(self, run_epoch, validate, params, opt, incremental,
                         callback_task=(None, None, None)):
        """The epochs and scikit-learn's stopping rules, whatever computes an
        epoch: ``run_epoch()`` trains ``params`` (which coefs_ and
        intercepts_ view) and returns (summed loss, rows); ``validate()``
        scores the model on the validation rows (with early stopping)."""
        early_stopping = self.early_stopping
        callbacks = list(self.callbacks) if self.callbacks else []
        reporter = EpochReporter(self.max_iter) if self.verbose else None
        ctx, X_cb, y_cb = callback_task
        skl_callbacks = ctx is not None and bool(getattr(self, "_skl_callbacks", None))
        start_time = time.perf_counter()
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if skl_callbacks:
                    epoch_ctx = ctx.subcontext(task_name="epoch")
                    epoch_ctx.call_on_fit_task_begin(estimator=self, X=X_cb, y=y_cb)
                total, n_rows = run_epoch()
                self._record_epoch(total, n_rows)
                if self._diverged(params):
                    # stop now rather than run the remaining epochs on NaN;
                    # _fit then raises scikit-learn's error. scikit-learn
                    # runs to max_iter first and warns, so warn the same.
                    if not incremental:
                        self._warn_max_iter()
                    break
                if early_stopping:
                    validate()
                else:
                    self._update_training_loss()
                if reporter:
                    reporter.epoch(
                        self.n_iter_, self.loss_,
                        self.validation_scores_[-1] if early_stopping else None,
                    )
                opt.iteration_ends(self.t_)

                stop = self._no_improvement_stop(opt, reporter)
                if self._run_callbacks(callbacks, start_time):
                    stop = True
                if skl_callbacks and epoch_ctx.call_on_fit_task_end(
                    estimator=self, X=X_cb, y=y_cb,
                    reconstruction_attributes=self._reconstruction_attributes(),
                ):
                    stop = True
                if stop or incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    self._warn_max_iter()
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        finally:
            if reporter:
                reporter.close()

        if early_stopping:
            self.coefs_ = self._best_coefs
            self.intercepts_ = self._best_intercepts

    def _early_stopping_split(self, n_all, Y, Y_split, sw, rng):
        """Row indices to train on, and (val_idx, Y_val, y_val, sw_val) of the
        validation rows with early stopping (else None)."""
        if not self.early_stopping:
            return np.arange(n_all, dtype=np.intp), None
        train_idx, val_idx = self._split_indices(n_all, Y_split, rng)
        Y_val = np.ascontiguousarray(Y[val_idx])
        y_val = self._validation_targets(Y_val)
        sw_val = sw[val_idx] if sw.size else None
        train_idx = np.ascontiguousarray(train_idx, dtype=np.intp)
        return train_idx, (val_idx, Y_val, y_val, sw_val)

    def _needs_stratified_split(self):
        return is_classifier(self) and self.n_outputs_ == 1

    def _split_indices(self, n_all, Y_split, rng):
        """Training and validation row indices, exactly as train_test_split
        splits X and y (stratified by the labels ``Y_split`` for a
        single-output classifier)."""
        stratify = Y_split if self._needs_stratified_split() else None
        train_idx, val_idx = train_test_split(
            np.arange(n_all),
            random_state=rng,
            test_size=self.validation_fraction,
            stratify=stratify,
        )
        if val_idx.shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' "
                "or the size of your dataset."
            )
        return train_idx, val_idx

    def _batch_size(self, n_samples, warn=True):
        """Rows per mini-batch: 'auto' is min(200, n_samples)."""
        if self.batch_size == "auto":
            return min(200, n_samples)
        if warn and self.batch_size > n_samples:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than "
                "sample size. It is going to be clipped"
            )
        return int(np.clip(self.batch_size, 1, n_samples))

    def _stochastic_optimizer(self, params, incremental):
        """The solver's state: kept from the previous partial_fit when it
        fits these parameters, else new."""
        opt = getattr(self, "_optimizer", None)
        if not incremental or opt is None or not opt.fits(
            self.solver, params.shape[0], params.dtype
        ):
            opt = Optimizer(
                self.solver, params.shape[0], params.dtype, self.learning_rate_init,
                self.learning_rate, self.power_t,
            )
            self._optimizer = opt
        return opt

    def _epoch(self, net, ws, X_in, Y, sw, order, batch_size, params, grads, opt, rng,
               chooser):
        """One epoch of the compiled core over the rows ``order`` (on the
        threads ``chooser`` picks); returns the summed loss and advances the
        optimizer's step count."""
        solver = self._solver(opt.code, opt.learning_rate, opt.t)
        # Dropout masks come from the estimator's random state, drawn
        # only when there is dropout so that the stream (and the
        # model) stays scikit-learn's otherwise.
        seed = int(rng.randint(0, 2**62)) if net.has_dropout else -1
        total = chooser.timed(_core.epoch, net.layout, ws, X_in, Y, sw, order, batch_size,
                              params, grads, opt.state1, opt.state2, solver, seed)
        opt.t = solver.t
        return total

    def _solver(self, code, learning_rate, t):
        """The compiled epoch's solver settings, at Adam's step count ``t``."""
        return _core.Solver(
            code, learning_rate, momentum=float(self.momentum),
            nesterov=bool(self.nesterovs_momentum), beta_1=float(self.beta_1),
            beta_2=float(self.beta_2), epsilon=float(self.epsilon),
            alpha=float(self.alpha), t=t,
        )

    def _record_epoch(self, total, n_samples):
        self.n_iter_ += 1
        self.loss_ = total / n_samples
        self.t_ += n_samples
        self.loss_curve_.append(self.loss_)

    def _diverged(self, params):
        """Whether the epoch's loss and some parameter are no longer finite."""
        return not np.isfinite(self.loss_) and not _core.all_finite_params(params)

    def _warn_max_iter(self):
        warnings.warn(
            "Stochastic Optimizer: Maximum iterations (%d) "
            "reached and the optimization hasn't converged yet."
            % self.max_iter,
            ConvergenceWarning,
        )

    def _no_improvement_stop(self, opt, reporter):
        """scikit-learn's rule: stop after n_iter_no_change epochs without
        an improvement of tol (the 'adaptive' schedule first lowers the
        learning rate and starts counting again)."""
        if self._no_improvement_count <= self.n_iter_no_change:
            return False
        if self.early_stopping:
            msg = (
                "Validation score did not improve more than "
                "tol=%f for %d consecutive epochs."
                % (self.tol, self.n_iter_no_change)
            )
        else:
            msg = (
                "Training loss did not improve more than tol=%f"
                " for %d consecutive epochs."
                % (self.tol, self.n_iter_no_change)
            )
        stop = opt.trigger_stopping(msg, reporter)
        if not stop:
            self._no_improvement_count = 0
        return stop

    def _run_callbacks(self, callbacks, start_time):
        if not callbacks:
            return False
        info = {
            "epoch": self.n_iter_,
            "max_iter": self.max_iter,
            "loss": self.loss_,
            "validation_score": (
                self.validation_scores_[-1] if self.validation_scores_ else None
            ),
            "elapsed": time.perf_counter() - start_time,
        }
        stop = False
        for cb in callbacks:
            if cb(self, info):
                stop = True
        return stop

    def _update_validation(self, X_in, val_idx, Y_val, y_val, sw_val, n_threads=0):
        out, val_loss = self._forward_rows(X_in, val_idx, Y_val, sw_val,
                                           n_threads=n_threads)
        self._record_validation(out, val_loss, y_val, sw_val)

    def _record_validation(self, out, val_loss, y_val, sw_val):
        """Score the validation rows' output; count epochs without
        improvement and keep the best weights."""
        val_score = self._score_output(out, y_val, sw_val)
        self.validation_scores_.append(val_score)
        if getattr(self, "validation_loss_curve_", None) is not None:
            self.validation_loss_curve_.append(val_loss)
        last = self.validation_scores_[-1]
        if last < (self.best_validation_score_ + self.tol):
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if last > self.best_validation_score_:
            self.best_validation_score_ = last
            self._best_coefs = [c.copy() for c in self.coefs_]
            self._best_intercepts = [i.copy() for i in self.intercepts_]

    def _update_training_loss(self):
        if self.loss_curve_[-1] > self.best_loss_ - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if self.loss_curve_[-1] < self.best_loss_:
            self.best_loss_ = self.loss_curve_[-1]

    def _validation_targets(self, Y_val):
        return Y_val

    # ------------------------------------------------------------------
    # Prediction

    def _model_attributes(self):
        """The fitted attributes a prediction reads, as they are now (lists
        copied: the caller's view must not change with them)."""
        return (frozen(self.coefs_), frozen(self.intercepts_), self.out_activation_,
                self.activation, getattr(self, "_label_binarizer", None),
                getattr(self, "n_outputs_", None))

    def _model_snapshot(self):
        """The fitted model, read once for a whole prediction call."""
        return model_snapshot(self._model_attributes)

    def _forward_rows(self, X_in, rows=None, Y=None, sw=None, check_finite=False,
                      model=None, n_threads=0):
        """Output layer for rows of a validated input (all rows if None), from
        ``model`` (a snapshot of the fitted attributes; taken now if None).

        Computed in the dtype of X: a float32 model predicting float64 input
        casts its (small) weights, never the input; a float64 model reads
        float32 rows into float64 buffers as it goes (NumPy's promotion, as
        in scikit-learn). With targets ``Y`` of those rows, returns (output,
        mean loss) from the same pass. Listed rows are computed on
        ``n_threads`` threads (one when 0); all rows on as many as BLAS has.
        The result does not depend on the number of threads."""
        if model is None:
            model = self._model_snapshot()
        units = model.units
        if X_in.n_features != units[0]:
            raise inconsistent(
                f"X has {X_in.n_features} features, but coefs_[0] has {units[0]} rows"
            )
        dtype = np.result_type(X_in.X.dtype, model.coefs[0].dtype)
        if dtype not in (np.float32, np.float64):
            dtype = np.dtype(np.float64)
        n = X_in.n_samples if rows is None else rows.shape[0]
        out = np.empty((n, model.n_outputs), dtype=dtype)
        if n == 0:
            return out if Y is None else (out, float("nan"))
        # the loss is only computed against targets, during a fit
        loss_code = self._loss_code() if Y is not None else 0
        net = Network(units, model.hidden, model.out_activation, loss_code,
                      getattr(self, "huber_delta", 1.0),
                      predict_chunk_rows(units, dtype.itemsize, n))
        params = views_of_one_vector(model.coefs, model.intercepts, net.layout)
        if params is None or params.dtype != dtype:
            params = net.pack(model.coefs, model.intercepts, dtype)
        if rows is None and Y is None:
            # as many threads as BLAS would use for the products
            parallel_predict(net, dtype, X_in, params, out, blas_thread_count(),
                             check_finite=check_finite)
            return out
        rows = (np.arange(n, dtype=np.intp) if rows is None
                else np.ascontiguousarray(rows, np.intp))
        if n_threads > 0:
            loss = parallel_predict(net, dtype, X_in, params, out, n_threads, rows, Y, sw)
        else:
            loss = _core.predict_rows(net.layout, net.workspace(dtype, X_in.sparse), X_in,
                                      params, rows, out, Y, sw)
        return out if Y is None else (out, loss)

    def _forward_pass_fast(self, X, check_input=True, model=None):
        if model is None:
            model = self._model_snapshot()
        if not check_input:
            return self._forward_rows(_core.Input(X), model=model)
        _check_sparse_structure(X)
        # Dense X is checked for NaN and infinity by the compiled predict,
        # chunk by chunk in cache, instead of by a costly pass of its own
        # over all of X first. When it finds any, scikit-learn's validation
        # runs in full and raises scikit-learn's error.
        params = dict(accept_sparse=["csr", "csc"], reset=False,
                      dtype=(np.float64, np.float32))
        Xv = validate_data(self, X, ensure_all_finite=sp.issparse(X), **params)
        try:
            return self._forward_rows(_core.Input(Xv), check_finite=True, model=model)
        except _core.NonFiniteInput:
            validate_data(self, X, **params)
            raise

    def _score_with_function(self, output, y, sample_weight, score_function):
        y_pred = self._predict_from_output(output)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return score_function(y, y_pred, sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def __getstate__(self):
        # a copy: on Python 3.11+ the state scikit-learn returns for a class
        # outside sklearn is the instance's own __dict__
        state = dict(super().__getstate__())
        if not state.get("early_stopping", False):
            # only early stopping reads these: elsewhere they are a stale copy
            # of the initial weights that would double the pickle
            state.pop("_best_coefs", None)
            state.pop("_best_intercepts", None)
        return state

    def _check_solver(self):
        if self.solver not in STOCHASTIC_SOLVERS:
            raise AttributeError(
                "partial_fit is only available for stochastic"
                " optimizers. %s is not stochastic." % self.solver
            )
        return True
