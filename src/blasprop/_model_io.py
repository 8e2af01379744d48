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

import json
import math
import os
import secrets
import struct
import zlib
from numbers import Integral, Real
from pathlib import Path

import numpy as np

__all__ = ["save", "load", "load_with_info", "read_info", "FORMAT_VERSION", "MAGIC"]

MAGIC = b"\x89BPM\r\n\x1a\n"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIIQQ")  # magic, version, json crc32, json length, data length
_ALIGN = 64
_MAX_JSON_BYTES = 64 * 1024 * 1024  # labels and feature names of wide data sets fit easily
_MAX_ARRAYS = 10_000
_MAX_LAYERS = 4_096
_MAX_JSON_DEPTH = 64
_WEIGHT_DTYPES = {"<f4": np.float32, "<f8": np.float64}

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
_OUT_ACTIVATIONS = {"identity", "logistic", "softmax", "exp"}
_LABEL_TYPES = {"binary", "multiclass", "multilabel-indicator"}


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
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}")
    return v


def _dec_str(v, what):
    if not isinstance(v, str):
        raise ValueError(f"{what} must be a string")
    return v


def _json_scalar(value):
    """Return (ok, json_value) for a scalar parameter value."""
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

    Scalars are stored as themselves, lists and tuples of scalars as JSON lists
    (type "tuple" marks tuples), dicts with scalar keys and values (e.g.
    ``class_weight``) as a list of [key, value] pairs (type "dict").
    """
    if isinstance(value, (list, tuple)):
        items = [_json_scalar(v) for v in value]
        if all(ok for ok, _ in items):
            return True, [v for _, v in items], ("tuple" if isinstance(value, tuple) else None)
        return False, None, None
    if isinstance(value, dict):
        pairs = [(_json_scalar(k), _json_scalar(v)) for k, v in value.items()]
        if all(k[0] and v[0] for k, v in pairs):
            return True, [[k[1], v[1]] for k, v in pairs], "dict"
        return False, None, None
    ok, enc = _json_scalar(value)
    return ok, enc, None


def _decode_param(name, value, ptype):
    if ptype is None:
        return value
    if ptype == "tuple":
        if not isinstance(value, list):
            raise ValueError(f"parameter {name!r} must be a list")
        return tuple(value)
    if ptype == "dict":
        if not isinstance(value, list) or not all(
            isinstance(p, list) and len(p) == 2 and not isinstance(p[0], (list, dict)) for p in value
        ):
            raise ValueError(f"parameter {name!r} must be a list of [key, value] pairs")
        return {k: v for k, v in value}
    raise ValueError(f"parameter type {ptype!r} of {name!r} is unknown")


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
        return {"dtype": arr.dtype.newbyteorder("<").str if arr.dtype.itemsize > 1 else arr.dtype.str,
                "values": [int(v) for v in arr]}
    if kind == "f" and arr.dtype.itemsize in (2, 4, 8):
        return {"dtype": arr.dtype.newbyteorder("<").str, "values": [_enc_float(v) for v in arr]}
    if kind == "U":
        return {"dtype": arr.dtype.newbyteorder("<").str, "values": [str(v) for v in arr]}
    if kind == "S":
        return {"dtype": arr.dtype.str, "values": [bytes(v).decode("latin-1") for v in arr]}
    if kind == "O":
        for element, test, conv in (
            ("str", lambda v: isinstance(v, str), str),
            ("bool", lambda v: isinstance(v, (bool, np.bool_)), bool),
            ("int", lambda v: isinstance(v, (Integral,)) and not isinstance(v, (bool, np.bool_)), int),
            ("float", lambda v: isinstance(v, (float, np.floating)), _enc_float),
            ("bytes", lambda v: isinstance(v, bytes), lambda v: v.decode("latin-1")),
        ):
            if all(test(v) for v in arr):
                return {"dtype": "|O", "element": element, "values": [conv(v) for v in arr]}
    raise ValueError(
        f"cannot store {what} of dtype {arr.dtype} (supported: str, bytes, int, float, bool)"
    )


def _decode_labels(spec, what):
    if not isinstance(spec, dict):
        raise ValueError(f"{what} must be an object")
    dtype_str = _dec_str(spec.get("dtype"), f"{what}.dtype")
    values = spec.get("values")
    if not isinstance(values, list):
        raise ValueError(f"{what}.values must be a list")
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
            raise ValueError(f"{what}.element {element!r} is not supported")
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
        check(lambda v: isinstance(v, str) and len(v) * width <= dtype.itemsize, f"a string fitting {dtype}")
        longest = max((len(v) for v in values), default=0)
        if dtype.itemsize > width * (longest + 1024):  # never allocate far more than the JSON holds
            raise ValueError(f"{what}.dtype {dtype_str!r} is far wider than its values")
        if kind == "S":
            values = [v.encode("latin-1") for v in values]
    else:
        raise ValueError(f"{what}.dtype {dtype_str!r} is not allowed")
    return np.array(values, dtype=dtype).reshape(len(values))


# --------------------------------------------------------------------------
# save


def _layer_sizes(n_features, hidden, n_outputs):
    if isinstance(hidden, Integral) and not isinstance(hidden, bool):
        hidden = [hidden]
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
        to a temporary name first and renamed, so a crash never leaves a
        half-written model behind.
    metadata : dict, optional
        Extra JSON-serialisable information stored under ``"metadata"``;
        returned by :func:`load_with_info`.

    Notes
    -----
    Parameters that cannot be represented in JSON (a ``RandomState``
    instance, callables in ``callbacks``, non-finite floats) are stored as
    ``null`` and listed under ``"unsaved_params"``; a loaded model gets
    ``None`` for them.  Optimizer state (Adam moments, SGD velocities) is not
    stored: ``partial_fit`` after loading starts a fresh optimizer.
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
    dtype = np.asarray(coefs[0]).dtype
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"weights must be float32 or float64, got {dtype}")
    little = dtype.newbyteorder("<")

    arrays = []
    for i, (w, b) in enumerate(zip(coefs, intercepts)):
        w, b = np.asarray(w), np.asarray(b)
        if w.dtype != dtype or b.dtype != dtype:
            raise ValueError("all coefs_ and intercepts_ must share one dtype")
        arrays.append((f"coefs_.{i}", np.ascontiguousarray(w, dtype=little)))
        arrays.append((f"intercepts_.{i}", np.ascontiguousarray(b, dtype=little)))
    for attr in _LIST_ATTRS:
        value = getattr(estimator, attr, None)
        if value is not None:
            arrays.append((attr, np.ascontiguousarray(np.asarray(value, dtype="<f8").reshape(-1))))

    params, unsaved, param_types = {}, [], {}
    for key, value in estimator.get_params(deep=False).items():
        ok, enc, ptype = _encode_param(value)
        params[key] = enc
        if not ok:
            unsaved.append(key)
        elif ptype is not None:
            param_types[key] = ptype

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
    if len(json_bytes) > _MAX_JSON_BYTES:
        raise ValueError("model header is larger than the 64 MiB limit")

    path = Path(os.fspath(path))
    # a fresh name next to the target (so the rename is atomic); "x" mode
    # never overwrites and, unlike mkstemp, respects the umask
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    f = open(tmp, "xb")
    try:
        with f:
            f.write(_HEADER.pack(MAGIC, FORMAT_VERSION, zlib.crc32(json_bytes), len(json_bytes), data_len))
            f.write(json_bytes)
            f.write(b"\0" * (_align(_HEADER.size + len(json_bytes)) - _HEADER.size - len(json_bytes)))
            pos = 0
            for _, arr in arrays:
                f.write(b"\0" * (_align(pos) - pos))
                pos = _align(pos)
                f.write(memoryview(arr).cast("B"))
                pos += arr.nbytes
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --------------------------------------------------------------------------
# load


def _bad(path, msg):
    return ValueError(f"{os.fspath(path)}: not a valid blasprop model file: {msg}")


def _no_constants(name):
    raise ValueError(f"JSON constant {name} is not allowed")


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate JSON key {key!r}")
        out[key] = value
    return out


def _check_depth(obj, depth=0):
    if depth > _MAX_JSON_DEPTH:
        raise ValueError("JSON header is nested too deeply")
    if isinstance(obj, dict):
        for v in obj.values():
            _check_depth(v, depth + 1)
    elif isinstance(obj, list):
        for v in obj:
            _check_depth(v, depth + 1)


def _read_exact(f, n):
    data = f.read(n)
    if len(data) != n:
        raise ValueError("file ended early")
    return data


def _read_header(f, path):
    """Validate the fixed header and JSON; return (header dict, data offset, data length)."""
    size = os.fstat(f.fileno()).st_size
    head = f.read(_HEADER.size)
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
        raise _bad(path, f"declared JSON header length {json_len} exceeds the limit")
    if _HEADER.size + json_len > size:
        raise _bad(path, f"declared JSON header length {json_len} does not fit in the file ({size} bytes); truncated?")
    data_offset = _align(_HEADER.size + json_len)
    if data_offset + data_len != size:
        if data_offset + data_len > size:
            raise _bad(path, f"file is truncated: expected {data_offset + data_len} bytes, found {size}")
        raise _bad(path, f"file has {size - data_offset - data_len} unexpected trailing bytes")
    raw = _read_exact(f, json_len)
    if zlib.crc32(raw) != json_crc:
        raise _bad(path, "JSON header checksum mismatch (file is corrupted)")
    if any(_read_exact(f, data_offset - _HEADER.size - json_len)):
        raise _bad(path, "non-zero padding after the JSON header")
    try:
        header = json.loads(
            raw.decode("utf-8"), parse_constant=_no_constants, object_pairs_hook=_no_duplicates
        )
        _check_depth(header)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad(path, f"bad JSON header: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != "blasprop-model":
        raise _bad(path, "JSON header does not describe a blasprop model")
    if header.get("format_version") != version:
        raise _bad(path, "format version in the JSON header disagrees with the file header")
    return header, data_offset, data_len


def _array_table(header, data_len):
    """Validate the "arrays" table; return {name: (dtype, shape, offset, nbytes, crc)}."""
    table = header.get("arrays")
    if not isinstance(table, list) or len(table) > _MAX_ARRAYS:
        raise ValueError('"arrays" must be a list of at most %d entries' % _MAX_ARRAYS)
    out = {}
    expected_offset = 0
    for i, entry in enumerate(table):
        what = f"arrays[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"name", "dtype", "shape", "offset", "crc32"}:
            raise ValueError(f"{what} must have exactly the keys name, dtype, shape, offset, crc32")
        name = _dec_str(entry["name"], f"{what}.name")
        if name in out:
            raise ValueError(f"array {name!r} is listed twice")
        if entry["dtype"] not in _WEIGHT_DTYPES:
            raise ValueError(f"array {name!r} has dtype {entry['dtype']!r}; only <f4 and <f8 are allowed")
        dtype = np.dtype(entry["dtype"])
        shape = entry["shape"]
        if not isinstance(shape, list) or len(shape) > 2:
            raise ValueError(f"array {name!r}: shape must be a list of at most 2 integers")
        shape = tuple(_dec_int(s, f"array {name!r} shape") for s in shape)
        nbytes = math.prod(shape) * dtype.itemsize
        offset = _dec_int(entry["offset"], f"array {name!r} offset")
        expected_offset = _align(expected_offset)
        if offset != expected_offset:
            raise ValueError(f"array {name!r} starts at {offset}, expected {expected_offset}")
        if offset + nbytes > data_len:
            raise ValueError(
                f"array {name!r} declares shape {shape} ({nbytes} bytes), "
                f"which does not fit in the file"
            )
        crc = _dec_int(entry["crc32"], f"array {name!r} crc32")
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


def _read(path):
    with open(path, "rb") as f:
        header, data_offset, data_len = _read_header(f, path)
        try:
            table = _array_table(header, data_len)
            spec = _interpret(header, table)
            arrays = _read_arrays(f, data_offset, table)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
            raise _bad(path, str(exc)) from None
    return header, spec, arrays


def _interpret(header, table):
    """Check the header against the array table before any array is read."""
    est = header.get("estimator")
    if not isinstance(est, dict):
        raise ValueError('"estimator" must be an object')
    module = _dec_str(est.get("module"), "estimator.module")
    name = _dec_str(est.get("class"), "estimator.class")
    if (module, name) not in _CLASSES:
        raise ValueError(f"estimator {module}.{name} is not one blasprop loads")
    params = header.get("params")
    if not isinstance(params, dict):
        raise ValueError('"params" must be an object')
    param_types = header.get("param_types", {})
    if not isinstance(param_types, dict):
        raise ValueError('"param_types" must be an object')
    params = {k: _decode_param(k, v, param_types.get(k)) for k, v in params.items()}
    unsaved = header.get("unsaved_params", [])
    if not isinstance(unsaved, list) or not all(isinstance(u, str) for u in unsaved):
        raise ValueError('"unsaved_params" must be a list of names')
    dtype_name = header.get("dtype")
    if dtype_name not in ("float32", "float64"):
        raise ValueError(f"dtype {dtype_name!r} is not float32 or float64")
    weight_dtype = "<f4" if dtype_name == "float32" else "<f8"

    attrs = header.get("attributes")
    if not isinstance(attrs, dict):
        raise ValueError('"attributes" must be an object')
    known = dict(_SCALAR_ATTRS)
    known.update((key, "array") for key in _LIST_ATTRS)
    decoded = {}
    for key, value in attrs.items():
        if key not in known:
            raise ValueError(f"unknown fitted attribute {key!r}")
        kind = known[key]
        if value is None:
            decoded[key] = None
        elif kind == "int":
            decoded[key] = _dec_int(value, key)
        elif kind == "float":
            decoded[key] = _dec_float(value, key)
        elif kind == "array":
            if value != "array" or key not in table:
                raise ValueError(f"fitted attribute {key} must be null or \"array\" with a matching array")
            decoded[key] = value
        else:
            decoded[key] = _dec_str(value, key)
    for key in ("n_features_in_", "n_outputs_", "n_layers_", "out_activation_"):
        if decoded.get(key) is None:
            raise ValueError(f"fitted attribute {key} is missing")
    n_features = _dec_int(decoded["n_features_in_"], "n_features_in_", 1)
    n_outputs = _dec_int(decoded["n_outputs_"], "n_outputs_", 1)
    if decoded["out_activation_"] not in _OUT_ACTIVATIONS:
        raise ValueError(f"unknown output activation {decoded['out_activation_']!r}")

    sizes = _layer_sizes(n_features, params.get("hidden_layer_sizes", (100,)), n_outputs)
    if decoded["n_layers_"] != len(sizes):
        raise ValueError(f"n_layers_ is {decoded['n_layers_']} but the architecture has {len(sizes)} layers")
    expected = {}
    for i in range(len(sizes) - 1):
        expected[f"coefs_.{i}"] = (sizes[i], sizes[i + 1])
        expected[f"intercepts_.{i}"] = (sizes[i + 1],)
    for key, shape in expected.items():
        if key not in table:
            raise ValueError(f"array {key} is missing")
        dtype, got, *_ = table[key]
        if got != shape:
            raise ValueError(f"array {key} has shape {got}, the architecture {sizes} implies {shape}")
        if dtype.str != weight_dtype:
            raise ValueError(f"array {key} has dtype {dtype}, header says {dtype_name}")
    for key, (dtype, shape, *_) in table.items():
        if key in expected:
            continue
        if key not in _LIST_ATTRS or decoded.get(key) != "array":
            raise ValueError(f"unexpected array {key!r}")
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
        classes = _decode_labels(header.get("classes"), "classes")
        label_type = header.get("label_type")
        if label_type not in _LABEL_TYPES:
            raise ValueError(f"label_type {label_type!r} is not one of {sorted(_LABEL_TYPES)}")
        n_classes = len(classes)
        if label_type == "binary":
            ok = n_outputs == 1 and 1 <= n_classes <= 2 and decoded["out_activation_"] == "logistic"
        elif label_type == "multiclass":
            ok = n_outputs == n_classes >= 3 and decoded["out_activation_"] == "softmax"
        else:
            ok = (
                n_outputs == n_classes >= 2
                and decoded["out_activation_"] == "logistic"
                and classes.dtype.kind in "iu"
                and np.array_equal(classes, np.arange(n_classes))
            )
        if not ok:
            raise ValueError(
                f"{label_type} classifier with {n_classes} classes does not match "
                f"n_outputs_={n_outputs} and out_activation_={decoded['out_activation_']!r}"
            )
    return {
        "module": module,
        "class": name,
        "params": params,
        "unsaved_params": unsaved,
        "attributes": decoded,
        "feature_names_in": names,
        "classes": classes,
        "label_type": label_type,
        "n_weight_layers": len(sizes) - 1,
    }


def _build(spec, arrays):
    from sklearn.preprocessing import LabelBinarizer

    cls = _resolve_class(spec["module"], spec["class"])
    accepted = cls().get_params(deep=False)
    params = {}
    for key, value in spec["params"].items():
        if key in spec["unsaved_params"]:
            continue  # stored as null: the constructor's default applies
        if key not in accepted:
            raise ValueError(
                f"parameter {key!r} is unknown to this version of {cls.__name__} "
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

    n = spec["n_weight_layers"]
    est.coefs_ = [arrays[f"coefs_.{i}"] for i in range(n)]
    est.intercepts_ = [arrays[f"intercepts_.{i}"] for i in range(n)]
    if not all(np.isfinite(w).all() for w in est.coefs_ + est.intercepts_):
        raise ValueError("weights contain NaN or infinity")
    for key, value in spec["attributes"].items():
        if key in _LIST_ATTRS and value is not None:
            value = [float(v) for v in arrays[key]]
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


def load_with_info(path):
    """Load a model file; return ``(estimator, header)``.

    ``header`` is the file's JSON header as a dict (see docs/model-files.md);
    ``header["metadata"]`` holds what was passed to :func:`save`.
    """
    header, spec, arrays = _read(path)
    try:
        est = _build(spec, arrays)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise _bad(path, str(exc)) from None
    return est, header


def load(path):
    """Load a model saved with :func:`blasprop.save`.

    Raises ``ValueError`` for anything that is not an intact blasprop model
    file (wrong magic, truncated, corrupted, inconsistent or hostile content),
    after reading no more than the file holds and without unpickling or
    executing anything.
    """
    return load_with_info(path)[0]


def read_info(path):
    """Return a model file's JSON header without building the estimator."""
    with open(path, "rb") as f:
        return _read_header(f, path)[0]
