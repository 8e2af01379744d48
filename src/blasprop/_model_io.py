"""Save and load fitted multilayer perceptrons as ``.bpm`` model files.

The format is described in ``docs/model-files.md``.  In short::

    offset  size  field
    0       8     magic  b"\\x89BPM\\r\\n\\x1a\\n"
    8       4     format version (uint32, little-endian) -- currently 1
    12      4     CRC-32 of the JSON header bytes (uint32)
    16      8     JSON header length in bytes (uint64)
    24      8     array data length in bytes (uint64)
    32      J     JSON header (UTF-8)
    ...           zero padding up to a multiple of 64
    D       L     raw little-endian C-order arrays, each starting on a multiple
                  of 64 from D, zero padding between them, described in the
                  JSON header ("arrays": name, dtype, shape, offset, crc32)

Loading never unpickles and never imports or executes anything named in the
file: the estimator class comes from a fixed allow-list, labels and
parameters are plain JSON, and every size is checked against the file size
before anything is read or allocated.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import secrets
import stat
import struct
import zlib
from numbers import Integral, Real

import numpy as np

from ._activations import OUTPUT_ACTIVATIONS
from ._optimizer import STOCHASTIC_SOLVERS

__all__ = [
    "save", "load", "load_with_info", "load_metadata", "read_info", "FORMAT_VERSION", "MAGIC",
]

MAGIC = b"\x89BPM\r\n\x1a\n"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIIQQ")  # magic, version, json crc32, json length, data length
_ALIGN = 64
_WEIGHT_DTYPES = {"<f4": np.float32, "<f8": np.float64}

# Limits, all checked before the thing they bound is allocated (documented in
# docs/model-files.md).  A file within them costs at most a small multiple of
# its own size to load; a legitimate model reaches them only with about
# half a million named features or classes.
_MAX_JSON_BYTES = 16 * 1024 * 1024  # the JSON header, in bytes
_MAX_JSON_DEPTH = 64  # nesting of arrays and objects
_MAX_JSON_VALUES = 1 << 19  # values and object keys, containers included
_MAX_JSON_CONTAINERS = 1 << 17  # arrays and objects (each costs ~100 bytes)
_MAX_JSON_STRING = 1 << 20  # characters in one string
_MAX_JSON_NUMBER = 40  # characters in one number (2**64 has 20 digits)
_MAX_INT = 2**63 - 1  # every integer field (sizes, counters, checksums) fits int64
_MAX_ARRAYS = 10_000
_MAX_LAYERS = 4_096
_MAX_ARRAY_BYTES = 1 << 40  # one array; also bounded by the file's size
_MAX_DATA_BYTES = 1 << 42  # all arrays; also bounded by the file's size
# Class labels: a string dtype at most this many characters wider than the
# longest label (fit makes it exact; an edited classes_ may be wider, and a
# little slack costs little) ...
_LABEL_WIDTH_SLACK = 64
# ... and the labels' NumPy array at most this many bytes per byte of JSON
# header, plus _LABEL_BYTES_FREE (a one-character label costs 4 bytes of
# JSON and 4 bytes as '<U1').
_LABEL_BYTES_PER_JSON_BYTE = 8
_LABEL_BYTES_FREE = 1 << 20

# Allow-list of estimator classes: (module, class name).  Nothing else is ever
# constructed, whatever a file says.
_CLASSES = {
    ("blasprop", "MLPClassifier"),
    ("blasprop", "MLPRegressor"),
    ("sklearn.neural_network", "MLPClassifier"),
    ("sklearn.neural_network", "MLPRegressor"),
}

# Fitted attributes stored in the JSON header (besides arrays, classes and
# feature names).  Each is (name, kind); every one is optional.
_SCALAR_ATTRS = (
    ("n_features_in_", "int"),
    ("n_outputs_", "int"),
    ("n_layers_", "int"),
    ("out_activation_", "str"),
    ("n_iter_", "int"),
    ("t_", "int"),
    ("loss_", "float"),
    ("best_loss_", "float"),
    ("best_validation_score_", "float"),
    ("_no_improvement_count", "int"),
)
_LIST_ATTRS = ("loss_curve_", "validation_scores_", "validation_loss_curve_")  # float64 arrays
_OUT_ACTIVATIONS = set(OUTPUT_ACTIVATIONS)  # the file stores names, not codes
_LABEL_TYPES = {"binary", "multiclass", "multilabel-indicator"}
_STOCHASTIC_SOLVERS = set(STOCHASTIC_SOLVERS)

# Parameters that JSON cannot hold and that a model does not need: stored as
# null (listed in "unsaved_params") so the loaded model gets the default.
# Any other parameter that cannot be stored makes save raise.
_DROPPABLE_PARAMS = {"random_state", "callbacks"}

# metadata["cli"] is written by `blasprop train` and read by `blasprop info`
# and `predict`: its known fields must have these types (JSON numbers for
# "number"; None allowed where listed).
_CLI_FIELDS = {
    "data": ("str", False),
    "target": ("str", True),
    "features": ("str-list", False),
    "input": ("str", False),
    "task": ("str", False),
    "standardized": ("bool", False),
    "n_train": ("int", False),
    "n_test": ("int", False),
    "score_name": ("str", False),
    "test_score": ("number", True),
    "fit_seconds": ("number", True),
    "seconds_per_epoch": ("number", True),
    "interrupted_after_epochs": ("int", False),
}


def _blasprop_version():
    try:
        from . import __version__
    except ImportError:  # pragma: no cover - partially built package
        return "unknown"
    return str(__version__)


def _class_key(estimator):
    cls = type(estimator)
    module = cls.__module__
    if module == "blasprop" or module.startswith("blasprop."):
        module = "blasprop"
    elif module.startswith("sklearn.neural_network"):
        module = "sklearn.neural_network"
    return module, cls.__name__


def _resolve_class(module, name):
    if (module, name) not in _CLASSES:
        raise ValueError(
            f"model file names estimator {module}.{name}, which blasprop does not load"
        )
    if module == "blasprop":
        from . import MLPClassifier, MLPRegressor
    else:
        from sklearn.neural_network import MLPClassifier, MLPRegressor
    return {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}[name]


def _is_classifier_name(name):
    return name == "MLPClassifier"


# --------------------------------------------------------------------------
# JSON value helpers


def _enc_float(x):
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _dec_float(v, what):
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError(f"{what} must be a number")
    if isinstance(v, str):
        if v not in ("nan", "inf", "-inf"):
            raise ValueError(f"{what} must be a number")
        return float(v)
    return float(v)


def _dec_int(v, what, minimum=0):
    if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= _MAX_INT:
        raise ValueError(f"{what} must be an integer >= {minimum} (and below 2**63)")
    return v


def _dec_str(v, what):
    if not isinstance(v, str):
        raise ValueError(f"{what} must be a string")
    return v


def _is_json_scalar(v):
    return v is None or isinstance(v, (bool, int, float, str))


def _json_scalar(value):
    """Return (ok, json_value) for a scalar parameter value (finite floats only)."""
    if value is None or isinstance(value, (bool, str)):
        return True, value
    if isinstance(value, np.bool_):
        return True, bool(value)
    if isinstance(value, Integral):
        return True, int(value)
    if isinstance(value, Real):
        value = float(value)
        return (True, value) if math.isfinite(value) else (False, None)
    return False, None


def _encode_param(value):
    """Return (ok, json_value, type) for an estimator parameter.

    Scalars are stored as themselves (type "float" marks a non-finite float
    stored as "inf", "-inf" or "nan"), lists and tuples of scalars as JSON
    lists (type "tuple" marks tuples), a range as [start, stop, step] (type
    "range"), a 1-D bool/int/float NumPy array as {"dtype", "values"} (type
    "ndarray"), dicts with scalar keys and values (e.g. ``class_weight``) as
    a list of [key, value] pairs (type "dict").
    """
    if isinstance(value, (list, tuple)):
        items = [_json_scalar(v) for v in value]
        if all(ok for ok, _ in items):
            return True, [v for _, v in items], ("tuple" if isinstance(value, tuple) else None)
        return False, None, None
    if isinstance(value, range):
        return True, [value.start, value.stop, value.step], "range"
    if isinstance(value, np.ndarray):
        if value.ndim == 1 and value.dtype.kind in "biuf" and value.dtype.itemsize <= 8:
            items = [_json_scalar(v) for v in value.tolist()]
            if all(ok for ok, _ in items):
                dtype = value.dtype.newbyteorder("<") if value.dtype.itemsize > 1 else value.dtype
                return True, {"dtype": dtype.str, "values": [v for _, v in items]}, "ndarray"
        return False, None, None
    if isinstance(value, dict):
        pairs = [(_json_scalar(k), _json_scalar(v)) for k, v in value.items()]
        if all(k[0] and v[0] for k, v in pairs):
            return True, [[k[1], v[1]] for k, v in pairs], "dict"
        return False, None, None
    if isinstance(value, Real) and not isinstance(value, (bool, np.bool_, Integral)):
        if not math.isfinite(float(value)):
            return True, _enc_float(value), "float"
    ok, enc = _json_scalar(value)
    return ok, enc, None


_PARAM_ARRAY_DTYPES = {
    "|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8",
}


def _decode_param(name, value, ptype):
    if ptype is None:
        if isinstance(value, list) and all(_is_json_scalar(v) for v in value):
            return value
        if not _is_json_scalar(value):
            raise ValueError(f"parameter {name!r} must be a JSON scalar or a list of scalars")
        return value
    if ptype == "tuple":
        if not isinstance(value, list) or not all(_is_json_scalar(v) for v in value):
            raise ValueError(f"parameter {name!r} must be a list of scalars")
        return tuple(value)
    if ptype == "dict":
        if not isinstance(value, list) or not all(
            isinstance(p, list) and len(p) == 2 and _is_json_scalar(p[0]) and _is_json_scalar(p[1])
            for p in value
        ):
            raise ValueError(f"parameter {name!r} must be a list of [key, value] pairs")
        return {k: v for k, v in value}
    if ptype == "float":
        if value not in ("inf", "-inf", "nan"):
            raise ValueError(f"parameter {name!r} must be \"inf\", \"-inf\" or \"nan\"")
        return float(value)
    if ptype == "range":
        if (
            not isinstance(value, list)
            or len(value) != 3
            or not all(
                isinstance(v, int) and not isinstance(v, bool) and abs(v) <= _MAX_INT
                for v in value
            )
            or value[2] == 0
        ):
            raise ValueError(f"parameter {name!r} must be [start, stop, step] with a non-zero step")
        return range(*value)
    if ptype == "ndarray":
        if not isinstance(value, dict) or set(value) != {"dtype", "values"}:
            raise ValueError(f"parameter {name!r} must be an object with dtype and values")
        dtype_str, values = value["dtype"], value["values"]
        if dtype_str not in _PARAM_ARRAY_DTYPES:
            raise ValueError(
                f"parameter {name!r} has dtype {dtype_str!r:.40}; allowed: bool, int, float"
            )
        kind = np.dtype(dtype_str).kind
        if not isinstance(values, list) or not all(
            isinstance(v, bool) if kind == "b"
            else (isinstance(v, int) and not isinstance(v, bool)) if kind in "iu"
            else (isinstance(v, (int, float)) and not isinstance(v, bool))
            for v in values
        ):
            raise ValueError(
                f"parameter {name!r} holds values that do not fit its dtype {dtype_str}"
            )
        try:
            return np.array(values, dtype=dtype_str).reshape(len(values)).astype(
                np.dtype(dtype_str).newbyteorder("="), copy=False
            )
        except OverflowError:
            raise ValueError(
                f"parameter {name!r} holds values out of the range of {dtype_str}"
            ) from None
    raise ValueError(f"parameter type {ptype!r:.40} of {name!r} is unknown")


# --------------------------------------------------------------------------
# class labels


def _encode_labels(values, what):
    """Encode a 1-D array of labels (classes_) as plain JSON."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional")
    kind = arr.dtype.kind
    if kind == "b":
        return {"dtype": "|b1", "values": [bool(v) for v in arr]}
    if kind in "iu":
        return {"dtype": (arr.dtype.newbyteorder("<").str if arr.dtype.itemsize > 1
                          else arr.dtype.str),
                "values": [int(v) for v in arr]}
    if kind == "f" and arr.dtype.itemsize in (2, 4, 8):
        return {"dtype": arr.dtype.newbyteorder("<").str, "values": [_enc_float(v) for v in arr]}
    if kind in "US":
        values = [str(v) for v in arr] if kind == "U" else [bytes(v).decode("latin-1") for v in arr]
        width = 4 if kind == "U" else 1
        longest = max((len(v) for v in values), default=0)
        dtype = arr.dtype.newbyteorder("<") if kind == "U" else arr.dtype
        if dtype.itemsize > width * (longest + _LABEL_WIDTH_SLACK):
            # load refuses such widths (they multiply memory); the values are
            # the same in the narrowest dtype that holds them
            dtype = np.dtype(f"{dtype.str[:2]}{max(longest, 1)}")
        return {"dtype": dtype.str, "values": values}
    if kind == "O":
        for element, test, conv in (
            ("str", lambda v: isinstance(v, str), str),
            ("bool", lambda v: isinstance(v, (bool, np.bool_)), bool),
            ("int",
             lambda v: isinstance(v, (Integral,)) and not isinstance(v, (bool, np.bool_)),
             int),
            ("float", lambda v: isinstance(v, (float, np.floating)), _enc_float),
            ("bytes", lambda v: isinstance(v, bytes), lambda v: v.decode("latin-1")),
        ):
            if all(test(v) for v in arr):
                return {"dtype": "|O", "element": element, "values": [conv(v) for v in arr]}
    raise ValueError(
        f"cannot store {what} of dtype {arr.dtype} (supported: str, bytes, int, float, bool)"
    )


