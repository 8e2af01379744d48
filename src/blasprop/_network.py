"""The network: its layout, the flat parameter vector, chunk sizes, and the
fitted model as one prediction call sees it.

The parameters of a network live in one flat vector, laid out like
scikit-learn's ``_pack`` (``_core.Layout`` holds the offsets); ``coefs_`` and
``intercepts_`` are views of it after a fit.
"""

import numpy as np

from . import _core
from ._activations import (
    HIDDEN_ACTIVATIONS,
    OUTPUT_ACTIVATIONS,
    hidden_activation_names,
)
from ._blas_policy import choose as choose_blas_routes

# How many times a prediction reads the fitted attributes twice over before
# it gives up on getting the same objects both times (another thread keeps
# refitting the estimator).
_SNAPSHOT_TRIES = 3

# Rows per chunk for prediction and full-data objectives: keep the layer
# buffers near this many bytes.
_CHUNK_BYTES = 1 << 25
_MAX_CHUNK_ROWS = 16384

# Prediction works on chunks whose buffers stay in a core's L2 cache (about
# a megabyte; at least 512 rows, so that wide layers still make full-size
# gemms); see docs/performance.md.
_PREDICT_CHUNK_BYTES = 1 << 20
_PREDICT_MIN_ROWS = 512


def layer_units(coefs):
    """Units of every layer, input to output, from ``coefs_`` (the weight
    matrices: fan_in x fan_out each)."""
    return [coefs[0].shape[0]] + [c.shape[1] for c in coefs]


def _row_bytes(units, itemsize):
    """Workspace bytes per row (activations, input row, deltas)."""
    return itemsize * (2 * sum(units[1:]) + units[0] + 2 * max(units[1:]))


