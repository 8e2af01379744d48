"""Base class of the estimators: validation, RNG use and the epoch loop.

Python here validates input and runs once per epoch (stopping rules,
learning-rate schedule, early stopping, verbose output, callbacks); the
compiled core (``_core``) runs every batch. The random-number use and the
arithmetic follow scikit-learn's ``BaseMultilayerPerceptron`` step by step, so
that the same data, parameters and ``random_state`` give the same model.
"""

import contextlib
import threading
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

from . import _blas, _core
from ._progress import EpochReporter

try:  # scikit-learn >= 1.9: its callback API (set_callbacks, ProgressBar, ...)
    from sklearn.callback import CallbackSupportMixin as _CallbackSupport
except ImportError:  # pragma: no cover - older scikit-learn

    class _CallbackSupport:
        pass
from ._activations import (
    HIDDEN_ACTIVATIONS,
    OUTPUT_ACTIVATIONS,
    glorot_factor,
    hidden_activation_names,
)

# How many times a prediction reads the fitted attributes twice over before
# it gives up on getting the same objects both times (another thread keeps
# refitting the estimator).
_SNAPSHOT_TRIES = 3

_STOCHASTIC_SOLVERS = ("sgd", "adam", "adamw")
_SOLVER_CODES = {"sgd": _core.SGD, "adam": _core.ADAM, "adamw": _core.ADAMW}

# BLAS thread policy: when the largest matrix product of a batch has fewer
# multiply-adds than this, training runs BLAS on one thread. Spreading such
# small products over threads costs more in hand-offs than it gains, and on
# a busy machine far more (a 200-row epoch of a 64-100-10 network took ~10x
# longer with two OpenBLAS threads than with one while other processes ran).
_SMALL_GEMM = 1 << 22
_THREADPOOLS = None
# The limit is process-wide (BLAS has one thread count), so overlapping fits
# share it: the first to enter sets one thread, the last to leave restores
# what was there. Saving and restoring per fit would let a fit that started
# under another's limit "restore" that limit for good.
_THREAD_LOCK = threading.Lock()
_THREAD_USERS = 0
_THREAD_RESTORE = None


def _threadpools():
    global _THREADPOOLS
    if _THREADPOOLS is None:
        from threadpoolctl import ThreadpoolController

        _THREADPOOLS = ThreadpoolController()  # scans the loaded libraries once
    return _THREADPOOLS


_VECTOR_POLICY = None


def _choose_vector_gemm():
    """Once per process: tell the BLAS gateway which vector shapes and
    transposes to send to gemm's small-matrix kernels, from the BLAS build
    SciPy uses (see _blas.pyx and _config.small_matrix_gemm)."""
    global _VECTOR_POLICY
    if _VECTOR_POLICY is None:
        from ._config import scipy_blas, small_matrix_gemm

        small = small_matrix_gemm(scipy_blas())
        # float one-row products stay on sgemv, which was the faster there
        _VECTOR_POLICY = (small, False, small, small, small)
        _blas.set_vector_gemm(*_VECTOR_POLICY)
    return _VECTOR_POLICY


def _blas_thread_count():
    """How many threads BLAS may use now (threadpoolctl's limit, if any)."""
    return max((c.num_threads for c in _threadpools().lib_controllers
                if c.user_api == "blas"), default=1)


@contextlib.contextmanager
def _blas_threads(units, rows):
    """One BLAS thread for the duration of a fit on small products."""
    work = max(rows * a * b for a, b in zip(units, units[1:]))
    if work >= _SMALL_GEMM:
        yield
        return
    with _one_blas_thread():
        yield


@contextlib.contextmanager
def _one_blas_thread():
    """BLAS on one thread until the last overlapping user leaves."""
    global _THREAD_USERS, _THREAD_RESTORE
    with _THREAD_LOCK:
        _threadpools()
        if _THREAD_USERS == 0:
            _THREAD_RESTORE = _THREADPOOLS.limit(limits=1, user_api="blas")
        _THREAD_USERS += 1
    try:
        yield
    finally:
        with _THREAD_LOCK:
            _THREAD_USERS -= 1
            if _THREAD_USERS == 0:
                _THREAD_RESTORE.restore_original_limits()
                _THREAD_RESTORE = None


