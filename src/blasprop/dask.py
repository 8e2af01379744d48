"""One model trained on data spread over a Dask cluster.

``DaskMLPClassifier`` and ``DaskMLPRegressor`` take the parameters of
blasprop's estimators plus ``client`` (the default client when None) and
``local_epochs``. ``fit`` takes dask Arrays chunked by rows (dense or with
scipy.sparse CSR blocks) and dask DataFrames/Series. The partitions are
validated where they live and stay in the workers' memory; every round sends
the parameters out and brings sums (or trained parameters) back.

- ``solver="lbfgs"`` is exact. Each evaluation of the objective asks every
  partition for its summed loss, summed sample weight and summed gradient
  (``_core.objective_sums``), adds them on the client in partition order,
  adds the L2 term and hands the result to SciPy's L-BFGS-B with the options
  ``fit`` uses. The model does not depend on the number of workers or on
  where the partitions sit.
- ``"sgd"``, ``"adam"`` and ``"adamw"`` are local SGD with model averaging,
  an approximation of training on all the rows. In each round every
  partition runs the compiled epoch over its own rows (``local_epochs``
  epochs' worth of mini-batches, a fraction of one when below 1) from the
  current parameters and solver state; the client averages parameters and
  solver state weighted by the partitions' training rows. The learning-rate
  schedule, ``tol``/``n_iter_no_change``, early stopping, ``loss_curve_``,
  callbacks and verbose output run once per round on the client; ``max_iter``
  counts rounds. Partition 0 draws its shuffles from the fit's random state,
  partition p > 0 from its own generator seeded by ``(random_state, p)``, so
  with one partition a fit equals ``MLPClassifier.fit`` bit for bit.

Everything global is computed over all partitions: ``classes_`` and the
label binarisation, ``class_weight="balanced"``, ``n_features_in_`` and
``feature_names_in_``, the early-stopping split. ``to_local()`` returns the
plain estimator with the fitted weights.
"""

from __future__ import annotations

import copy
import inspect
import math
import operator
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import Interval
from sklearn.utils.class_weight import compute_class_weight, compute_sample_weight
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import (
    _check_feature_names,
    _check_n_features,
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
)

try:
    import dask
    import dask.array as da
    import dask.sizeof
    import distributed
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError(
        "blasprop.dask needs dask and distributed: pip install 'blasprop[dask]'"
    ) from exc

from . import _core
from ._base import _check_sparse_structure, _EpochOrder
from ._classes import MLPClassifier, MLPRegressor
from ._threads import blas_threads_for_fit, training_threads

__all__ = ["DaskMLPClassifier", "DaskMLPRegressor"]

# Seconds fit waits for the cluster to have a worker (an adaptive cluster may
# start one on demand) before it refuses.
_WAIT_FOR_WORKERS = 30


def _dask_dataframe():
    try:
        import dask.dataframe as dd
    except ImportError:  # pandas is not installed
        return None
    return dd


# --------------------------------------------------------------------------
# Partitions: the rows of X, y and sample_weight, block by block
# --------------------------------------------------------------------------


def _row_blocks(X):
    """X's row blocks as delayed objects, and their row counts (None where
    unknown). A dask Array chunked by columns is rechunked to whole rows."""
    dd = _dask_dataframe()
    if dd is not None and isinstance(X, dd.DataFrame):
        return list(X.to_delayed()), None
    if isinstance(X, da.Array):
        X = _whole_rows(X)
        return list(X.to_delayed().ravel()), X.chunks[0]
    raise TypeError(
        "DaskMLPClassifier and DaskMLPRegressor fit on dask collections (a dask "
        f"Array or DataFrame); got {type(X).__name__}. For data in memory use "
        "blasprop.MLPClassifier or MLPRegressor, or dask.array.from_array."
    )


def _whole_rows(X):
    """A 2-D dask Array whose blocks hold whole rows (one block of columns)."""
    if X.ndim != 2:
        raise ValueError(
            f"Expected a 2D dask array, got one of shape {X.shape}; reshape "
            "your data (a single feature: X.reshape(-1, 1))."
        )
    return X.rechunk({1: -1}) if len(X.chunks[1]) > 1 else X


