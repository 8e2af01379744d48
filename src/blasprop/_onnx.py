"""Export fitted multilayer perceptrons to ONNX.

The graph follows the conventions of skl2onnx's converters for
scikit-learn's MLPs (without ZipMap):

* input ``"X"``: float32 or float64 (the model's dtype), shape (N, n_features);
* regressor: output ``"variable"`` of shape (N, n_outputs) -- also for a
  single output, like skl2onnx (``predict`` returns shape (N,) then);
* classifier: outputs ``"label"`` (shape (N,); (N, n_outputs) int64 0/1 for
  multilabel) and ``"probabilities"`` (N, n_classes), equal to
  ``predict`` and ``predict_proba``.

Only operators that onnxruntime implements for both float32 and float64 are
used for float64 models; for float32 the dedicated operators (LeakyRelu,
Elu, Softplus) are used directly.  Erf has no float64 kernel in
onnxruntime, so for float64 models the erf inside exact GELU is evaluated
in float32 (absolute error ~1e-7).
"""

from __future__ import annotations

import os

import numpy as np

from ._activations import HIDDEN_ACTIVATIONS, hidden_activation_names
from ._version import __version__

__all__ = ["to_onnx", "OPSET"]

OPSET = 17
_IR_VERSION = 8  # the IR version that goes with opset 17; readable by onnxruntime >= 1.13


def _import_onnx():
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:  # pragma: no cover - exercised only without onnx
        raise ImportError(
            "blasprop.to_onnx needs the 'onnx' package: pip install onnx "
            "(and onnxruntime to run the exported model), or pip install 'blasprop[onnx]'"
        ) from exc
    return onnx, TensorProto, helper, numpy_helper


class _Graph:
    """Tiny helper collecting nodes and constants with unique names."""

    def __init__(self, helper, numpy_helper, dtype):
        self.helper = helper
        self.numpy_helper = numpy_helper
        self.dtype = dtype
        self.nodes = []
        self.initializers = []
        self._count = 0

    def name(self, prefix):
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, value, prefix="const", dtype=None):
        arr = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        name = self.name(prefix)
        if arr.dtype.kind in "OU":
            tensor = self.helper.make_tensor(
                name, 8, list(arr.shape),
                [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in arr.ravel()]
            )  # 8 == TensorProto.STRING
        else:
            tensor = self.numpy_helper.from_array(np.ascontiguousarray(arr), name)
        self.initializers.append(tensor)
        return name

    def op(self, op_type, inputs, prefix=None, output=None, **attrs):
        output = output or self.name(prefix or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [output], **attrs))
        return output


def _hidden(g, act, x):
    """Append the nodes of hidden activation ``act`` applied to ``x``."""
    f32 = g.dtype == np.float32
    if act == "identity":
        return x
    if act == "relu":
        return g.op("Relu", [x])
    if act == "logistic":
        return g.op("Sigmoid", [x])
    if act == "tanh":
        return g.op("Tanh", [x])
    if act == "leaky_relu":
        if f32:
            return g.op("LeakyRelu", [x], alpha=0.01)
        # max(x, 0.01 x) == leaky_relu(x) for a slope below 1; double-exact slope
        return g.op("Max", [x, g.op("Mul", [x, g.const(0.01)])])
    if act == "elu":
        if f32:
            return g.op("Elu", [x], alpha=1.0)
        # relu(x) + exp(min(x, 0)) - 1
        neg = g.op("Sub", [g.op("Exp", [g.op("Min", [x, g.const(0.0)])]), g.const(1.0)])
        return g.op("Add", [g.op("Relu", [x]), neg])
    if act == "gelu":
        # 0.5 * x * (1 + erf(x / sqrt(2)))
        scaled = g.op("Mul", [x, g.const(1.0 / np.sqrt(2.0))])
        if f32:
            erf = g.op("Erf", [scaled])
        else:  # onnxruntime has no float64 Erf kernel
            erf32 = g.op("Erf", [g.op("Cast", [scaled], to=1)])  # 1 == FLOAT
            erf = g.op("Cast", [erf32], to=11)  # 11 == DOUBLE
        half_x = g.op("Mul", [x, g.const(0.5)])
        return g.op("Mul", [half_x, g.op("Add", [erf, g.const(1.0)])])
    if act == "silu":
        return g.op("Mul", [x, g.op("Sigmoid", [x])])
    if act == "softplus":
        if f32:
            return g.op("Softplus", [x])
        # relu(x) + log(1 + exp(-|x|)), stable for large |x|
        exp_neg_abs = g.op("Exp", [g.op("Neg", [g.op("Abs", [x])])])
        tail = g.op("Log", [g.op("Add", [exp_neg_abs, g.const(1.0)])])
        return g.op("Add", [g.op("Relu", [x]), tail])
    raise ValueError(
        f"cannot export hidden activation {act!r}; known: {', '.join(HIDDEN_ACTIVATIONS)}"
    )


def _label_dtype(classes):
    """ONNX-friendly dtype for the label constant (and the "label" output)."""
    kind = classes.dtype.kind
    if kind in "iu":
        return np.int64
    if kind == "b":
        return np.bool_
    if kind == "f":
        return classes.dtype.newbyteorder("=")
    if kind in "US" or (kind == "O" and all(isinstance(c, (str, bytes)) for c in classes)):
        return object
    if kind == "O" and all(isinstance(c, (int, np.integer)) and not isinstance(c, bool)
                           for c in classes):
        return np.int64
    raise ValueError(f"cannot export class labels of dtype {classes.dtype}")


