"""blasprop.to_onnx, checked by running the exported graphs in onnxruntime."""

import sys

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import blasprop
from blasprop import MLPClassifier, MLPRegressor

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ACTIVATIONS = [
    "identity", "logistic", "tanh", "relu", "leaky_relu", "elu", "gelu", "silu", "softplus",
]


def _X(n=120, n_features=5, seed=0, dtype=np.float64):
    # wide enough to reach the tails of every activation
    return (2.0 * np.random.default_rng(seed).normal(size=(n, n_features))).astype(dtype)


def _targets(task, X):
    s = X[:, 0] - 0.5 * X[:, 1]
    if task == "binary":
        return (s > 0).astype(int) * 5 + 3  # labels {3, 8}
    if task == "multiclass":
        return np.array(["ant", "bee", "cat", "dog"])[np.digitize(s, [-1.5, 0.0, 1.5])]
    if task == "multilabel":
        return np.column_stack([s > 0, X[:, 2] > 0, X[:, 3] + s > 0]).astype(int)
    if task == "regression":
        return 3.0 * np.sin(s) + X[:, 2]
    if task == "regression_multi":
        return np.column_stack([np.sin(s), X[:, 2] ** 2, X[:, 3]])
    if task == "poisson":
        return np.random.default_rng(1).poisson(np.exp(0.3 * s))
    raise AssertionError(task)


def _fit(task, activation, dtype, hidden=(8, 6)):
    X = _X(dtype=dtype)
    y = _targets(task, X)
    kw = dict(hidden_layer_sizes=hidden, activation=activation, max_iter=20,
              learning_rate_init=0.02, random_state=0)
    if task.startswith("regression"):
        est = MLPRegressor(**kw)
    elif task == "poisson":
        est = MLPRegressor(loss="poisson", **kw)
    else:
        est = MLPClassifier(**kw)
    return est.fit(X, y), X


def _run(model, X):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"X": X})))


def _tolerance(dtype, activation):
    if dtype == np.float32:
        return 1e-5
    # float64: onnxruntime has no float64 Erf, so GELU's erf runs in float32
    return 1e-6 if activation == "gelu" else 1e-10


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_classifier_matches_onnxruntime(task, activation, dtype):
    est, X = _fit(task, activation, dtype)
    X_test = _X(200, seed=5, dtype=dtype)
    out = _run(blasprop.to_onnx(est), X_test)
    assert set(out) == {"label", "probabilities"}
    proba = est.predict_proba(X_test)
    assert out["probabilities"].dtype == dtype
    assert out["probabilities"].shape == proba.shape
    np.testing.assert_allclose(out["probabilities"], proba, rtol=0,
                               atol=_tolerance(dtype, activation))
    expected = est.predict(X_test)
    if task == "multilabel":
        assert out["label"].dtype == np.int64
    np.testing.assert_array_equal(out["label"], expected)
    assert out["label"].shape == expected.shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("task", ["regression", "regression_multi", "poisson"])
def test_regressor_matches_onnxruntime(task, activation, dtype):
    est, X = _fit(task, activation, dtype)
    X_test = _X(200, seed=5, dtype=dtype)
    out = _run(blasprop.to_onnx(est), X_test)
    assert list(out) == ["variable"]
    pred = est.predict(X_test)
    # like skl2onnx: always (n, n_outputs), also for a single output
    assert out["variable"].shape == (len(X_test), est.n_outputs_)
    assert out["variable"].dtype == dtype
    scale = max(1.0, np.abs(pred).max())
    np.testing.assert_allclose(
        out["variable"], pred.reshape(len(X_test), -1), rtol=0,
        atol=_tolerance(dtype, activation) * scale,
    )


def test_activations_beyond_their_tails():
    """Large pre-activations: softplus/elu/silu/gelu/logistic must not overflow."""
    X = _X(dtype=np.float32)
    y = _targets("regression", X)
    for act in ACTIVATIONS:
        est = MLPRegressor(hidden_layer_sizes=(6,), activation=act, max_iter=3,
                           random_state=0).fit(X, y)
        X_big = 200.0 * _X(50, seed=9, dtype=np.float32)
        out = _run(blasprop.to_onnx(est), X_big)["variable"]
        pred = est.predict(X_big).reshape(-1, 1)
        assert np.isfinite(out).all(), act
        np.testing.assert_allclose(out, pred, rtol=1e-5, atol=1e-5 * np.abs(pred).max(),
                                   err_msg=act)


def test_per_layer_activation_list():
    X = _X(dtype=np.float32)
    y = _targets("multiclass", X)
    est = MLPClassifier(hidden_layer_sizes=(7, 6, 5), activation=["gelu", "tanh", "softplus"],
                        max_iter=10, random_state=0).fit(X, y)
    out = _run(blasprop.to_onnx(est), X)
    np.testing.assert_allclose(out["probabilities"], est.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(out["label"], est.predict(X))


@pytest.mark.parametrize(
    "labels",
    [
        np.array([False, True]),
        np.array([-1.0, 3.0]),
        np.array(["no", "yes"], dtype=object),
        np.array([-7, 12, 40]),
    ],
    ids=["bool", "float", "object-str", "int-3"],
)
def test_label_types(labels):
    X = _X(dtype=np.float32)
    y = labels[np.digitize(X[:, 0], np.linspace(-1, 1, len(labels) - 1))]
    est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=10, random_state=0).fit(X, y)
    out = _run(blasprop.to_onnx(est), X)
    expected = est.predict(X)
    if labels.dtype == object:
        assert out["label"].tolist() == expected.tolist()
    else:
        assert out["label"].dtype.kind == expected.dtype.kind
        np.testing.assert_array_equal(out["label"], expected)


def test_graph_interface_and_file(tmp_path):
    est, X = _fit("multiclass", "relu", np.float32)
    path = tmp_path / "model.onnx"
    model = blasprop.to_onnx(est, path)
    assert isinstance(model, onnx.ModelProto)
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["X"]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in model.graph.output] == ["label", "probabilities"]
    assert model.producer_name == "blasprop"
    ops = {n.op_type for n in model.graph.node}
    assert "ZipMap" not in ops and {"MatMul", "Add", "Relu", "Softmax", "ArgMax", "Gather"} <= ops
    from_file = onnx.load(str(path))
    assert from_file.SerializeToString() == model.SerializeToString()
    np.testing.assert_allclose(_run(from_file, X)["probabilities"], est.predict_proba(X), atol=1e-5)


def test_float64_model_has_float64_input():
    est, X = _fit("regression", "tanh", np.float64)
    model = blasprop.to_onnx(est)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE


def test_loaded_model_exports_identically(tmp_path):
    est, X = _fit("multiclass", "silu", np.float32)
    blasprop.save(est, tmp_path / "m.bpm")
    loaded = blasprop.load(tmp_path / "m.bpm")
    assert (blasprop.to_onnx(loaded).graph.SerializeToString()
            == blasprop.to_onnx(est).graph.SerializeToString())


def test_unfitted_estimator():
    with pytest.raises(NotFittedError):
        blasprop.to_onnx(MLPClassifier())


def test_missing_onnx_gives_install_hint(monkeypatch):
    est, _ = _fit("regression", "relu", np.float32)
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes "import onnx" fail
    with pytest.raises(ImportError, match="pip install"):
        blasprop.to_onnx(est)