def _blocks_like(v, n_blocks, row_chunks, what):
    """``v`` (y or sample_weight) as ``n_blocks`` delayed row blocks matching
    X's; None stays None."""
    if v is None:
        return [None] * n_blocks
    dd = _dask_dataframe()
    if dd is not None and isinstance(v, (dd.DataFrame, dd.Series)):
        blocks = list(v.to_delayed())
    elif isinstance(v, da.Array):
        if v.ndim == 2 and len(v.chunks[1]) > 1:
            v = v.rechunk({1: -1})
        if row_chunks is not None and v.chunks[0] != row_chunks and not any(
            math.isnan(c) for c in row_chunks + v.chunks[0]
        ):
            if sum(v.chunks[0]) != sum(row_chunks):
                raise ValueError(
                    "Found input variables with inconsistent numbers of samples: "
                    f"[{sum(row_chunks)}, {sum(v.chunks[0])}] (X and {what})"
                )
            v = v.rechunk({0: row_chunks})
        blocks = list(v.to_delayed().ravel())
    elif row_chunks is not None and not any(math.isnan(c) for c in row_chunks):
        v = np.asarray(v)
        if v.shape[0] != sum(row_chunks):
            raise ValueError(
                "Found input variables with inconsistent numbers of samples: "
                f"[{sum(row_chunks)}, {v.shape[0]}] (X and {what})"
            )
        edges = np.cumsum((0,) + tuple(row_chunks))
        blocks = [dask.delayed(v[a:b]) for a, b in zip(edges[:-1], edges[1:])]
    else:
        raise TypeError(
            f"{what} must be a dask collection partitioned like X (X's row counts "
            "per partition are not known)"
        )
    if len(blocks) != n_blocks:
        raise ValueError(
            f"X has {n_blocks} partitions and {what} has {len(blocks)}: partition "
            f"{what} like X (e.g. with the same chunks or from the same DataFrame)."
        )
    return blocks


def _as_rows(v):
    """A pandas object as NumPy values (sample weights, labels)."""
    if hasattr(v, "to_numpy") and not sp.issparse(v):
        return v.to_numpy()
    return v


class _Summary:
    """What the client needs to know of a raw partition before training:
    its rows and, for a classifier, its labels and their counts."""

    def __init__(self, n, labels=None):
        self.n = n
        self.labels = labels  # (y_type, classes, counts per class or per column)


def _summary(raw, classifier):
    X, y, _ = raw
    n = X.shape[0]
    if not classifier or n == 0:
        return _Summary(n)
    y = _as_rows(y)
    # the label checks of a local fit (mixed types, continuous targets, ...)
    binarizer = LabelBinarizer().fit(y)
    if binarizer.y_type_ == "multilabel-indicator":
        Yb = np.asarray(y)
        counts = [np.unique(Yb[:, j], return_counts=True) for j in range(Yb.shape[1])]
        return _Summary(n, (binarizer.y_type_, binarizer.classes_, counts))
    labels, counts = np.unique(column_or_1d(np.asarray(y)), return_counts=True)
    return _Summary(n, (binarizer.y_type_, labels, counts))


class _Part:
    """A partition validated as a local fit validates its data, in the
    fit's dtype, kept on the worker that holds it."""

    def __init__(self, X, Y, sw):
        self.X = X
        self.Y = Y
        self.sw = sw

    @property
    def n(self):
        return self.X.shape[0]

    def input(self):
        return _core.Input(self.X)


def _nbytes(a):
    if a is None:
        return 0
    if sp.issparse(a):
        return a.data.nbytes + a.indices.nbytes + a.indptr.nbytes
    return a.nbytes


@dask.sizeof.sizeof.register(_Part)
def _sizeof_part(part):
    # what the scheduler weighs to run a partition's tasks where it lives
    return _nbytes(part.X) + _nbytes(part.Y) + _nbytes(part.sw)


def _prepare(raw, template, dtype, class_weights):
    X, y, sample_weight = raw
    _check_sparse_structure(X)
    # reset=False: the client set n_features_in_, feature_names_in_ and the
    # classes from all partitions; incremental=True: transform with them
    X, Y = template._validate_input(X, y, incremental=True, reset=False)
    if X.dtype != dtype:
        X = X.astype(dtype)
    if sample_weight is not None:
        # all zero is an error only if every partition's are (the client checks)
        sample_weight = _check_sample_weight(_as_rows(sample_weight), X,
                                             allow_all_zero_weights=True)
    if class_weights is not None:
        cw = _class_weight_of_rows(_as_rows(y), class_weights)
        # as the local fit multiplies them (_extra_sample_weight)
        sample_weight = (cw.astype(np.float64) if sample_weight is None
                         else sample_weight * cw.astype(sample_weight.dtype))
    if Y.ndim == 1:
        Y = Y.reshape((-1, 1))
    sw = (np.empty(0, dtype=dtype) if sample_weight is None
          else np.ascontiguousarray(sample_weight, dtype=dtype))
    return _Part(X, np.ascontiguousarray(Y, dtype=dtype), sw)


def _class_weight_of_rows(y, class_weights):
    """Each row's class weight, from the weights of all partitions' classes:
    ``class_weights`` holds (classes, weights) per output, and a row's
    weight is the product over its outputs (compute_sample_weight's rule)."""
    y = np.asarray(y)
    columns = [y.reshape(-1)] if len(class_weights) == 1 else list(y.T)
    per_output = [weights[np.searchsorted(classes, column)]
                  for (classes, weights), column in zip(class_weights, columns)]
    return np.prod(per_output, axis=0, dtype=np.float64)


def _labels_for_split(part):
    """The binarized labels a local fit stratifies its split by."""
    return part.Y.astype(bool)


def _weight(part, rows=None):
    """The summed sample weight of the partition's rows (all when None)."""
    if not part.sw.size:
        return float(part.n if rows is None else np.size(rows))
    return float(np.sum(part.sw if rows is None else part.sw[rows], dtype=np.float64))