def to_onnx(estimator, path=None):
    """Convert a fitted ``MLPClassifier`` or ``MLPRegressor`` to ONNX.

    Parameters
    ----------
    estimator : fitted blasprop (or scikit-learn) MLPClassifier / MLPRegressor
    path : str or os.PathLike, optional
        Where to write the model (``.onnx``).

    Returns
    -------
    onnx.ModelProto
        Input ``"X"`` (N, n_features) of the model's float dtype.  A regressor
        has output ``"variable"`` (N, n_outputs); a classifier has
        ``"label"`` and ``"probabilities"`` (see module docstring).
    """
    onnx, TensorProto, helper, numpy_helper = _import_onnx()
    from sklearn.base import is_classifier

    if not hasattr(estimator, "coefs_"):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError("to_onnx needs a fitted estimator; call fit first")
    coefs = [np.asarray(w) for w in estimator.coefs_]
    intercepts = [np.asarray(b) for b in estimator.intercepts_]
    dtype = coefs[0].dtype
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"weights must be float32 or float64, got {dtype}")
    dtype = np.dtype(dtype).newbyteorder("=").type
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    n_features = coefs[0].shape[0]
    n_outputs = coefs[-1].shape[1]
    g = _Graph(helper, numpy_helper, dtype)

    x = "X"
    acts = hidden_activation_names(estimator.activation, len(coefs) - 1)
    for i, (w, b) in enumerate(zip(coefs, intercepts)):
        x = g.op("MatMul", [x, g.const(w, f"coef_{i}")])
        x = g.op("Add", [x, g.const(b, f"intercept_{i}")])
        if i < len(coefs) - 1:
            x = _hidden(g, acts[i], x)

    out_act = estimator.out_activation_
    outputs = []
    if not is_classifier(estimator):
        if out_act == "identity":
            g.op("Identity", [x], output="variable")
        elif out_act == "exp":
            g.op("Exp", [x], output="variable")
        elif out_act == "logistic":
            g.op("Sigmoid", [x], output="variable")
        else:
            raise ValueError(f"cannot export regressor output activation {out_act!r}")
        outputs.append(helper.make_tensor_value_info("variable", elem, [None, n_outputs]))
    else:
        classes = np.asarray(estimator.classes_)
        y_type = getattr(getattr(estimator, "_label_binarizer", None), "y_type_", None)
        if y_type == "multilabel-indicator":
            if out_act != "logistic":
                raise ValueError(f"unexpected output activation {out_act!r} for multilabel")
            proba = g.op("Sigmoid", [x], output="probabilities")
            above = g.op("Greater", [proba, g.const(0.5)])
            g.op("Cast", [above], output="label", to=TensorProto.INT64)
            label_info = helper.make_tensor_value_info("label", TensorProto.INT64,
                                                       [None, n_outputs])
            n_proba = n_outputs
        else:
            label_dtype = _label_dtype(classes)
            label_const = g.const(classes.astype(label_dtype)
                                  if label_dtype is not object else classes,
                                  "classes", dtype=label_dtype)
            if out_act == "logistic" and n_outputs == 1:  # binary
                p = g.op("Sigmoid", [x])
                one_minus = g.op("Sub", [g.const(1.0), p])
                proba = g.op("Concat", [one_minus, p], output="probabilities", axis=1)
                # predict: class 1 when p > 0.5 (LabelBinarizer's threshold), as in sklearn
                above = g.op("Greater", [p, g.const(0.5)])
                idx = g.op("Cast", [above], to=TensorProto.INT64)
                idx = g.op("Reshape", [idx, g.const([-1], "flat", dtype=np.int64)])
                n_proba = 2
            elif out_act == "softmax":
                proba = g.op("Softmax", [x], output="probabilities", axis=1)
                idx = g.op("ArgMax", [proba], axis=1, keepdims=0)
                n_proba = n_outputs
            else:
                raise ValueError(f"unexpected output activation {out_act!r} for a classifier")
            if len(classes) == 1:  # degenerate one-class model: sklearn predicts that class
                idx = g.op("Mul", [idx, g.const(0, "zero", dtype=np.int64)])
            g.op("Gather", [label_const, idx], output="label", axis=0)
            onnx_label = {
                np.int64: TensorProto.INT64,
                np.bool_: TensorProto.BOOL,
                object: TensorProto.STRING,
            }.get(label_dtype)
            if onnx_label is None:
                onnx_label = helper.np_dtype_to_tensor_dtype(np.dtype(label_dtype))
            label_info = helper.make_tensor_value_info("label", onnx_label, [None])
        outputs.append(label_info)
        outputs.append(helper.make_tensor_value_info("probabilities", elem, [None, n_proba]))

    graph = helper.make_graph(
        g.nodes,
        type(estimator).__name__,
        [helper.make_tensor_value_info("X", elem, [None, n_features])],
        outputs,
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="blasprop",
        producer_version=__version__,
        doc_string=f"{type(estimator).__name__} exported by blasprop.to_onnx",
    )
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save_model(model, os.fspath(path))
    return model