def _check_sparse_structure(X):
    """ValueError for a malformed sparse X other than CSR, before scikit-learn's
    validation converts it to CSR (scipy's converters trust indptr and the
    indices). CSR itself is checked by ``_core.Input``, where nothing
    has read it yet either."""
    if sp.issparse(X) and X.format != "csr":
        _core.check_sparse(X)


# Rows per chunk for prediction and full-data objectives: keep the layer
# buffers near this many bytes.
_CHUNK_BYTES = 1 << 25
_MAX_CHUNK_ROWS = 16384


def _row_bytes(units, itemsize):
    """Workspace bytes per row (activations, input row, deltas)."""
    return itemsize * (2 * sum(units[1:]) + units[0] + 2 * max(units[1:]))


def _chunk_rows(units, itemsize, n_rows):
    per_row = _row_bytes(units, itemsize)
    return int(max(1, min(n_rows, _MAX_CHUNK_ROWS, _CHUNK_BYTES // per_row)))


# Prediction works on chunks whose buffers stay in a core's L2 cache (about
# a megabyte; at least 512 rows, so that wide layers still make full-size
# gemms), and spreads the chunks over as many threads as BLAS may use, each
# thread calling BLAS on one thread of its own. The chunks are the same
# whatever the number of threads, so the predictions are too, bit for bit.
# Seed network [39, 39, 39, 1], 100,000 rows, float64, 2 cores: 24.7 ms with
# 16,384-row chunks and BLAS on two threads, 12.9 ms like this.
_PREDICT_CHUNK_BYTES = 1 << 20
_PREDICT_MIN_ROWS = 512


def _predict_chunk_rows(units, itemsize, n_rows):
    per_row = _row_bytes(units, itemsize)
    return int(max(1, min(n_rows, max(_PREDICT_MIN_ROWS, _PREDICT_CHUNK_BYTES // per_row))))


def _parallel_predict(net, dtype, X_in, params, out, check_finite):
    """``_core.predict`` of all rows of ``X_in`` into ``out``, its chunks
    shared by threads (``_core.predict_shared``): each takes the next chunk
    when it is free (the cores of a shared machine are often not equally
    fast; an even split waits for the slower one)."""
    n, cap = out.shape[0], net.layout.cap
    n_threads = min(_blas_thread_count(), -(-n // cap))
    if n_threads < 2:
        _core.predict(net.layout, net.workspace(dtype, X_in.sparse), X_in, params,
                      out, check_finite=check_finite)
        return
    chunks = np.zeros(1, np.intp)
    errors = []

    def part():
        try:
            _core.predict_shared(net.layout, net.workspace(dtype, X_in.sparse), X_in,
                                 params, out, chunks, check_finite=check_finite)
        except BaseException as exc:  # raised again in the calling thread
            errors.append(exc)

    with _one_blas_thread():
        helpers = [threading.Thread(target=part, daemon=True)
                   for _ in range(1, n_threads)]
        for h in helpers:
            h.start()
        part()
        for h in helpers:
            h.join()
    if errors:
        raise errors[0]


class _Optimizer:
    """State of a stochastic solver that lives across epochs and partial_fit
    calls (learning rate, velocities or moments, Adam's step count)."""

    def __init__(self, solver, n_params, dtype, learning_rate_init, lr_schedule,
                 power_t):
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.learning_rate = float(learning_rate_init)
        self.lr_schedule = lr_schedule if solver == "sgd" else "constant"
        self.power_t = power_t
        self.t = 0
        self.state1 = np.zeros(n_params, dtype=dtype)
        self.state2 = np.zeros(n_params if solver != "sgd" else 1, dtype=dtype)

    def iteration_ends(self, time_step):
        if self.lr_schedule == "invscaling":
            self.learning_rate = (
                float(self.learning_rate_init) / (time_step + 1) ** self.power_t
            )

    def trigger_stopping(self, msg, reporter):
        """Whether to stop; the 'adaptive' schedule first divides the
        learning rate by 5 until it is below 1e-6."""
        if self.lr_schedule != "adaptive":
            if reporter:
                reporter.message(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if reporter:
                reporter.message(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if reporter:
            reporter.message(msg + " Setting learning rate to %f" % self.learning_rate)
        return False


class _Network:
    """The flat parameter vector of a fitted model and its layout."""

    def __init__(self, units, hidden_acts, out_act, loss_code, huber_delta, cap,
                 dropout=None):
        _choose_vector_gemm()
        codes = [HIDDEN_ACTIVATIONS[a] for a in hidden_acts]
        codes.append(OUTPUT_ACTIVATIONS[out_act])
        self.units = list(units)
        self.layout = _core.Layout(units, codes, loss_code, huber_delta, cap, dropout)
        self.has_dropout = self.layout.d_size > 0

    def workspace(self, dtype, sparse):
        return _core.Workspace(self.layout, dtype, self.units[0], sparse)

    def pack(self, coefs, intercepts, dtype):
        """Parameters as one vector, laid out like scikit-learn's ``_pack``."""
        u = self.units
        if len(coefs) != len(u) - 1 or len(intercepts) != len(u) - 1 or any(
            np.shape(c) != (u[i], u[i + 1]) or np.shape(b) != (u[i + 1],)
            for i, (c, b) in enumerate(zip(coefs, intercepts))
        ):
            # every slot of the vector must be written: it starts uninitialised
            raise _inconsistent(
                f"coefs_ {[np.shape(c) for c in coefs]} and intercepts_ "
                f"{[np.shape(b) for b in intercepts]} do not make the network {u}"
            )
        flat = np.empty(self.layout.n_params, dtype=dtype)
        for c, off in zip(coefs, self.layout.coef_off):
            flat[off : off + c.size] = c.ravel()
        for b, off in zip(intercepts, self.layout.icpt_off):
            flat[off : off + b.size] = b
        return flat

    def unpack(self, flat):
        """Views of ``flat`` shaped as coefs_ and intercepts_."""
        u = self.units
        coefs = [
            flat[off : off + u[i] * u[i + 1]].reshape(u[i], u[i + 1])
            for i, off in enumerate(self.layout.coef_off)
        ]
        intercepts = [
            flat[off : off + u[i + 1]] for i, off in enumerate(self.layout.icpt_off)
        ]
        return coefs, intercepts


def _views_of_one_vector(coefs, intercepts, layout):
    """The vector that coefs and intercepts are views of, or None."""
    base = coefs[0].base
    if not isinstance(base, np.ndarray) or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    start = base.__array_interface__["data"][0]
    item = base.itemsize
    arrays = list(coefs) + list(intercepts)
    offsets = list(layout.coef_off) + list(layout.icpt_off)
    for a, off in zip(arrays, offsets):
        if (
            a.base is not base
            or a.dtype != base.dtype
            or not a.flags.c_contiguous
            or a.__array_interface__["data"][0] != start + off * item
        ):
            return None
    if base.size != layout.n_params:
        return None
    return base


class _Model:
    """The fitted model as one prediction call sees it, from start to end.

    Refitting replaces ``coefs_``, ``intercepts_``, ``out_activation_`` and
    the label binarizer one after the other; a call that read each of them
    when it needed it could mix two models (and size its output for one and
    its network for the other). A call reads them once, into this, checks
    that they belong together, and uses nothing else."""

    __slots__ = ("coefs", "intercepts", "units", "hidden", "out_activation",
                 "label_binarizer")

    def __init__(self, coefs, intercepts, units, hidden, out_activation,
                 label_binarizer):
        self.coefs = coefs
        self.intercepts = intercepts
        self.units = units
        self.hidden = hidden
        self.out_activation = out_activation
        self.label_binarizer = label_binarizer

    @property
    def n_outputs(self):
        return self.units[-1]


def _frozen(value):
    """A list's items as they are now (a tuple); anything else as it is."""
    return tuple(value) if isinstance(value, list) else value


def _same_objects(a, b):
    """Whether two reads of the fitted attributes found the same objects."""
    if isinstance(a, (tuple, list)):
        return (isinstance(b, (tuple, list)) and len(a) == len(b)
                and all(_same_objects(x, y) for x, y in zip(a, b)))
    return a is b or (isinstance(a, str) and a == b)


def _inconsistent(what):
    return ValueError(
        f"The fitted attributes are inconsistent: {what}. Were they set by hand, "
        "or was the estimator refitted by another thread during this call?"
    )


def _checked_model(coefs, intercepts, out_activation, activation, label_binarizer,
                   n_outputs=None):
    """A _Model of these attributes, or ValueError saying what does not fit."""
    if not isinstance(coefs, (list, tuple)) or not isinstance(intercepts, (list, tuple)):
        raise _inconsistent("coefs_ and intercepts_ must be lists of arrays")
    if not coefs or len(coefs) != len(intercepts):
        raise _inconsistent(f"{len(coefs)} coefs_ for {len(intercepts)} intercepts_")
    coefs = [np.asarray(c) for c in coefs]
    intercepts = [np.asarray(b) for b in intercepts]
    for i, (c, b) in enumerate(zip(coefs, intercepts)):
        if c.ndim != 2 or c.dtype.kind not in "fiu" or b.dtype.kind not in "fiu":
            raise _inconsistent(
                f"coefs_[{i}] must be a 2-D array of real numbers, got shape "
                f"{c.shape} and dtype {c.dtype} (intercepts_[{i}]: {b.dtype})"
            )
        if b.shape != (c.shape[1],):
            raise _inconsistent(
                f"intercepts_[{i}] has shape {b.shape}, coefs_[{i}] has "
                f"{c.shape[1]} columns"
            )
        if i and c.shape[0] != coefs[i - 1].shape[1]:
            raise _inconsistent(
                f"coefs_[{i}] has {c.shape[0]} rows, coefs_[{i - 1}] has "
                f"{coefs[i - 1].shape[1]} columns"
            )
    units = [coefs[0].shape[0]] + [c.shape[1] for c in coefs]
    if min(units) < 1:
        raise _inconsistent(f"a layer has no units (layers {units})")
    if n_outputs is not None and n_outputs != units[-1]:
        raise _inconsistent(f"n_outputs_ is {n_outputs}, coefs_[-1] has {units[-1]} columns")
    if out_activation not in OUTPUT_ACTIVATIONS:
        raise _inconsistent(f"unknown out_activation_ {out_activation!r}")
    hidden = hidden_activation_names(activation, len(units) - 2)
    unknown = [a for a in hidden if a not in HIDDEN_ACTIVATIONS]
    if unknown:
        raise ValueError(f"Unknown activation {unknown[0]!r}; expected one of "
                         f"{sorted(HIDDEN_ACTIVATIONS)}.")
    if label_binarizer is not None:
        y_type = getattr(label_binarizer, "y_type_", None)
        classes = getattr(label_binarizer, "classes_", None)
        if y_type is None or classes is None:
            raise _inconsistent("the label binarizer is not fitted")
        n_out, n_classes = units[-1], len(classes)
        if y_type == "multiclass":
            ok = n_out == n_classes and out_activation == "softmax"
        elif y_type == "binary":
            ok = n_out == 1 and n_classes <= 2 and out_activation == "logistic"
        else:
            ok = n_out == n_classes and out_activation == "logistic"
        if not ok:
            raise _inconsistent(
                f"a {y_type} classifier of {n_classes} classes with {n_out} outputs "
                f"and out_activation_={out_activation!r}"
            )
    return _Model(coefs, intercepts, units, hidden, out_activation, label_binarizer)


class BaseMLP(_CallbackSupport, BaseEstimator, ABC):
    """Base class for MLP classification and regression (do not use directly)."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(HIDDEN_ACTIVATIONS)), list, tuple],
        "solver": [StrOptions({"lbfgs", "sgd", "adam", "adamw"})],
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
            units = [self.coefs_[0].shape[0]] + [c.shape[1] for c in self.coefs_]
        hidden = hidden_activation_names(self.activation, len(units) - 2)
        cap = n_rows_cap if exact_cap else _chunk_rows(
            units, np.dtype(dtype).itemsize, n_rows_cap
        )
        return _Network(
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
        if self.solver in _STOCHASTIC_SOLVERS:
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

    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden_sizes = self._hidden_sizes()
        hidden_activation_names(self.activation, len(hidden_sizes))
        drop = self._dropout_rates(len(hidden_sizes))
        if self.solver == "lbfgs" and any(drop):
            raise ValueError(
                "dropout is not available with solver='lbfgs' (its objective must "
                "be deterministic); use solver='adam', 'adamw' or 'sgd'."
            )
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
        self.n_outputs_ = Y.shape[1]
        layer_units = [n_features] + hidden_sizes + [self.n_outputs_]
        rng = check_random_state(self.random_state)
        if first_pass:
            self._initialize(rng, Y, layer_units, dtype)
        else:
            # the attributes training continues from, checked as a predict
            # checks them (they may have been set by hand)
            fitted = _checked_model(_frozen(self.coefs_), _frozen(self.intercepts_),
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
        stochastic = self.solver in _STOCHASTIC_SOLVERS
        if stochastic:
            rows = min(200 if self.batch_size == "auto" else self.batch_size, n_samples)
        else:
            rows = _chunk_rows(layer_units, X.dtype.itemsize, n_samples)
        # scikit-learn's callback API: the fit is a task, each epoch a subtask
        ctx = None
        if hasattr(self, "_init_callback_context"):
            ctx = self._init_callback_context(
                max_subtasks=(1 if incremental else self.max_iter) if stochastic else 0
            )
            ctx.call_on_fit_task_begin(estimator=self, X=X, y=y)
        with _blas_threads(layer_units, rows):
            if stochastic:
                self._fit_stochastic(
                    X_in, Y, Y_split, sw, rng, layer_units, incremental, (ctx, X, y)
                )
            else:
                self._fit_lbfgs(X_in, Y, sw, layer_units)
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
            )
        if ctx is not None:
            ctx.call_on_fit_task_end(
                estimator=self, X=X, y=y,
                reconstruction_attributes=self._reconstruction_attributes(),
            )
        return self

    def _reconstruction_attributes(self):
        """What a callback needs to evaluate the model as it is now."""
        return {
            "coefs_": [c.copy() for c in self.coefs_],
            "intercepts_": [b.copy() for b in self.intercepts_],
        }

    def _fit_lbfgs(self, X_in, Y, sw, layer_units):
        # SciPy's L-BFGS-B keeps its memory in float64 but evaluates the
        # objective at points of x0's dtype: a float32 model is evaluated in
        # float32 at float32 points, as in scikit-learn.
        dtype = Y.dtype
        net = self._network(X_in.n_samples, dtype, layer_units)
        ws = net.workspace(dtype, X_in.sparse)
        params = net.pack(self.coefs_, self.intercepts_, dtype)
        grads = np.empty_like(params)
        alpha = float(self.alpha)

        def fun(x):
            params[:] = x
            loss = _core.objective(net.layout, ws, X_in, Y, sw, params, grads, alpha)
            return loss, grads.astype(np.float64)

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
        self.coefs_, self.intercepts_ = net.unpack(opt_res.x.astype(dtype))

    def _fit_stochastic(self, X_in, Y, Y_split, sw, rng, layer_units, incremental,
                        callback_task=(None, None, None)):
        dtype = Y.dtype
        early_stopping = self.early_stopping
        if early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        n_all = X_in.n_samples
        if early_stopping:
            # Split row indices exactly as train_test_split splits X and y.
            stratify = Y_split if (is_classifier(self) and self.n_outputs_ == 1) else None
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
            Y_val = np.ascontiguousarray(Y[val_idx])
            y_val = self._validation_targets(Y_val)
            sw_val = sw[val_idx] if sw.size else None
        else:
            train_idx = np.arange(n_all)
        train_idx = np.ascontiguousarray(train_idx, dtype=np.intp)
        n_samples = train_idx.shape[0]

        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than "
                    "sample size. It is going to be clipped"
                )
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        net = self._network(batch_size, dtype, layer_units, exact_cap=True)
        ws = net.workspace(dtype, X_in.sparse)
        params = net.pack(self.coefs_, self.intercepts_, dtype)
        self.coefs_, self.intercepts_ = net.unpack(params)
        grads = np.empty_like(params)
        opt = getattr(self, "_optimizer", None)
        if (
            not incremental
            or opt is None
            or opt.solver != self.solver
            or opt.state1.shape[0] != params.shape[0]
            or opt.state1.dtype != dtype
        ):
            opt = _Optimizer(
                self.solver, params.shape[0], dtype, self.learning_rate_init,
                self.learning_rate, self.power_t,
            )
            self._optimizer = opt
        solver_code = _SOLVER_CODES[self.solver]
        alpha = float(self.alpha)
        sample_idx = np.arange(n_samples, dtype=np.intp)
        identity_idx = bool(np.array_equal(train_idx, sample_idx))
        callbacks = list(self.callbacks) if self.callbacks else []
        reporter = EpochReporter(self.max_iter) if self.verbose else None
        ctx, X_cb, y_cb = callback_task
        skl_callbacks = ctx is not None and bool(getattr(self, "_skl_callbacks", None))
        start_time = time.perf_counter()
        try:
            self.n_iter_ = 0
            for it in range(self.max_iter):
                if self.shuffle:
                    # sklearn.utils.shuffle(sample_idx, random_state=rng)
                    # shuffles an arange and indexes sample_idx with it; the
                    # same swaps applied to sample_idx itself give the same
                    # order without its input checks (0.5 ms an epoch, 7% of a
                    # batch-200 epoch of the seed network) or the two gathers
                    rng.shuffle(sample_idx)
                    order = sample_idx if identity_idx else train_idx[sample_idx]
                else:
                    order = train_idx
                if skl_callbacks:
                    epoch_ctx = ctx.subcontext(task_name="epoch")
                    epoch_ctx.call_on_fit_task_begin(estimator=self, X=X_cb, y=y_cb)
                # Dropout masks come from the estimator's random state, drawn
                # only when there is dropout so that the stream (and the
                # model) stays scikit-learn's otherwise.
                seed = int(rng.randint(0, 2**62)) if net.has_dropout else -1
                total, opt.t = _core.epoch(
                    net.layout, ws, X_in, Y, sw, order, batch_size, params, grads,
                    opt.state1, opt.state2, solver_code, opt.learning_rate,
                    float(self.momentum), bool(self.nesterovs_momentum),
                    float(self.beta_1), float(self.beta_2), float(self.epsilon),
                    opt.t, alpha, seed,
                )
                self.n_iter_ += 1
                self.loss_ = total / n_samples
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)

                if not np.isfinite(self.loss_) and not _core.all_finite_params(params):
                    # Diverged: stop now rather than run the remaining epochs
                    # on NaN; _fit then raises scikit-learn's error. sklearn
                    # runs to max_iter first and warns, so warn the same.
                    if not incremental:
                        warnings.warn(
                            "Stochastic Optimizer: Maximum iterations (%d) "
                            "reached and the optimization hasn't converged yet."
                            % self.max_iter,
                            ConvergenceWarning,
                        )
                    break
                if early_stopping:
                    self._update_validation(X_in, val_idx, Y_val, y_val, sw_val)
                else:
                    self._update_training_loss()
                if reporter:
                    reporter.epoch(
                        self.n_iter_, self.loss_,
                        self.validation_scores_[-1] if early_stopping else None,
                    )
                opt.iteration_ends(self.t_)

                stop = False
                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
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
                if self._run_callbacks(callbacks, start_time):
                    stop = True
                if skl_callbacks and epoch_ctx.call_on_fit_task_end(
                    estimator=self, X=X_cb, y=y_cb,
                    reconstruction_attributes=self._reconstruction_attributes(),
                ):
                    stop = True
                if stop:
                    break
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        "Stochastic Optimizer: Maximum iterations (%d) "
                        "reached and the optimization hasn't converged yet."
                        % self.max_iter,
                        ConvergenceWarning,
                    )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        finally:
            if reporter:
                reporter.close()

        if early_stopping:
            self.coefs_ = self._best_coefs
            self.intercepts_ = self._best_intercepts

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

    def _update_validation(self, X_in, val_idx, Y_val, y_val, sw_val):
        out, val_loss = self._forward_rows(X_in, val_idx, Y_val, sw_val)
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
        return (_frozen(self.coefs_), _frozen(self.intercepts_), self.out_activation_,
                self.activation, getattr(self, "_label_binarizer", None),
                getattr(self, "n_outputs_", None))

    def _model_snapshot(self):
        """The fitted model, read once for a whole prediction call (see
        ``_Model``): read twice, so that a refit in another thread between
        the reads of two attributes is seen and the read taken again."""
        for _ in range(_SNAPSHOT_TRIES):
            attrs = self._model_attributes()
            if _same_objects(attrs, self._model_attributes()):
                return _checked_model(*attrs)
        raise RuntimeError(
            "The fitted model was changed by another thread during this call "
            "(the estimator is being refitted); predict again once it is done."
        )

    def _forward_rows(self, X_in, rows=None, Y=None, sw=None, check_finite=False,
                      model=None):
        """Output layer for rows of a validated input (all rows if None), from
        ``model`` (a snapshot of the fitted attributes; taken now if None).

        Computed in the dtype of X: a float32 model predicting float64 input
        casts its (small) weights, never the input; a float64 model reads
        float32 rows into float64 buffers as it goes (NumPy's promotion, as
        in scikit-learn). With targets ``Y`` of those rows, returns (output,
        mean loss) from the same pass."""
        if model is None:
            model = self._model_snapshot()
        units = model.units
        if X_in.n_features != units[0]:
            raise _inconsistent(
                f"X has {X_in.n_features} features, but coefs_[0] has {units[0]} rows"
            )
        dtype = np.result_type(X_in.X.dtype, model.coefs[0].dtype)
        if dtype not in (np.float32, np.float64):
            dtype = np.dtype(np.float64)
        n = X_in.n_samples if rows is None else rows.shape[0]
        out = np.empty((n, model.n_outputs), dtype=dtype)
        if n == 0:
            return out
        # the loss is only computed against targets, during a fit
        loss_code = self._loss_code() if Y is not None else 0
        net = _Network(units, model.hidden, model.out_activation, loss_code,
                       getattr(self, "huber_delta", 1.0),
                       _predict_chunk_rows(units, dtype.itemsize, n))
        params = _views_of_one_vector(model.coefs, model.intercepts, net.layout)
        if params is None or params.dtype != dtype:
            params = net.pack(model.coefs, model.intercepts, dtype)
        if rows is None and Y is None:
            _parallel_predict(net, dtype, X_in, params, out, check_finite)
            return out
        ws = net.workspace(dtype, X_in.sparse)
        rows = (np.arange(n, dtype=np.intp) if rows is None
                else np.ascontiguousarray(rows, np.intp))
        loss = _core.predict_rows(net.layout, ws, X_in, params, rows, out, Y, sw)
        return out if Y is None else (out, loss)

    def _forward_pass_fast(self, X, check_input=True, model=None):
        if model is None:
            model = self._model_snapshot()
        if not check_input:
            return self._forward_rows(_core.Input(X), model=model)
        _check_sparse_structure(X)
        # Dense X is checked for NaN and infinity by the compiled predict,
        # chunk by chunk in cache, instead of by a pass of its own over all
        # of X first (a seventh of predict's time on the seed network). When
        # it finds any, scikit-learn's validation runs in full and raises
        # scikit-learn's error.
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
        state = super().__getstate__()
        if not state.get("early_stopping", False):
            # only early stopping reads these: elsewhere they are a stale copy
            # of the initial weights that would double the pickle
            state.pop("_best_coefs", None)
            state.pop("_best_intercepts", None)
        return state

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(
                "partial_fit is only available for stochastic"
                " optimizers. %s is not stochastic." % self.solver
            )
        return True