# Arrays sent with every partition's task up to this size; larger ones (the
# parameters of a large network) go to each worker once, scattered.
_EMBED_BYTES = 1 << 20


def _send(client, *arrays):
    """The arrays as the arguments of a round's tasks: as they are when small,
    else as futures of one copy per worker."""
    if sum(a.nbytes for a in arrays) <= _EMBED_BYTES:
        return list(arrays)
    return client.scatter(list(arrays), broadcast=True, hash=False)


def _n_outputs(part):
    return part.Y.shape[1]


class _Problem:
    """A fit's validated partitions (futures, in partition order, empty ones
    left out) and what training needs to know of them."""

    def __init__(self, client, parts, n_rows, dtype, layer_units, rng, template):
        self.client = client
        self.parts = parts
        self.n_rows = np.asarray(n_rows, dtype=np.intp)
        self.dtype = dtype
        self.layer_units = layer_units
        self.rng = rng
        self.template = template  # a future: the estimator without weights


# --------------------------------------------------------------------------
# The work of one partition in a round
# --------------------------------------------------------------------------


def _threads(template, rows, units):
    return training_threads(template.n_jobs, rows, units)


def _partition_sums(part, template, units, params):
    """(loss sum, weight sum, gradient sum) of the partition's rows."""
    if not params.flags.writeable:  # as deserialised from a shared buffer
        params = params.copy()
    dtype = params.dtype
    net = template._network(part.n, dtype, units)
    n_threads = _threads(template, net.layout.cap, units)
    ws = net.workspace(dtype, sp.issparse(part.X), blocked=n_threads > 0)
    grads = np.empty_like(params)
    with blas_threads_for_fit(units, net.layout.cap, n_threads):  # as fit runs BLAS
        loss, weight = _core.objective_sums(net.layout, ws, part.input(), part.Y, part.sw,
                                            params, grads, n_threads)
    return loss, weight, grads


class _Stream:
    """A partition's order of visiting its training rows, carried from
    round to round: its random generator, the current epoch's rows and how
    many of them have been visited."""

    def __init__(self, train_rows, shuffle, rng):
        # train_rows: the partition's training rows in the split's order, or
        # their number when every row trains (built here, not sent)
        if isinstance(train_rows, Integral):
            train_rows = np.arange(train_rows, dtype=np.intp)
        self.rng = rng
        self.order = _EpochOrder(train_rows, shuffle)
        self.rows = None
        self.pos = 0

    @property
    def n(self):
        return self.order.train_idx.shape[0]


@dask.sizeof.sizeof.register(_Stream)
def _sizeof_stream(stream):
    return (stream.order.train_idx.nbytes + stream.order.sample_idx.nbytes
            + (0 if stream.rows is None else stream.rows.nbytes))


def _local_round(part, stream, template, units, batch, n_batches, params, state1,
                 state2, code, learning_rate, t):
    """``n_batches`` mini-batches of the partition's rows from ``params`` and
    the solver state; returns the trained parameters, state, Adam's step
    count, the summed loss and the rows visited, and the stream moved on."""
    stream = copy.deepcopy(stream)  # a task must not change its inputs
    params, state1, state2 = params.copy(), state1.copy(), state2.copy()
    dtype = params.dtype
    net = template._network(batch, dtype, units, exact_cap=True)
    n_threads = _threads(template, batch, units)
    ws = net.workspace(dtype, sp.issparse(part.X), blocked=n_threads > 0)
    grads = np.empty_like(params)
    solver = template._solver(code, learning_rate, t)
    with blas_threads_for_fit(units, batch, n_threads):  # as fit runs BLAS
        total, visited = _run_batches(part, stream, net, ws, batch, n_batches, params,
                                      grads, state1, state2, solver, n_threads)
    return (params, state1, state2, solver.t, total, visited), stream