def _decode_labels(spec, what, n_expected, budget):
    """Decode labels written by _encode_labels.

    ``n_expected`` is a (min, max) count implied by the output layer and
    ``budget`` the most bytes the labels' array may take; both are checked
    before anything is allocated.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"{what} must be an object")
    dtype_str = _dec_str(spec.get("dtype"), f"{what}.dtype")
    values = spec.get("values")
    if not isinstance(values, list):
        raise ValueError(f"{what}.values must be a list")
    lo, hi = n_expected
    if not lo <= len(values) <= hi:
        raise ValueError(
            f"{what} holds {len(values)} labels; the output layer implies "
            + (f"{lo}" if lo == hi else f"{lo} to {hi}")
        )
    if len(dtype_str) > 16:
        raise ValueError(f"{what}.dtype {dtype_str[:20]!r}... is not allowed")
    try:
        dtype = np.dtype(dtype_str)
    except TypeError as exc:
        raise ValueError(f"{what}.dtype {dtype_str!r} is not a dtype") from exc
    kind = dtype.kind
    def check(test, name):
        for v in values:
            if not test(v):
                raise ValueError(f"{what} holds a value that is not {name}: {v!r:.40}")

    if kind == "O":
        element = spec.get("element")
        out = np.empty(len(values), dtype=object)
        if element in ("str", "bytes"):
            check(lambda v: isinstance(v, str), "a string")
            conv = str if element == "str" else (lambda v: v.encode("latin-1"))
        elif element == "bool":
            check(lambda v: isinstance(v, bool), "a bool")
            conv = bool
        elif element == "int":
            check(lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
            conv = int
        elif element == "float":
            conv = None
        else:
            raise ValueError(f"{what}.element {element!r:.40} is not supported")
        for i, v in enumerate(values):
            out[i] = _dec_float(v, what) if conv is None else conv(v)
        return out
    if kind == "b" and dtype.itemsize == 1:
        check(lambda v: isinstance(v, bool), "a bool")
    elif kind in "iu" and dtype.itemsize <= 8:
        check(lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
        info = np.iinfo(dtype)
        check(lambda v: info.min <= v <= info.max, f"within the range of {dtype}")
    elif kind == "f" and dtype.itemsize in (2, 4, 8):
        values = [_dec_float(v, what) for v in values]
    elif kind in "US":
        width = 4 if kind == "U" else 1
        check(lambda v: isinstance(v, str) and len(v) * width <= dtype.itemsize,
              f"a string fitting {dtype}")
        longest = max((len(v) for v in values), default=0)
        if dtype.itemsize > width * (longest + _LABEL_WIDTH_SLACK):
            raise ValueError(
                f"{what}.dtype {dtype_str!r} is far wider than its values (longest: {longest})"
            )
        if kind == "S":
            try:
                values = [v.encode("latin-1") for v in values]
            except UnicodeEncodeError:
                raise ValueError(f"{what} holds a bytes label that is not Latin-1") from None
    else:
        raise ValueError(f"{what}.dtype {dtype_str!r} is not allowed")
    if len(values) * dtype.itemsize > budget:
        raise ValueError(
            f"{what}.dtype {dtype_str!r} would make {len(values)} labels take "
            f"{len(values) * dtype.itemsize} bytes, more than the limit of {budget} for this file"
        )
    return np.array(values, dtype=dtype).reshape(len(values))


# --------------------------------------------------------------------------
# save


def _layer_sizes(n_features, hidden, n_outputs):
    if isinstance(hidden, Integral) and not isinstance(hidden, (bool, np.bool_)):
        hidden = [int(hidden)]
    if isinstance(hidden, range):
        if not 0 <= len(hidden) <= _MAX_LAYERS:
            raise ValueError("hidden_layer_sizes lists too many layers")
        hidden = list(hidden)
    elif isinstance(hidden, np.ndarray) and hidden.ndim == 1 and hidden.dtype.kind in "iu":
        hidden = hidden.tolist()
    if not isinstance(hidden, (list, tuple)):
        raise ValueError("hidden_layer_sizes must be an integer or a list of integers")
    hidden = list(hidden)
    if len(hidden) > _MAX_LAYERS:
        raise ValueError("hidden_layer_sizes lists too many layers")
    for h in hidden:
        _dec_int(h, "hidden_layer_sizes entries", minimum=1)
    return [n_features, *hidden, n_outputs]


def _align(n):
    return -(-n // _ALIGN) * _ALIGN


def save(estimator, path, *, metadata=None):
    """Save a fitted ``MLPClassifier`` or ``MLPRegressor`` to a ``.bpm`` file.

    Parameters
    ----------
    estimator : blasprop.MLPClassifier or blasprop.MLPRegressor
        A fitted estimator (scikit-learn's MLP classes are accepted too).
    path : str or os.PathLike
        Destination; ``.bpm`` is the conventional suffix.  The file is written
        to a temporary file in the same directory, flushed to disk and renamed
        over ``path``, so an interrupted save leaves the previous file intact
        and no temporary file behind.  An existing file keeps its permission
        bits; when ``path`` is a symbolic link, the file it points to is
        replaced and the link kept.
    metadata : JSON-serialisable, optional
        Extra information stored under ``"metadata"``; read it back with
        :func:`load_metadata`.

    Raises
    ------
    ValueError
        If the model or ``metadata`` cannot be stored in a file that
        :func:`load` accepts (checked before anything is written).

    Notes
    -----
    ``random_state`` given as a ``RandomState`` instance and callables in
    ``callbacks`` cannot be stored: they are written as ``null`` and listed
    under ``"unsaved_params"``, and a loaded model gets ``None`` for them.
    Any other parameter value that cannot be stored makes ``save`` raise.
    Optimizer state (Adam moments, SGD velocities) is not stored:
    ``partial_fit`` after loading starts a fresh optimizer.
    """
    from sklearn.exceptions import NotFittedError

    module, name = _class_key(estimator)
    if (module, name) not in _CLASSES:
        raise TypeError(
            "blasprop.save expects a fitted MLPClassifier or MLPRegressor, "
            f"got {type(estimator).__name__}"
        )
    if not hasattr(estimator, "coefs_"):
        raise NotFittedError(f"this {name} instance is not fitted yet; call fit first")

    coefs = list(estimator.coefs_)
    intercepts = list(estimator.intercepts_)
    if not coefs or len(coefs) != len(intercepts):
        raise ValueError("coefs_ and intercepts_ must be non-empty lists of the same length")
    dtype = np.asarray(coefs[0]).dtype
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"weights must be float32 or float64, got {dtype}")
    little = dtype.newbyteorder("<")

    # Copies: the checksums must describe the bytes written even if another
    # thread trains this estimator meanwhile.
    arrays = []
    for i, (w, b) in enumerate(zip(coefs, intercepts)):
        w, b = np.asarray(w), np.asarray(b)
        if w.dtype != dtype or b.dtype != dtype:
            raise ValueError("all coefs_ and intercepts_ must share one dtype")
        arrays.append((f"coefs_.{i}", np.array(w, dtype=little, order="C", copy=True)))
        arrays.append((f"intercepts_.{i}", np.array(b, dtype=little, order="C", copy=True)))
    if not all(np.isfinite(arr).all() for _, arr in arrays):
        raise ValueError("cannot save a model whose weights contain NaN or infinity")
    for attr in _LIST_ATTRS:
        value = getattr(estimator, attr, None)
        if value is not None:
            arrays.append((attr, np.array(value, dtype="<f8", copy=True).reshape(-1)))

    params, unsaved, param_types = {}, [], {}
    for key, value in estimator.get_params(deep=False).items():
        ok, enc, ptype = _encode_param(value)
        if not ok:
            if key not in _DROPPABLE_PARAMS:
                raise ValueError(
                    f"cannot store parameter {key}={value!r:.80} in a model file (supported: "
                    "JSON scalars, lists and tuples of them, ranges, 1-D numeric arrays, dicts)"
                )
            unsaved.append(key)
        elif ptype is not None:
            param_types[key] = ptype
        params[key] = enc

    attributes = {}
    for attr in _LIST_ATTRS:  # the values are arrays; "array" marks them present
        if hasattr(estimator, attr):
            attributes[attr] = None if getattr(estimator, attr) is None else "array"
    for attr, kind in _SCALAR_ATTRS:
        if not hasattr(estimator, attr):
            continue
        value = getattr(estimator, attr)
        if value is None:
            attributes[attr] = None
        elif kind == "int":
            attributes[attr] = int(value)
        elif kind == "float":
            attributes[attr] = _enc_float(value)
        else:
            attributes[attr] = str(value)

    header = {
        "format": "blasprop-model",
        "format_version": FORMAT_VERSION,
        "blasprop_version": _blasprop_version(),
        "estimator": {"module": module, "class": name},
        "params": params,
        "unsaved_params": unsaved,
        "param_types": param_types,
        "dtype": str(dtype),
        "attributes": attributes,
        "feature_names_in": None,
        "classes": None,
        "label_type": None,
        "metadata": metadata,
        "arrays": [],
    }
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        header["feature_names_in"] = [str(n) for n in names]
    if _is_classifier_name(name):
        header["classes"] = _encode_labels(estimator.classes_, "classes_")
        binarizer = getattr(estimator, "_label_binarizer", None)
        header["label_type"] = getattr(binarizer, "y_type_", None)

    offset = 0
    for arr_name, arr in arrays:
        offset = _align(offset)
        header["arrays"].append(
            {
                "name": arr_name,
                "dtype": arr.dtype.str,
                "shape": list(arr.shape),
                "offset": offset,
                "crc32": zlib.crc32(memoryview(arr).cast("B")),
            }
        )
        offset += arr.nbytes
    data_len = offset

    try:
        json_bytes = json.dumps(
            header, allow_nan=False, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata is not JSON-serialisable: {exc}") from exc
    # load's own checks on exactly the bytes about to be written, so that
    # save never writes a file that load refuses
    try:
        checked = _parse_json(json_bytes)
        spec = _interpret(checked, _array_table(checked, data_len), len(json_bytes))
        _make_estimator(spec)
    except ValueError as exc:
        raise ValueError(f"cannot save this {name}: {exc}") from None

    def chunks():
        yield _HEADER.pack(MAGIC, FORMAT_VERSION, zlib.crc32(json_bytes), len(json_bytes), data_len)
        yield json_bytes
        yield b"\0" * (_align(_HEADER.size + len(json_bytes)) - _HEADER.size - len(json_bytes))
        pos = 0
        for _, arr in arrays:
            yield b"\0" * (_align(pos) - pos)
            pos = _align(pos)
            yield memoryview(arr).cast("B")
            pos += arr.nbytes

    _write_replacing(path, chunks())


def _write_replacing(path, chunks):
    """Write ``chunks`` to ``path`` through a temporary file and a rename.

    A symbolic link at ``path`` is kept and the file it points to replaced
    (as editors do).  An existing file's permission bits carry over; a new
    file gets 0o666 minus the umask, like ``open``.  On any exception,
    KeyboardInterrupt included, the temporary file is removed and ``path``
    is untouched.
    """
    path = os.fspath(path)
    target = os.path.realpath(path) if os.path.islink(path) else path
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        raise ValueError(
            f"{path}: exists and is not a regular file; save replaces only regular files"
        )
    directory, name = os.path.split(target)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL
             | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    fd = os.open(tmp, flags, 0o666)
    try:
        f = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    try:
        with f:
            if st is not None:
                mode = stat.S_IMODE(st.st_mode) & 0o777  # never carry setuid/setgid over
                if hasattr(os, "fchmod"):
                    os.fchmod(f.fileno(), mode)
                else:  # pragma: no cover - Windows
                    os.chmod(tmp, mode)
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_directory(directory)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_directory(directory):
    """Make the rename durable; not every platform can open a directory."""
    try:
        fd = os.open(directory or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# load


def _bad(path, msg):
    return ValueError(f"{os.fspath(path)}: not a valid blasprop model file: {msg}")


# --------------------------------------------------------------------------
# opening


def _check_regular(st, path):
    if stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory, not a model file", os.fspath(path))
    kind = (
        "a FIFO" if stat.S_ISFIFO(st.st_mode)
        else "a socket" if stat.S_ISSOCK(st.st_mode)
        else "a character device" if stat.S_ISCHR(st.st_mode)
        else "a block device" if stat.S_ISBLK(st.st_mode)
        else "not a regular file"
    )
    raise _bad(path, f"it is {kind}; a model file must be a regular file")


def _open_model(path):
    """Open a model file for reading, refusing anything but a regular file.

    The stat before opening gives a clear message for sockets (which cannot
    be opened); O_NONBLOCK keeps a FIFO from blocking the open until a
    writer appears; the fstat of the opened descriptor decides, so a file
    swapped after the first stat is still caught.
    """
    _check_regular(os.stat(path), path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    try:
        _check_regular(os.fstat(fd), path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


# --------------------------------------------------------------------------
# the JSON header


def _no_constants(name):
    raise ValueError(f"JSON constant {name} is not allowed")


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate JSON key {key!r:.60}")
        out[key] = value
    return out


def _parse_int(text):
    if len(text) > _MAX_JSON_NUMBER:
        raise ValueError(f"JSON number with {len(text)} digits")
    return int(text)


def _parse_float(text):
    if len(text) > _MAX_JSON_NUMBER:
        raise ValueError(f"JSON number of {len(text)} characters")
    return float(text)


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def _precheck_json(raw):
    """Bound what json.loads will build, before it builds it.

    Every value or object key after the first follows a ``[``, ``{``, ``,``
    or ``:``, so counting those bytes bounds the number of values, and
    counting ``[`` and ``{`` bounds the containers.  Bytes inside strings
    count too, so the counts are upper bounds; only when they exceed a limit
    are the strings blanked out (at most _MAX_JSON_VALUES of them, or the
    file is refused) and the counts taken again.
    """
    def counts(text):
        containers = text.count(b"[") + text.count(b"{")
        return containers, containers + text.count(b",") + text.count(b":") + 1

    containers, values = counts(raw)
    if containers > _MAX_JSON_CONTAINERS or values > _MAX_JSON_VALUES:
        if raw.count(b'"') > 2 * _MAX_JSON_VALUES:
            raise ValueError(f"JSON header holds more than {_MAX_JSON_VALUES} strings")
        containers, values = counts(_JSON_STRING.sub(b'""', raw))
    if containers > _MAX_JSON_CONTAINERS:
        raise ValueError(
            f"JSON header holds {containers} arrays and objects (limit {_MAX_JSON_CONTAINERS})"
        )
    if values > _MAX_JSON_VALUES:
        raise ValueError(f"JSON header holds about {values} values (limit {_MAX_JSON_VALUES})")


def _check_tree(obj):
    """Nesting depth and string lengths of a parsed header (iteratively)."""
    stack = [(obj, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if len(value) > _MAX_JSON_STRING:
                raise ValueError(
                    f"JSON string of {len(value)} characters (limit {_MAX_JSON_STRING})"
                )
        elif isinstance(value, (dict, list)):
            if depth >= _MAX_JSON_DEPTH:
                raise ValueError(f"JSON header is nested deeper than {_MAX_JSON_DEPTH}")
            if isinstance(value, dict):
                stack.extend((k, depth + 1) for k in value)
                stack.extend((v, depth + 1) for v in value.values())
            else:
                stack.extend((v, depth + 1) for v in value)


def _parse_json(raw):
    """The JSON header as a dict, within the documented limits."""
    if len(raw) > _MAX_JSON_BYTES:
        raise ValueError(f"JSON header is {len(raw)} bytes (limit {_MAX_JSON_BYTES})")
    try:
        _precheck_json(raw)
        # json's decoder guards its recursion, so nesting deeper than the
        # interpreter allows raises RecursionError before much is built;
        # _check_tree then applies the real, lower limit
        header = json.loads(
            raw.decode("utf-8"),
            parse_constant=_no_constants,
            parse_int=_parse_int,
            parse_float=_parse_float,
            object_pairs_hook=_no_duplicates,
        )
        _check_tree(header)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"bad JSON header: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != "blasprop-model":
        raise ValueError("JSON header does not describe a blasprop model")
    return header


def _read_exact(f, n):
    data = f.read(n)
    if data is None or len(data) != n:
        raise ValueError("file ended early")
    return data


def _read_header(f, path):
    """Validate the fixed header and JSON; return (header dict, data offset, data length)."""
    size = os.fstat(f.fileno()).st_size
    head = f.read(_HEADER.size) or b""
    if len(head) < _HEADER.size:
        if MAGIC.startswith(head[: len(MAGIC)]) and head:
            raise _bad(path, f"file is truncated ({size} bytes)")
        raise _bad(path, f"file is too short ({size} bytes)")
    magic, version, json_crc, json_len, data_len = _HEADER.unpack(head)
    if magic != MAGIC:
        hint = ""
        if magic.startswith(b"PK"):
            hint = " (it looks like a zip/npz archive)"
        elif magic[:1] == b"\x80" or magic[:1] in (b"(", b"]", b"}"):
            hint = " (it looks like a pickle, which blasprop never loads)"
        raise _bad(path, f"wrong magic bytes{hint}")
    if version != FORMAT_VERSION:
        raise _bad(
            path,
            f"format version {version} is not supported (this blasprop reads "
            f"version {FORMAT_VERSION}; a newer blasprop may read it)",
        )
    if json_len > _MAX_JSON_BYTES:
        raise _bad(path, f"declared JSON header length {json_len} exceeds the limit of "
                         f"{_MAX_JSON_BYTES}")
    if _HEADER.size + json_len > size:
        raise _bad(path, f"declared JSON header length {json_len} does not fit in the file "
                         f"({size} bytes); truncated?")
    data_offset = _align(_HEADER.size + json_len)
    if data_offset + data_len != size:
        if data_offset + data_len > size:
            raise _bad(path, f"file is truncated: expected {data_offset + data_len} bytes, "
                             f"found {size}")
        raise _bad(path, f"file has {size - data_offset - data_len} unexpected trailing bytes")
    if data_len > _MAX_DATA_BYTES:
        raise _bad(path, f"array data of {data_len} bytes exceeds the limit of {_MAX_DATA_BYTES}")
    raw = _read_exact(f, json_len)
    if zlib.crc32(raw) != json_crc:
        raise _bad(path, "JSON header checksum mismatch (file is corrupted)")
    if any(_read_exact(f, data_offset - _HEADER.size - json_len)):
        raise _bad(path, "non-zero padding after the JSON header")
    try:
        header = _parse_json(raw)
    except ValueError as exc:
        raise _bad(path, str(exc)) from None
    if header.get("format_version") != version:
        raise _bad(path, "format version in the JSON header disagrees with the file header")
    return header, data_offset, data_len, json_len


def _array_table(header, data_len):
    """Validate the "arrays" table; return {name: (dtype, shape, offset, nbytes, crc)}."""
    table = header.get("arrays")
    if not isinstance(table, list) or len(table) > _MAX_ARRAYS:
        raise ValueError('"arrays" must be a list of at most %d entries' % _MAX_ARRAYS)
    out = {}
    expected_offset = 0
    for i, entry in enumerate(table):
        what = f"arrays[{i}]"
        if (not isinstance(entry, dict)
                or set(entry) != {"name", "dtype", "shape", "offset", "crc32"}):
            raise ValueError(f"{what} must have exactly the keys name, dtype, shape, offset, crc32")
        name = _dec_str(entry["name"], f"{what}.name")
        if name in out:
            raise ValueError(f"array {name!r:.60} is listed twice")
        if not isinstance(entry["dtype"], str) or entry["dtype"] not in _WEIGHT_DTYPES:
            raise ValueError(f"array {name!r:.60} has dtype {entry['dtype']!r:.40}; "
                             "only <f4 and <f8 are allowed")
        dtype = np.dtype(entry["dtype"])
        shape = entry["shape"]
        if not isinstance(shape, list) or len(shape) > 2:
            raise ValueError(f"array {name!r:.60}: shape must be a list of at most 2 integers")
        shape = tuple(_dec_int(s, f"array {name!r:.60} shape") for s in shape)
        nbytes = math.prod(shape) * dtype.itemsize
        offset = _dec_int(entry["offset"], f"array {name!r:.60} offset")
        expected_offset = _align(expected_offset)
        if offset != expected_offset:
            raise ValueError(f"array {name!r:.60} starts at {offset}, expected {expected_offset}")
        if nbytes > _MAX_ARRAY_BYTES or offset + nbytes > data_len:
            raise ValueError(
                f"array {name!r:.60} declares shape {shape} ({nbytes} bytes), "
                f"which does not fit in the file"
            )
        crc = _dec_int(entry["crc32"], f"array {name!r:.60} crc32")
        if crc > 0xFFFFFFFF:
            raise ValueError(f"array {name!r:.60} crc32 is not a 32-bit value")
        out[name] = (dtype, shape, offset, nbytes, crc)
        expected_offset = offset + nbytes
    if expected_offset != data_len:
        raise ValueError(f"array data is {data_len} bytes but the arrays cover {expected_offset}")
    return out


def _read_arrays(f, data_offset, table):
    arrays = {}
    pos = 0
    for name, (dtype, shape, offset, nbytes, crc) in table.items():
        if offset > pos:
            if any(_read_exact(f, offset - pos)):
                raise ValueError("non-zero padding between arrays")
        arr = np.empty(shape, dtype=dtype)
        view = memoryview(arr).cast("B") if nbytes else memoryview(b"")
        if nbytes and f.readinto(view) != nbytes:
            raise ValueError("file ended early")
        if zlib.crc32(view) != crc:
            raise ValueError(f"checksum mismatch in array {name!r} (file is corrupted)")
        if not dtype.isnative:
            arr = arr.astype(dtype.newbyteorder("="))
        arrays[name] = arr
        pos = offset + nbytes
    return arrays


_LOAD_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError)


def _read(path, *, with_arrays=True):
    """Check a model file; return (header, spec, arrays or None)."""
    with _open_model(path) as f:
        header, data_offset, data_len, json_len = _read_header(f, path)
        try:
            table = _array_table(header, data_len)
            spec = _interpret(header, table, json_len)
            arrays = _read_arrays(f, data_offset, table) if with_arrays else None
        except _LOAD_ERRORS as exc:
            raise _bad(path, str(exc)) from None
    return header, spec, arrays


def _check_metadata(metadata):
    """The command line's record (metadata["cli"]) has fixed field types."""
    if not isinstance(metadata, dict) or "cli" not in metadata:
        return
    cli = metadata["cli"]
    if not isinstance(cli, dict):
        raise ValueError('malformed metadata: "cli" must be an object')
    for key, (kind, nullable) in _CLI_FIELDS.items():
        if key not in cli or (cli[key] is None and nullable):
            continue
        v = cli[key]
        if kind == "str":
            ok = isinstance(v, str)
        elif kind == "str-list":
            ok = isinstance(v, list) and all(isinstance(n, str) for n in v)
        elif kind == "bool":
            ok = isinstance(v, bool)
        elif kind == "int":
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
        else:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok:
            expected = {"str": "a string", "str-list": "a list of strings", "bool": "true or false",
                        "int": "a non-negative integer", "number": "a finite number"}[kind]
            raise ValueError(f'malformed metadata: "cli" field {key!r} must be {expected}'
                             + (" or null" if nullable else ""))


def _interpret(header, table, json_len):
    """Check the header against the array table before any array is read."""
    est = header.get("estimator")
    if not isinstance(est, dict):
        raise ValueError('"estimator" must be an object')
    module = _dec_str(est.get("module"), "estimator.module")
    name = _dec_str(est.get("class"), "estimator.class")
    if (module, name) not in _CLASSES:
        raise ValueError(f"estimator {module:.60}.{name:.60} is not one blasprop loads")
    params = header.get("params")
    if not isinstance(params, dict):
        raise ValueError('"params" must be an object')
    param_types = header.get("param_types", {})
    if not isinstance(param_types, dict):
        raise ValueError('"param_types" must be an object')
    if set(param_types) - set(params):
        raise ValueError('"param_types" names a parameter that "params" does not hold')
    params = {k: _decode_param(k, v, param_types.get(k)) for k, v in params.items()}
    unsaved = header.get("unsaved_params", [])
    if not isinstance(unsaved, list) or not all(isinstance(u, str) for u in unsaved):
        raise ValueError('"unsaved_params" must be a list of names')
    for key in unsaved:
        # earlier versions also left out non-finite floats and arrays; the
        # default replaces any of them, as it always did
        if key not in params or params[key] is not None:
            raise ValueError(f"unsaved parameter {key!r:.60} must be stored as null")
    dtype_name = header.get("dtype")
    if dtype_name not in ("float32", "float64"):
        raise ValueError(f"dtype {dtype_name!r:.40} is not float32 or float64")
    weight_dtype = "<f4" if dtype_name == "float32" else "<f8"
    version = header.get("blasprop_version")
    if version is not None and not isinstance(version, str):
        raise ValueError("malformed metadata: blasprop_version must be a string")
    _check_metadata(header.get("metadata"))

    attrs = header.get("attributes")
    if not isinstance(attrs, dict):
        raise ValueError('"attributes" must be an object')
    known = dict(_SCALAR_ATTRS)
    known.update((key, "array") for key in _LIST_ATTRS)
    decoded = {}
    for key, value in attrs.items():
        if key not in known:
            raise ValueError(f"unknown fitted attribute {key!r:.60}")
        kind = known[key]
        if value is None:
            decoded[key] = None
        elif kind == "int":
            decoded[key] = _dec_int(value, key)
        elif kind == "float":
            decoded[key] = _dec_float(value, key)
        elif kind == "array":
            if value != "array" or key not in table:
                raise ValueError(
                    f"fitted attribute {key} must be null or \"array\" with a matching array"
                )
            decoded[key] = value
        else:
            decoded[key] = _dec_str(value, key)
    for key in ("n_features_in_", "n_outputs_", "n_layers_", "out_activation_"):
        if decoded.get(key) is None:
            raise ValueError(f"fitted attribute {key} is missing")
    n_features = _dec_int(decoded["n_features_in_"], "n_features_in_", 1)
    n_outputs = _dec_int(decoded["n_outputs_"], "n_outputs_", 1)
    out_activation = decoded["out_activation_"]
    if out_activation not in _OUT_ACTIVATIONS:
        raise ValueError(f"unknown output activation {out_activation!r:.40}")

    sizes = _layer_sizes(n_features, params.get("hidden_layer_sizes", (100,)), n_outputs)
    if decoded["n_layers_"] != len(sizes):
        raise ValueError(f"n_layers_ is {decoded['n_layers_']} "
                         f"but the architecture has {len(sizes)} layers")
    expected = {}
    for i in range(len(sizes) - 1):
        expected[f"coefs_.{i}"] = (sizes[i], sizes[i + 1])
        expected[f"intercepts_.{i}"] = (sizes[i + 1],)
    for key, shape in expected.items():
        if key not in table:
            raise ValueError(f"array {key} is missing")
        dtype, got, *_ = table[key]
        if got != shape:
            raise ValueError(
                f"array {key} has shape {got}, the architecture {sizes} implies {shape}"
            )
        if dtype.str != weight_dtype:
            raise ValueError(f"array {key} has dtype {dtype}, header says {dtype_name}")
    for key, (dtype, shape, *_) in table.items():
        if key in expected:
            continue
        if key not in _LIST_ATTRS or decoded.get(key) != "array":
            raise ValueError(f"unexpected array {key!r:.60}")
        if len(shape) != 1 or dtype.str != "<f8":
            raise ValueError(f"array {key} must be a 1-D float64 array")

    names = header.get("feature_names_in")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("feature_names_in must be a list of strings")
        if len(names) != n_features:
            raise ValueError(f"{len(names)} feature names for {n_features} features")

    classes = label_type = None
    if _is_classifier_name(name):
        label_type = header.get("label_type")
        if label_type not in _LABEL_TYPES:
            raise ValueError(f"label_type {label_type!r:.40} is not one of {sorted(_LABEL_TYPES)}")
        if label_type == "binary":
            n_expected, activation = (1, 2), "logistic"
            ok = n_outputs == 1
        elif label_type == "multiclass":
            n_expected, activation = (n_outputs, n_outputs), "softmax"
            ok = n_outputs >= 3
        else:
            n_expected, activation = (n_outputs, n_outputs), "logistic"
            ok = n_outputs >= 2
        if not ok or out_activation != activation:
            raise ValueError(
                f"a {label_type} classifier does not match "
                f"n_outputs_={n_outputs} and out_activation_={out_activation!r}"
            )
        budget = _LABEL_BYTES_PER_JSON_BYTE * json_len + _LABEL_BYTES_FREE
        classes = _decode_labels(header.get("classes"), "classes", n_expected, budget)
        if label_type == "multilabel-indicator" and not (
            classes.dtype.kind in "iu" and np.array_equal(classes, np.arange(len(classes)))
        ):
            raise ValueError(
                "multilabel-indicator classes must be the integers 0 .. n_outputs_ - 1"
            )
    elif out_activation not in ("identity", "exp"):
        raise ValueError(f"a regressor's output activation cannot be {out_activation!r}")
    return {
        "module": module,
        "class": name,
        "params": params,
        "unsaved_params": unsaved,
        "attributes": decoded,
        "feature_names_in": names,
        "classes": classes,
        "label_type": label_type,
        "sizes": sizes,
    }


def _check_state(est, spec):
    """What fit, predict and partial_fit would trip over, checked now."""
    from sklearn.utils.class_weight import compute_sample_weight

    from ._activations import REGRESSION_LOSSES, hidden_activation_names

    params = est.get_params(deep=False)
    attrs = spec["attributes"]
    n_hidden = len(spec["sizes"]) - 2
    blasprop_class = spec["module"] == "blasprop"
    if blasprop_class:
        try:
            hidden_activation_names(params["activation"], n_hidden)
        except TypeError:
            raise ValueError(
                f"activation {params['activation']!r:.80} is not a name or a list of names"
            ) from None
        try:
            drop = est._dropout_rates(n_hidden)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"dropout {params['dropout']!r:.80} is invalid: {exc}") from None
        if params["solver"] == "lbfgs" and any(drop):
            raise ValueError("dropout is not available with solver='lbfgs'")
        if params["callbacks"]:
            raise ValueError("callbacks cannot come from a model file (it never holds callables)")
    elif not isinstance(params["activation"], str):
        raise ValueError("activation must be a string for scikit-learn's estimators")
    if spec["classes"] is None:
        loss = params.get("loss", "squared_error")
        if blasprop_class:
            wanted = REGRESSION_LOSSES[loss][1]
        else:
            wanted = "exp" if loss == "poisson" else "identity"
        if attrs["out_activation_"] != wanted:
            raise ValueError(f"loss={loss!r} needs out_activation_={wanted!r}, "
                             f"the file has {attrs['out_activation_']!r}")
    else:
        class_weight = params.get("class_weight")
        if isinstance(class_weight, dict):
            classes = spec["classes"]
            if spec["label_type"] == "multilabel-indicator":
                y = np.eye(len(classes), dtype=int)
            else:
                y = classes
            try:
                compute_sample_weight(class_weight, y)
            except (ValueError, TypeError, IndexError) as exc:
                raise ValueError(f"class_weight does not fit the classes: {exc}") from None
    if params["solver"] in _STOCHASTIC_SOLVERS and not params["early_stopping"]:
        # partial_fit (and fit with warm_start) continue these
        if attrs.get("loss_curve_") != "array" or attrs.get("t_") is None:
            raise ValueError(f"solver={params['solver']!r} needs loss_curve_ and t_")
        if attrs.get("best_loss_") is None or attrs.get("_no_improvement_count") is None:
            raise ValueError(
                f"solver={params['solver']!r} needs best_loss_ and _no_improvement_count"
            )


def _make_estimator(spec):
    """The estimator with its parameters and fitted scalars, not its weights."""
    from sklearn.preprocessing import LabelBinarizer

    cls = _resolve_class(spec["module"], spec["class"])
    accepted = cls().get_params(deep=False)
    params = {}
    for key, value in spec["params"].items():
        if key in spec["unsaved_params"]:
            continue  # stored as null: the constructor's default applies
        if key not in accepted:
            raise ValueError(
                f"parameter {key!r:.60} is unknown to this version of {cls.__name__} "
                "(model saved by a different blasprop version?)"
            )
        params[key] = value
    est = cls(**params)
    validate = getattr(est, "_validate_params", None)
    if validate is not None:
        try:
            validate()
        except (ValueError, TypeError) as exc:
            raise ValueError(f"invalid parameters: {exc}") from None
    try:
        _check_state(est, spec)
    except (TypeError, KeyError) as exc:
        raise ValueError(f"invalid parameters: {exc}") from None

    for key, value in spec["attributes"].items():
        if key not in _LIST_ATTRS:
            setattr(est, key, value)
    if spec["feature_names_in"] is not None:
        est.feature_names_in_ = np.array(spec["feature_names_in"], dtype=object)
    if spec["classes"] is not None:
        classes = spec["classes"]
        lb = LabelBinarizer()
        if spec["label_type"] == "multilabel-indicator":
            k = len(classes)
            lb.fit(np.vstack([np.zeros(k, dtype=int), np.ones(k, dtype=int)]))
        else:
            lb.fit(classes)
        if lb.y_type_ != spec["label_type"] or not np.array_equal(lb.classes_, classes):
            raise ValueError("class labels do not match the declared label type")
        lb.classes_ = classes  # keep the exact dtype (e.g. object vs. str)
        est._label_binarizer = lb
        est.classes_ = classes
    return est


def _build(spec, arrays):
    est = _make_estimator(spec)
    n = len(spec["sizes"]) - 1
    coefs = [arrays[f"coefs_.{i}"] for i in range(n)]
    intercepts = [arrays[f"intercepts_.{i}"] for i in range(n)]
    if not all(np.isfinite(w).all() for w in coefs + intercepts):
        raise ValueError("weights contain NaN or infinity")
    est.coefs_, est.intercepts_ = coefs, intercepts
    for key in _LIST_ATTRS:
        if key in spec["attributes"]:
            value = spec["attributes"][key]
            setattr(est, key, None if value is None else [float(v) for v in arrays[key]])
    return est


def load_with_info(path):
    """Load a model file; return ``(estimator, header)``.

    ``header`` is the file's JSON header as a dict (see docs/model-files.md);
    ``header["metadata"]`` holds what was passed to :func:`save`.
    """
    header, spec, arrays = _read(path)
    try:
        est = _build(spec, arrays)
    except _LOAD_ERRORS as exc:
        raise _bad(path, str(exc)) from None
    return est, header


def load(path):
    """Load a model saved with :func:`blasprop.save`.

    Raises ``ValueError`` for anything that is not an intact blasprop model
    file (wrong magic, truncated, corrupted, inconsistent or hostile content,
    or not a regular file, such as a FIFO or a device), after reading no
    more than the file holds and without unpickling or executing anything.
    A directory raises ``IsADirectoryError`` and a missing file
    ``FileNotFoundError``, as ``open`` does.
    """
    return load_with_info(path)[0]


def load_metadata(path):
    """Return the ``metadata`` that was passed to :func:`save` for a model file.

    The file is checked as :func:`load` checks it, except that the weights
    are not read (so their checksums are not verified); a malformed file
    raises ``ValueError``.  Returns ``None`` when no metadata was saved.
    """
    header, spec, _ = _read(path, with_arrays=False)
    try:
        _make_estimator(spec)
    except _LOAD_ERRORS as exc:
        raise _bad(path, str(exc)) from None
    return header.get("metadata")


def read_info(path):
    """Return a model file's JSON header without building the estimator."""
    with _open_model(path) as f:
        return _read_header(f, path)[0]