def chunk_rows(units, itemsize, n_rows):
    """Rows per chunk of a full-data pass (L-BFGS objective, gradient check)."""
    per_row = _row_bytes(units, itemsize)
    return int(max(1, min(n_rows, _MAX_CHUNK_ROWS, _CHUNK_BYTES // per_row)))


def predict_chunk_rows(units, itemsize, n_rows):
    """Rows per chunk of a prediction."""
    per_row = _row_bytes(units, itemsize)
    return int(max(1, min(n_rows, max(_PREDICT_MIN_ROWS, _PREDICT_CHUNK_BYTES // per_row))))


class Network:
    """The flat parameter vector of a fitted model and its layout."""

    def __init__(self, units, hidden_acts, out_act, loss_code, huber_delta, cap,
                 dropout=None):
        choose_blas_routes()
        codes = [HIDDEN_ACTIVATIONS[a] for a in hidden_acts]
        codes.append(OUTPUT_ACTIVATIONS[out_act])
        self.units = list(units)
        self.layout = _core.Layout(units, codes, loss_code, huber_delta, cap, dropout)
        self.has_dropout = self.layout.d_size > 0

    def workspace(self, dtype, sparse, blocked=False):
        return _core.Workspace(self.layout, dtype, self.units[0], sparse, blocked)

    def pack(self, coefs, intercepts, dtype):
        """Parameters as one vector, laid out like scikit-learn's ``_pack``."""
        u = self.units
        if len(coefs) != len(u) - 1 or len(intercepts) != len(u) - 1 or any(
            np.shape(c) != (u[i], u[i + 1]) or np.shape(b) != (u[i + 1],)
            for i, (c, b) in enumerate(zip(coefs, intercepts))
        ):
            # every slot of the vector must be written: it starts uninitialised
            raise inconsistent(
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


def views_of_one_vector(coefs, intercepts, layout):
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


class Model:
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


def frozen(value):
    """A list's items as they are now (a tuple); anything else as it is."""
    return tuple(value) if isinstance(value, list) else value


def _same_objects(a, b):
    """Whether two reads of the fitted attributes found the same objects."""
    if isinstance(a, (tuple, list)):
        return (isinstance(b, (tuple, list)) and len(a) == len(b)
                and all(_same_objects(x, y) for x, y in zip(a, b)))
    return a is b or (isinstance(a, str) and a == b)


def inconsistent(what):
    """The ValueError for fitted attributes that do not belong together."""
    return ValueError(
        f"The fitted attributes are inconsistent: {what}. Were they set by hand, "
        "or was the estimator refitted by another thread during this call?"
    )


def model_snapshot(read_attributes):
    """The fitted model, read once for a whole prediction call (see
    ``Model``): ``read_attributes()`` is called twice, so that a refit in
    another thread between the reads of two attributes is seen and the read
    taken again."""
    for _ in range(_SNAPSHOT_TRIES):
        attrs = read_attributes()
        if _same_objects(attrs, read_attributes()):
            return checked_model(*attrs)
    raise RuntimeError(
        "The fitted model was changed by another thread during this call "
        "(the estimator is being refitted); predict again once it is done."
    )


def checked_model(coefs, intercepts, out_activation, activation, label_binarizer,
                  n_outputs=None):
    """A Model of these attributes, or ValueError saying what does not fit."""
    if not isinstance(coefs, (list, tuple)) or not isinstance(intercepts, (list, tuple)):
        raise inconsistent("coefs_ and intercepts_ must be lists of arrays")
    if not coefs or len(coefs) != len(intercepts):
        raise inconsistent(f"{len(coefs)} coefs_ for {len(intercepts)} intercepts_")
    coefs = [np.asarray(c) for c in coefs]
    intercepts = [np.asarray(b) for b in intercepts]
    for i, (c, b) in enumerate(zip(coefs, intercepts)):
        if c.ndim != 2 or c.dtype.kind not in "fiu" or b.dtype.kind not in "fiu":
            raise inconsistent(
                f"coefs_[{i}] must be a 2-D array of real numbers, got shape "
                f"{c.shape} and dtype {c.dtype} (intercepts_[{i}]: {b.dtype})"
            )
        if b.shape != (c.shape[1],):
            raise inconsistent(
                f"intercepts_[{i}] has shape {b.shape}, coefs_[{i}] has "
                f"{c.shape[1]} columns"
            )
        if i and c.shape[0] != coefs[i - 1].shape[1]:
            raise inconsistent(
                f"coefs_[{i}] has {c.shape[0]} rows, coefs_[{i - 1}] has "
                f"{coefs[i - 1].shape[1]} columns"
            )
    units = layer_units(coefs)
    if min(units) < 1:
        raise inconsistent(f"a layer has no units (layers {units})")
    if n_outputs is not None and n_outputs != units[-1]:
        raise inconsistent(f"n_outputs_ is {n_outputs}, coefs_[-1] has {units[-1]} columns")
    if out_activation not in OUTPUT_ACTIVATIONS:
        raise inconsistent(f"unknown out_activation_ {out_activation!r}")
    hidden = hidden_activation_names(activation, len(units) - 2)
    unknown = [a for a in hidden if a not in HIDDEN_ACTIVATIONS]
    if unknown:
        raise ValueError(f"Unknown activation {unknown[0]!r}; expected one of "
                         f"{sorted(HIDDEN_ACTIVATIONS)}.")
    if label_binarizer is not None:
        y_type = getattr(label_binarizer, "y_type_", None)
        classes = getattr(label_binarizer, "classes_", None)
        if y_type is None or classes is None:
            raise inconsistent("the label binarizer is not fitted")
        n_out, n_classes = units[-1], len(classes)
        if y_type == "multiclass":
            ok = n_out == n_classes and out_activation == "softmax"
        elif y_type == "binary":
            ok = n_out == 1 and n_classes <= 2 and out_activation == "logistic"
        else:
            ok = n_out == n_classes and out_activation == "logistic"
        if not ok:
            raise inconsistent(
                f"a {y_type} classifier of {n_classes} classes with {n_out} outputs "
                f"and out_activation_={out_activation!r}"
            )
    return Model(coefs, intercepts, units, hidden, out_activation, label_binarizer)