def _run_batches(part, stream, net, ws, batch, n_batches, params, grads, state1, state2,
                 solver, n_threads):
    """The compiled epoch over the stream's next ``n_batches`` batches,
    drawing a new order each time the current one is used up; returns the
    summed loss and the rows visited."""
    X_in = part.input()
    total, visited = 0.0, 0
    while n_batches > 0:
        if stream.rows is None or stream.pos >= stream.rows.shape[0]:
            stream.rows = np.array(stream.order.next(stream.rng))
            stream.pos = 0
        left = stream.rows.shape[0] - stream.pos
        take = min(n_batches, -(-left // batch))
        end = min(stream.rows.shape[0], stream.pos + take * batch)
        # as a local epoch draws them: after the order
        seed = int(stream.rng.randint(0, 2**62)) if net.has_dropout else -1
        total += _core.epoch(net.layout, ws, X_in, part.Y, part.sw,
                             stream.rows[stream.pos:end], batch, params, grads, state1,
                             state2, solver, seed, n_threads)
        visited += end - stream.pos
        stream.pos = end
        n_batches -= take
    return total, visited


def _validation_rows(part, rows):
    """The partition's validation rows' targets and weights."""
    return part.Y[rows], (part.sw[rows] if part.sw.size else None)


def _validation_output(part, template, units, params, rows, targets):
    """Output and mean loss of the partition's validation rows (as the local
    fit's validation pass computes them), and their total weight."""
    Y_rows, sw_rows = targets
    model = copy.copy(template)
    net = template._network(1, params.dtype, units)
    model.coefs_, model.intercepts_ = net.unpack(params)
    out, loss = model._forward_rows(part.input(), rows, Y_rows, sw_rows)
    weight = float(rows.shape[0] if sw_rows is None else np.sum(sw_rows, dtype=np.float64))
    return out, loss, weight


def _predict_block(X, model, method):
    if X.shape[0] == 0:  # scikit-learn's validation refuses no rows
        return _empty_prediction(model, method)
    return getattr(model, method)(X)


def _empty_prediction(model, method):
    """The method's output for no rows: its output for a row of zeros, cut
    to none (scikit-learn's validation refuses an empty X)."""
    X = np.zeros((1, model.n_features_in_), dtype=model.coefs_[0].dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fitted with feature names
        return getattr(model, method)(X)[:0]


def _predict_frame(df, model, method):
    import pandas as pd

    out = _predict_block(df, model, method)
    if out.ndim == 1:
        return pd.Series(out, index=df.index)
    return pd.DataFrame(out, index=df.index)


# --------------------------------------------------------------------------
# The estimators
# --------------------------------------------------------------------------


def _dask_init(local_cls):
    """``local_cls.__init__`` with the keyword-only parameters ``client`` and
    ``local_epochs`` added (scikit-learn reads the parameters from the
    signature)."""
    signature = inspect.signature(local_cls.__init__)
    extra = [
        inspect.Parameter("client", inspect.Parameter.KEYWORD_ONLY, default=None),
        inspect.Parameter("local_epochs", inspect.Parameter.KEYWORD_ONLY, default=1),
    ]

    def __init__(self, *args, client=None, local_epochs=1, **kwargs):
        local_cls.__init__(self, *args, **kwargs)
        self.client = client
        self.local_epochs = local_epochs

    __init__.__signature__ = signature.replace(
        parameters=list(signature.parameters.values()) + extra
    )
    __init__.__doc__ = local_cls.__init__.__doc__
    return __init__


class _DaskMLP:
    """Fit on a Dask cluster; predict blockwise. Mixed in before the local
    estimator class, whose validation, initialisation and stopping rules it
    reuses."""

    _local_class: type

    _dask_constraints = {
        "client": "no_validation",
        "local_epochs": [Interval(Real, 0, None, closed="neither")],
    }

    # -- plumbing -------------------------------------------------------

    def _get_client(self):
        client = self.client
        if client is None:
            try:
                client = distributed.default_client()
            except ValueError as exc:
                raise ValueError(
                    f"{type(self).__name__} needs a Dask client: start one "
                    "(distributed.Client(...)) or pass client=..."
                ) from exc
        try:
            # an adaptive cluster may start one on demand; a cluster without
            # any would leave the tasks waiting forever
            client.wait_for_workers(1, timeout=_WAIT_FOR_WORKERS)
        except (TimeoutError, distributed.TimeoutError) as exc:
            raise ValueError(
                f"The Dask cluster of {client.scheduler.address} has no workers "
                f"(none came within {_WAIT_FOR_WORKERS} s)."
            ) from exc
        return client

    def _local_params(self):
        params = self.get_params(deep=False)
        params.pop("client")
        params.pop("local_epochs")
        return params

    def to_local(self):
        """The fitted model as a plain ``blasprop`` estimator (same weights
        and attributes): it pickles, saves, loads and exports to ONNX."""
        check_is_fitted(self)
        est = self._local_class(**self._local_params())
        params = set(self.get_params(deep=False))
        for name, value in vars(self).items():
            if name not in params:
                setattr(est, name, copy.deepcopy(value))
        return est

    def __sklearn_clone__(self):
        # the client is shared, never copied (it holds sockets); the rest as
        # scikit-learn's clone does it
        params = {name: value if name == "client" else clone(value, safe=False)
                  for name, value in self.get_params(deep=False).items()}
        new = type(self)(**params)
        for name in ("_metadata_request", "_sklearn_output_config"):
            if name in self.__dict__:
                setattr(new, name, copy.deepcopy(self.__dict__[name]))
        return new

    def __getstate__(self):
        state = super().__getstate__()  # a copy of the instance's dict
        state["client"] = None  # a client is never pickled
        return state

    def _no_partial_fit(self):
        raise AttributeError(
            f"{type(self).__name__} has no partial_fit: fit trains on all the "
            "partitions (for block-by-block training use dask_ml's Incremental)."
        )

    @available_if(_no_partial_fit)
    def partial_fit(self, X, y, sample_weight=None):  # pragma: no cover - unreachable
        """Not available: see fit."""

    # -- fit --------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Fit the model on data partitioned by rows over the cluster.

        X : dask Array (n_samples, n_features) chunked by rows (dense, or
            with scipy.sparse CSR blocks), or a dask DataFrame.
        y : dask Array, Series or DataFrame partitioned like X (or a NumPy
            array when X's row chunks are known).
        sample_weight : partitioned like y, optional.
        """
        problem = self._problem(X, y, sample_weight)
        if self.solver == "lbfgs":
            fun, params, net = self._lbfgs_objective(problem)
            self._minimize_lbfgs(fun, params, net)
        else:
            self._fit_local_sgd(problem)
        self._check_finite_weights()
        return self

    def _problem(self, X, y, sample_weight):
        """What fit does before it trains: check the parameters, validate the
        partitions where they are and keep them there, set the attributes
        computed over all of them, and initialise the network."""
        self._validate_params()
        client = self._get_client()
        blocks, row_chunks = _row_blocks(X)
        ys = _blocks_like(y, len(blocks), row_chunks, "y")
        sws = _blocks_like(sample_weight, len(blocks), row_chunks, "sample_weight")
        raw = client.compute([dask.delayed(tuple)([x, yb, s])
                              for x, yb, s in zip(blocks, ys, sws)])
        classifier = isinstance(self, MLPClassifier)
        summaries = client.gather([client.submit(_summary, r, classifier, pure=False)
                                   for r in raw])
        keep = [i for i, s in enumerate(summaries) if s.n > 0]  # empty ones skipped
        if not keep:
            raise ValueError(
                "Found array with 0 sample(s) (shape=(0, ...)) while a minimum of 1 "
                "is required."
            )
        hidden_sizes = self._checked_hidden_sizes()
        first_pass = not hasattr(self, "coefs_") or not self.warm_start
        self._set_global_attributes(X, [summaries[i] for i in keep], first_pass)
        dtype = self._fit_dtype(X)
        [template] = client.scatter([self._template()], broadcast=True)
        class_weights = getattr(self, "_global_class_weights", None)
        parts = [client.submit(_prepare, raw[i], template, dtype, class_weights,
                               pure=False) for i in keep]
        distributed.wait(parts)
        for f in parts:
            if f.status == "error":
                f.result()  # raises the partition's error, as a local fit would
        del raw
        if sample_weight is not None:
            sums = client.gather([client.submit(_weight, p, pure=False) for p in parts])
            if not any(sums):
                # scikit-learn's error for weights that are all zero
                _check_sample_weight(np.zeros(len(sums)), np.empty((len(sums), 1)))
        n_outputs = client.submit(_n_outputs, parts[0], pure=False).result()
        layer_units = [self.n_features_in_] + hidden_sizes + [n_outputs]
        rng = check_random_state(self.random_state)
        if first_pass:
            self._initialize(rng, np.empty((0, n_outputs)), layer_units, dtype)
        else:
            units = [self.coefs_[0].shape[0]] + [b.shape[0] for b in self.intercepts_]
            if units != layer_units:
                raise ValueError(
                    "warm_start needs the same network shape as the previous fit: got "
                    f"layers {layer_units}, the fitted model has {units}."
                )
        [template] = client.scatter([self._template()], broadcast=True)
        return _Problem(client, parts, [summaries[i].n for i in keep], dtype,
                        layer_units, rng, template)

    def _fit_dtype(self, X):
        dtypes = getattr(X, "dtypes", None)
        if dtypes is not None:  # a DataFrame: float32 only when every column is
            kinds = set(np.dtype(d) for d in dtypes)
            return np.dtype(np.float32) if kinds == {np.dtype(np.float32)} \
                else np.dtype(np.float64)
        return np.dtype(np.float32) if X.dtype == np.float32 else np.dtype(np.float64)

    def _set_global_attributes(self, X, summaries, first_pass):
        """n_features_in_, feature_names_in_ (from the collection's columns)
        and, for a classifier, the classes over all partitions."""
        _check_n_features(self, X, reset=first_pass)
        # a dask DataFrame's columns, from its (empty) pandas meta
        _check_feature_names(self, getattr(X, "_meta", X), reset=first_pass)

    def _template(self):
        """What a worker needs of the estimator to validate its partition
        and run the network: a local estimator without weights."""
        est = self._local_class(**self._local_params())
        est.warm_start = False
        for name in ("n_features_in_", "feature_names_in_", "out_activation_",
                     "n_outputs_"):
            if hasattr(self, name):
                setattr(est, name, getattr(self, name))
        return est

    # -- lbfgs: exact sums over the partitions ---------------------------------

    def _lbfgs_objective(self, problem):
        """L-BFGS's objective over all partitions: a function of the flat
        parameters returning (loss, gradient), the starting parameters and
        the network layout."""
        client, parts, dtype = problem.client, problem.parts, problem.dtype
        layer_units, template_f = problem.layer_units, problem.template
        net = self._network(1, dtype, layer_units)
        params = net.pack(self.coefs_, self.intercepts_, dtype)
        alpha = float(self.alpha)

        def fun(x):
            point = np.asarray(x, dtype=dtype).copy()  # never changed once sent
            [sent] = _send(client, point)
            futures = [client.submit(_partition_sums, p, template_f, layer_units, sent,
                                     pure=False) for p in parts]
            loss_sum, weight, grads = 0.0, 0.0, np.zeros_like(point)
            for part_loss, part_weight, part_grads in client.gather(futures):
                loss_sum += part_loss
                weight += part_weight
                grads += part_grads
            loss = _core.finish_objective(net.layout, point, grads, loss_sum, weight,
                                          alpha)
            return loss, grads.astype(np.float64)

        return fun, params, net

    # -- sgd, adam, adamw: local SGD with model averaging -------------------------

    def _fit_local_sgd(self, problem):
        client, parts, dtype = problem.client, problem.parts, problem.dtype
        layer_units, template_f, rng = problem.layer_units, problem.template, problem.rng
        offsets = np.concatenate(([0], np.cumsum(problem.n_rows)))
        n_all = int(offsets[-1])
        if self.early_stopping:
            # the split of all rows, as a local fit draws it: the client
            # holds the row indices (and, stratifying, the labels) of all rows
            Y_split = None
            if self._needs_stratified_split():
                Y_split = np.concatenate(client.gather(
                    [client.submit(_labels_for_split, p, pure=False) for p in parts]))
            train_idx, val_idx = self._split_indices(n_all, Y_split, rng)
            train_rows = [
                np.ascontiguousarray(
                    train_idx[(train_idx >= a) & (train_idx < b)] - a, dtype=np.intp)
                for a, b in zip(offsets[:-1], offsets[1:])
            ]
            n_train = np.array([r.shape[0] for r in train_rows])
        else:
            val_idx = None
            train_rows = [int(n) for n in problem.n_rows]
            n_train = problem.n_rows.copy()
        n_samples = int(n_train.sum())
        batch = self._batch_size(n_samples)
        streams = [
            client.submit(_Stream, rows, self.shuffle, generator, pure=False)
            for rows, generator in zip(train_rows, self._generators(rng, len(parts)))
        ]
        net = self._network(batch, dtype, layer_units, exact_cap=True)
        params = net.pack(self.coefs_, self.intercepts_, dtype)
        self.coefs_, self.intercepts_ = net.unpack(params)
        opt = self._stochastic_optimizer(params, False)
        # a partition whose training rows all weigh nothing would divide 0 by
        # 0 in every batch: it sits out, and the others are averaged
        train_weight = client.gather([
            client.submit(_weight, p, rows if isinstance(rows, np.ndarray) else None,
                          pure=False) for p, rows in zip(parts, train_rows)])
        active = [i for i in range(len(parts)) if n_train[i] > 0 and train_weight[i] != 0]
        n_active = int(sum(n_train[i] for i in active))
        weights = {i: dtype.type(n_train[i] / n_active) for i in active}
        batches = {i: max(1, round(self.local_epochs * -(-int(n_train[i]) // batch)))
                   for i in active}

        def run_round():
            sent = _send(client, params.copy(), opt.state1.copy(), opt.state2.copy())
            t0 = opt.t
            outs = {
                i: client.submit(_local_round, parts[i], streams[i], template_f,
                                 layer_units, batch, batches[i], *sent, opt.code,
                                 opt.learning_rate, t0, pure=False)
                for i in active
            }
            for i, out in outs.items():
                streams[i] = client.submit(operator.itemgetter(1), out, pure=False)
            results = client.gather(
                [client.submit(operator.itemgetter(0), outs[i], pure=False)
                 for i in active])
            total, visited, steps = 0.0, 0, 0.0
            for k, (i, (p, s1, s2, t, part_total, part_rows)) in enumerate(
                    zip(active, results)):
                w = weights[i]
                if k == 0:
                    params[:] = w * p
                    opt.state1[:] = w * s1
                    opt.state2[:] = w * s2
                else:
                    params[:] += w * p
                    opt.state1[:] += w * s1
                    opt.state2[:] += w * s2
                steps += float(w) * (t - t0)
                total += part_total
                visited += part_rows
            opt.t = t0 + int(round(steps))
            return total, visited

        validate = None
        if self.early_stopping:
            validate = self._distributed_validation(client, parts, offsets, val_idx,
                                                    template_f, layer_units, params, dtype)
        self._stochastic_loop(run_round, validate, params, opt, False)

    def _generators(self, rng, n_parts):
        """Partition 0 continues the fit's random state (so that one
        partition is a local fit); partition p > 0 has a generator seeded by
        (random_state, p)."""
        gens = [copy.deepcopy(rng)]
        if n_parts > 1:
            seed = (self.random_state if isinstance(self.random_state, Integral)
                    else int(rng.randint(0, 2**31)))
            gens += [np.random.RandomState(np.random.MT19937(np.random.SeedSequence(
                [int(seed), p]))) for p in range(1, n_parts)]
        return gens

    def _distributed_validation(self, client, parts, offsets, val_idx, template_f,
                                layer_units, params, dtype):
        """The validation pass: every partition scores its own validation
        rows; the client puts the outputs in the split's order and scores
        them as a local fit does."""
        n_val = val_idx.shape[0]
        pieces = []
        for i, (a, b) in enumerate(zip(offsets[:-1], offsets[1:])):
            mask = (val_idx >= a) & (val_idx < b)
            if mask.any():
                pieces.append((i, np.nonzero(mask)[0],
                               np.ascontiguousarray(val_idx[mask] - a, dtype=np.intp)))
        # kept on the workers for the passes, and brought here once to score
        targets_f = [client.submit(_validation_rows, parts[i], rows, pure=False)
                     for i, _, rows in pieces]
        targets = client.gather(targets_f)
        Y_val = np.empty((n_val, targets[0][0].shape[1]), dtype=dtype)
        weighted = targets[0][1] is not None
        sw_val = np.empty(n_val, dtype=dtype) if weighted else None
        for (_, pos, _), (Y_rows, sw_rows) in zip(pieces, targets):
            Y_val[pos] = Y_rows
            if weighted:
                sw_val[pos] = sw_rows
        y_val = self._validation_targets(Y_val)

        def validate():
            [point] = _send(client, params.copy())
            futures = [
                client.submit(_validation_output, parts[i], template_f, layer_units, point,
                              rows, tf, pure=False)
                for (i, _, rows), tf in zip(pieces, targets_f)
            ]
            out = np.empty((n_val, Y_val.shape[1]), dtype=dtype)
            losses = []
            for (_, pos, _), (part_out, loss, weight) in zip(pieces,
                                                             client.gather(futures)):
                out[pos] = part_out
                losses.append((loss, weight))
            # the partitions' mean losses weighted by their validation weight;
            # one partition's is the mean itself, and rows weighing nothing
            # (a mean of 0/0) count for nothing
            weighed = [(loss, w) for loss, w in losses if w != 0]
            if len(losses) == 1 or not weighed:
                val_loss = losses[0][0]
            else:
                val_loss = sum(loss * w for loss, w in weighed) / sum(w for _, w in weighed)
            self._record_validation(out, val_loss, y_val, sw_val)

        return validate

    # -- prediction -------------------------------------------------------------

    def _blockwise(self, X, method):
        check_is_fitted(self)
        model = self.to_local()
        dd = _dask_dataframe()
        if dd is not None and isinstance(X, dd.DataFrame):
            meta = _predict_frame(X._meta, model, method)
            return X.map_partitions(_predict_frame, model, method, meta=meta)
        if not isinstance(X, da.Array):
            raise TypeError(f"expected a dask Array or DataFrame, got {type(X).__name__}")
        X = _whole_rows(X)
        meta = _empty_prediction(model, method)
        if meta.ndim == 1:
            return X.map_blocks(_predict_block, model, method, drop_axis=1,
                                dtype=meta.dtype, meta=meta)
        return X.map_blocks(_predict_block, model, method,
                            chunks=(X.chunks[0], (meta.shape[1],)),
                            dtype=meta.dtype, meta=meta)

    def predict(self, X):
        """Predictions: lazy and blockwise for a dask collection (a dask Array,
        or a dask Series/DataFrame for a dask DataFrame), eager for data in
        memory."""
        if dask.is_dask_collection(X):
            return self._blockwise(X, "predict")
        return super().predict(X)

    def score(self, X, y, sample_weight=None):
        """Accuracy (classifier) or R^2 (regressor, averaged over outputs) of
        the predictions; on dask input computed blockwise, as sums over the
        partitions (equal to scikit-learn's metrics to rounding)."""
        if not dask.is_dask_collection(X):
            return super().score(X, y, sample_weight=sample_weight)
        y_pred = _dask_array(self.predict(X))
        y = _dask_array(y, y_pred)
        w = None if sample_weight is None else _dask_array(sample_weight, y_pred)
        if isinstance(self, MLPClassifier):
            correct = y == y_pred
            if correct.ndim == 2:  # multilabel: every label right
                correct = correct.all(axis=1)
            correct = correct.astype(np.float64)
            mean = correct.mean() if w is None else da.average(correct, weights=w)
            return float(mean.compute())
        return _r2(y, y_pred, w)


def _dask_array(v, like=None):
    """A dask Array of ``v`` (a dask collection, or NumPy chunked like ``like``)."""
    if isinstance(v, da.Array):
        return v
    if dask.is_dask_collection(v):  # a dask Series or DataFrame
        # kept, so that the pass that counts its rows is the only one
        return v.persist().to_dask_array(lengths=True)
    v = np.asarray(v)
    return da.from_array(v, chunks=like.chunks[:1] + tuple((s,) for s in v.shape[1:]))


def _r2(y, y_pred, w):
    """scikit-learn's r2_score (uniform average over outputs, finite when
    an output is constant) from two passes of blockwise sums."""
    y, y_pred = y.astype(np.float64), y_pred.astype(np.float64)
    if y.ndim == 1:
        y, y_pred = y[:, None], y_pred[:, None]
    w = da.ones(y.shape[0], chunks=y.chunks[0]) if w is None else w.astype(np.float64)
    w = w[:, None]
    mean = (w * y).sum(axis=0) / w.sum()
    residual, total = dask.compute((w * (y - y_pred) ** 2).sum(axis=0),
                                   (w * (y - mean) ** 2).sum(axis=0))
    scores = np.ones(residual.shape[0])
    defined = total != 0
    scores[defined] = 1.0 - residual[defined] / total[defined]
    scores[~defined & (residual != 0)] = 0.0
    return float(np.mean(scores))


class DaskMLPClassifier(_DaskMLP, MLPClassifier):
    """``blasprop.MLPClassifier`` trained on data spread over a Dask cluster.

    Takes MLPClassifier's parameters, plus:

    client : distributed.Client, default=None
        The client to run on; None uses the default client. Never pickled.
    local_epochs : float, default=1
        With sgd, adam and adamw, the epochs over its own rows that each
        partition runs in a round before the models are averaged (a
        fraction of an epoch when below 1). Ignored by lbfgs.

    See ``blasprop.dask`` for how each solver trains.
    """

    _local_class = MLPClassifier
    _parameter_constraints = {**MLPClassifier._parameter_constraints,
                              **_DaskMLP._dask_constraints}
    __init__ = _dask_init(MLPClassifier)

    def _set_global_attributes(self, X, summaries, first_pass):
        super()._set_global_attributes(X, summaries, first_pass)
        y_types = {s.labels[0] for s in summaries}
        if "multilabel-indicator" in y_types:
            if y_types != {"multilabel-indicator"}:
                raise ValueError(
                    "Mix type of y not allowed, got types " + str(sorted(y_types)))
            widths = {len(s.labels[1]) for s in summaries}
            if len(widths) > 1:
                raise ValueError("Multi-label binary indicator input with different "
                                 "numbers of labels")
            classes = summaries[0].labels[1]
            binarizer = LabelBinarizer().fit(np.eye(len(classes), dtype=int))
        else:
            classes = unique_labels(*[s.labels[1] for s in summaries])
            binarizer = LabelBinarizer().fit(classes)
        if first_pass:
            self._label_binarizer = binarizer
            self.classes_ = binarizer.classes_
        elif set(binarizer.classes_) != set(self.classes_):
            raise ValueError(
                "warm_start can only be used where `y` has the same classes as in the "
                f"previous call to fit. Previously got {self.classes_}, `y` has "
                f"{binarizer.classes_}"
            )
        self._global_class_weights = self._resolve_class_weight(summaries, binarizer)

    def _resolve_class_weight(self, summaries, binarizer):
        """The weights of all partitions' classes, per output, as
        compute_sample_weight derives them from all of y: a list of
        (classes, weights), or None without class_weight."""
        if self.class_weight is None:
            return None
        if binarizer.y_type_ == "multilabel-indicator":
            if self.class_weight != "balanced":
                # scikit-learn's error for a dict with several outputs
                compute_sample_weight(self.class_weight, np.eye(2, dtype=int))
            outputs = [[s.labels[2][j] for s in summaries]
                       for j in range(len(binarizer.classes_))]
        else:
            outputs = [[(s.labels[1], s.labels[2]) for s in summaries]]
        resolved = []
        for found in outputs:
            classes = np.unique(np.concatenate([labels for labels, _ in found]))
            counts = np.zeros(len(classes), dtype=np.int64)
            for labels, n in found:
                counts[np.searchsorted(classes, labels)] += n
            if self.class_weight == "balanced":
                weights = counts.sum() / (len(classes) * counts.astype(np.float64))
            else:
                weights = compute_class_weight(self.class_weight, classes=classes, y=classes)
            resolved.append((classes, np.asarray(weights, dtype=np.float64)))
        return resolved

    def _template(self):
        est = super()._template()
        for name in ("classes_", "_label_binarizer"):
            if hasattr(self, name):
                setattr(est, name, getattr(self, name))
        return est

    def to_local(self):
        est = super().to_local()
        est.__dict__.pop("_global_class_weights", None)
        return est

    def predict_proba(self, X):
        """Class probabilities: lazy and blockwise on a dask collection."""
        if dask.is_dask_collection(X):
            return self._blockwise(X, "predict_proba")
        return super().predict_proba(X)

    def predict_log_proba(self, X):
        """Log of the class probabilities: lazy and blockwise on a dask
        collection."""
        if dask.is_dask_collection(X):
            return self._blockwise(X, "predict_log_proba")
        return super().predict_log_proba(X)


class DaskMLPRegressor(_DaskMLP, MLPRegressor):
    """``blasprop.MLPRegressor`` trained on data spread over a Dask cluster.

    Takes MLPRegressor's parameters, plus ``client`` and ``local_epochs`` as
    ``DaskMLPClassifier`` does. See ``blasprop.dask`` for how each solver
    trains.
    """

    _local_class = MLPRegressor
    _parameter_constraints = {**MLPRegressor._parameter_constraints,
                              **_DaskMLP._dask_constraints}
    __init__ = _dask_init(MLPRegressor)
