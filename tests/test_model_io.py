"""blasprop.save / blasprop.load: round trips and hostile files.

The hostile files are written by ``_pack`` below, an independent writer that
follows docs/model-files.md, so the tests also pin the documented layout.
"""

import io
import json
import os
import pickle
import struct
import time
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import blasprop
from blasprop import MLPClassifier, MLPRegressor
from blasprop._model_io import load_with_info, read_info

MAGIC = b"\x89BPM\r\n\x1a\n"


def _X(n=60, n_features=5, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).normal(size=(n, n_features)).astype(dtype)


def _labels(kind, X):
    score = X[:, 0] + 0.5 * X[:, 1]
    if kind == "int":
        return np.digitize(score, [-0.7, 0.0, 0.7]) * 3 - 2  # {-2, 1, 4, 7}
    if kind == "str":
        return np.array(["ant", "bee", "cat"])[np.digitize(score, [-0.5, 0.5])]
    if kind == "object_str":
        return np.array(["ant", "bee", "cat"], dtype=object)[np.digitize(score, [-0.5, 0.5])]
    if kind == "bool":
        return score > 0
    if kind == "float":
        return np.digitize(score, [-0.5, 0.5]).astype(np.float64) + 0.0
    if kind == "binary_str":
        return np.where(score > 0, "yes", "no")
    raise AssertionError(kind)


def _fit(est, X, y):
    return est.fit(X, y)


def _assert_same_fitted(a, b):
    assert type(a) is type(b)
    assert a.get_params() == b.get_params()
    assert len(a.coefs_) == len(b.coefs_)
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert wa.dtype == wb.dtype
        assert wa.shape == wb.shape
        np.testing.assert_array_equal(wa, wb)
    for attr in (
        "n_layers_", "n_outputs_", "out_activation_", "n_iter_", "t_", "loss_",
        "best_loss_", "best_validation_score_", "n_features_in_",
    ):
        assert getattr(a, attr, "absent") == getattr(b, attr, "absent"), attr
    public = lambda est: {k for k in vars(est) if k.endswith("_") and not k.startswith("_")}  # noqa: E731
    assert public(b) == public(a)  # no fitted attribute is lost
    for attr in ("loss_curve_", "validation_scores_", "validation_loss_curve_"):
        va, vb = getattr(a, attr, "absent"), getattr(b, attr, "absent")
        if isinstance(va, str) or va is None:
            assert vb == va, attr
        else:
            assert list(va) == list(vb), attr


# ---------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("labels", ["int", "str", "object_str", "bool", "float", "binary_str"])
def test_classifier_round_trip_is_bit_for_bit(tmp_path, dtype, labels):
    X = _X(dtype=dtype)
    y = _labels(labels, X)
    est = _fit(MLPClassifier(hidden_layer_sizes=(6, 4), max_iter=8, random_state=0), X, y)
    path = tmp_path / "clf.bpm"
    blasprop.save(est, path)
    loaded = blasprop.load(path)

    _assert_same_fitted(est, loaded)
    assert loaded.classes_.dtype == est.classes_.dtype
    np.testing.assert_array_equal(loaded.classes_, est.classes_)
    X_new = _X(40, seed=1, dtype=dtype)
    expected, got = est.predict(X_new), loaded.predict(X_new)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(loaded.predict_proba(X_new), est.predict_proba(X_new))
    assert {type(v) for v in got} == {type(v) for v in expected}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_multilabel_round_trip(tmp_path, dtype):
    X = _X(dtype=dtype)
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 0] + X[:, 2] > 0]).astype(int)
    est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=8, random_state=0).fit(X, Y)
    blasprop.save(est, tmp_path / "ml.bpm")
    loaded = blasprop.load(tmp_path / "ml.bpm")
    _assert_same_fitted(est, loaded)
    assert loaded._label_binarizer.y_type_ == "multilabel-indicator"
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_targets", [1, 3])
def test_regressor_round_trip(tmp_path, dtype, n_targets):
    X = _X(dtype=dtype)
    Y = X[:, :n_targets] * 2.0 + 1.0
    y = Y.ravel() if n_targets == 1 else Y
    est = MLPRegressor(hidden_layer_sizes=(7,), max_iter=8, random_state=0).fit(X, y)
    blasprop.save(est, tmp_path / "reg.bpm")
    loaded = blasprop.load(tmp_path / "reg.bpm")
    _assert_same_fitted(est, loaded)
    X_new = _X(30, seed=2, dtype=dtype)
    np.testing.assert_array_equal(loaded.predict(X_new), est.predict(X_new))
    assert loaded.predict(X_new).shape == est.predict(X_new).shape


def test_lbfgs_and_early_stopping_attributes_round_trip(tmp_path):
    X = _X(120)
    y = _labels("int", X)
    lbfgs = MLPClassifier(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=5,
                          random_state=0).fit(X, y)
    blasprop.save(lbfgs, tmp_path / "a.bpm")
    loaded = blasprop.load(tmp_path / "a.bpm")
    _assert_same_fitted(lbfgs, loaded)
    assert hasattr(loaded, "loss_curve_") == hasattr(lbfgs, "loss_curve_")

    es = MLPRegressor(hidden_layer_sizes=(4,), early_stopping=True, max_iter=15, random_state=0)
    es.fit(X, X[:, 0])
    assert es.best_loss_ is None and len(es.validation_scores_) > 0
    blasprop.save(es, tmp_path / "b.bpm")
    loaded = blasprop.load(tmp_path / "b.bpm")
    _assert_same_fitted(es, loaded)
    np.testing.assert_array_equal(loaded.predict(X), es.predict(X))


def test_feature_names_and_parameters_round_trip(tmp_path):
    X = _X()
    y = _labels("str", X)
    est = MLPClassifier(
        hidden_layer_sizes=(5, 3),
        activation=["tanh", "relu"],
        class_weight={"ant": 2.0, "bee": 1.0, "cat": 0.5},
        alpha=1e-3,
        max_iter=5,
        random_state=7,
    ).fit(X, y)
    # feature names as fitting on a DataFrame would set them (pandas is optional)
    est.feature_names_in_ = np.array([f"f{i}" for i in range(5)], dtype=object)
    blasprop.save(est, tmp_path / "m.bpm")
    loaded = blasprop.load(tmp_path / "m.bpm")
    assert loaded.get_params() == est.get_params()
    assert isinstance(loaded.hidden_layer_sizes, tuple)
    assert loaded.activation == ["tanh", "relu"]
    assert loaded.class_weight == {"ant": 2.0, "bee": 1.0, "cat": 0.5}
    assert loaded.feature_names_in_.dtype == object
    np.testing.assert_array_equal(loaded.feature_names_in_, est.feature_names_in_)


def test_unjsonable_parameters_are_stored_as_null(tmp_path):
    X = _X()
    seen = []
    est = MLPRegressor(
        hidden_layer_sizes=(3,),
        max_iter=3,
        random_state=np.random.RandomState(0),
        callbacks=[lambda est, info: seen.append(info["epoch"])],
    ).fit(X, X[:, 0])
    assert seen  # the callback did run
    path = tmp_path / "m.bpm"
    blasprop.save(est, path)
    header = read_info(path)
    assert header["params"]["random_state"] is None
    assert header["params"]["callbacks"] is None
    assert set(header["unsaved_params"]) == {"random_state", "callbacks"}
    loaded = blasprop.load(path)
    assert loaded.random_state is None and loaded.callbacks is None
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))


def test_metadata_and_header_contents(tmp_path):
    X = _X()
    est = MLPRegressor(hidden_layer_sizes=(3,), max_iter=3, random_state=0).fit(X, X[:, 0])
    path = tmp_path / "m.bpm"
    blasprop.save(est, path, metadata={"note": "hello", "n": [1, 2]})
    loaded, header = load_with_info(path)
    assert header["metadata"] == {"note": "hello", "n": [1, 2]}
    assert header["estimator"] == {"module": "blasprop", "class": "MLPRegressor"}
    assert header["blasprop_version"] == blasprop.__version__
    assert header["format_version"] == 1
    assert header["dtype"] == "float64"
    with pytest.raises(ValueError, match="JSON"):
        blasprop.save(est, tmp_path / "bad.bpm", metadata={"f": object()})
    assert not (tmp_path / "bad.bpm").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m.bpm"]  # no temporary left behind


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_after_load_continues_training(tmp_path, solver):
    X = _X(200, seed=3)
    y = _labels("str", X)
    est = MLPClassifier(hidden_layer_sizes=(8,), solver=solver, learning_rate_init=0.01,
                        max_iter=2, random_state=0).fit(X, y)
    blasprop.save(est, tmp_path / "m.bpm")
    loaded = blasprop.load(tmp_path / "m.bpm")
    score_before = loaded.score(X, y)
    for _ in range(30):
        loaded.partial_fit(X, y)
    assert len(loaded.loss_curve_) == len(est.loss_curve_) + 30
    assert loaded.t_ == est.t_ + 30 * len(X)
    assert loaded.loss_curve_[-1] < loaded.loss_curve_[len(est.loss_curve_)]
    assert loaded.score(X, y) > score_before

    # The file holds no optimizer state (documented): the loaded model trains
    # exactly like the original would with a fresh optimizer.
    del est._optimizer
    for _ in range(30):
        est.partial_fit(X, y)
    for a, b in zip(loaded.coefs_ + loaded.intercepts_, est.coefs_ + est.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert loaded.loss_curve_ == est.loss_curve_


def test_pickle_and_joblib_still_work(tmp_path):
    joblib = pytest.importorskip("joblib")
    X = _X()
    y = _labels("str", X)
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    blasprop.save(est, tmp_path / "m.bpm")
    loaded = blasprop.load(tmp_path / "m.bpm")
    unpickled = pickle.loads(pickle.dumps(loaded))
    np.testing.assert_array_equal(unpickled.predict_proba(X), est.predict_proba(X))
    joblib.dump(loaded, tmp_path / "m.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "m.joblib").predict(X), est.predict(X))
    # and a pickled-then-unpickled model can be saved again
    blasprop.save(unpickled, tmp_path / "again.bpm")
    np.testing.assert_array_equal(blasprop.load(tmp_path / "again.bpm").predict(X), est.predict(X))


def test_save_rejects_unfitted_and_foreign_estimators(tmp_path):
    with pytest.raises(NotFittedError):
        blasprop.save(MLPClassifier(), tmp_path / "m.bpm")
    from sklearn.linear_model import LogisticRegression

    X = _X()
    with pytest.raises(TypeError, match="MLPClassifier or MLPRegressor"):
        blasprop.save(LogisticRegression().fit(X, X[:, 0] > 0), tmp_path / "m.bpm")
    assert list(tmp_path.iterdir()) == []


def test_scikit_learn_mlp_can_be_saved_and_loaded(tmp_path):
    from sklearn.neural_network import MLPClassifier as SkMLP

    X = _X()
    y = _labels("str", X)
    sk = SkMLP(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    blasprop.save(sk, tmp_path / "sk.bpm")
    loaded = blasprop.load(tmp_path / "sk.bpm")
    assert type(loaded) is SkMLP
    np.testing.assert_array_equal(loaded.predict_proba(X), sk.predict_proba(X))


# ---------------------------------------------------------------------------
# damaged and hostile files


def _pack(header, data=b"", *, version=1, json_bytes=None, json_len=None, data_len=None):
    """Write a model file following docs/model-files.md."""
    raw = json_bytes if json_bytes is not None else json.dumps(header).encode()
    head = struct.pack(
        "<8sIIQQ",
        MAGIC,
        version,
        zlib.crc32(raw),
        len(raw) if json_len is None else json_len,
        len(data) if data_len is None else data_len,
    )
    pad = b"\0" * (-(len(head) + len(raw)) % 64)
    return head + raw + pad + data


def _unpack(blob):
    magic, version, crc, json_len, data_len = struct.unpack("<8sIIQQ", blob[:32])
    assert magic == MAGIC and version == 1
    raw = blob[32 : 32 + json_len]
    assert zlib.crc32(raw) == crc
    start = 32 + json_len + (-(32 + json_len) % 64)
    assert len(blob) == start + data_len
    return json.loads(raw), blob[start:]


@pytest.fixture(scope="module")
def small_model_file(tmp_path_factory):
    X = _X(40, n_features=4)
    est = MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0).fit(
        X, _labels("str", X))
    path = tmp_path_factory.mktemp("model") / "small.bpm"
    blasprop.save(est, path)
    return path.read_bytes()


def _load_bytes(tmp_path, blob, name="bad.bpm"):
    path = tmp_path / name
    path.write_bytes(blob)
    return blasprop.load(path)


def _assert_rejected(tmp_path, blob, match=None, max_seconds=1.0, max_alloc=8 * 2**20):
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=match):
            _load_bytes(tmp_path, blob)
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < max_seconds
    assert peak < max_alloc


def test_documented_layout(small_model_file):
    header, data = _unpack(small_model_file)
    assert header["format"] == "blasprop-model"
    for entry in header["arrays"]:
        assert entry["offset"] % 64 == 0
        n = int(np.prod(entry["shape"])) * np.dtype(entry["dtype"]).itemsize
        chunk = data[entry["offset"] : entry["offset"] + n]
        assert zlib.crc32(chunk) == entry["crc32"]
    w0 = next(e for e in header["arrays"] if e["name"] == "coefs_.0")
    assert w0["shape"] == [4, 3] and w0["dtype"] == "<f8"


def test_intact_file_loads(tmp_path, small_model_file):
    assert isinstance(_load_bytes(tmp_path, small_model_file), MLPClassifier)


def test_truncated_files(tmp_path, small_model_file):
    n = len(small_model_file)
    for cut in (0, 1, 7, 8, 20, 31, 32, 40, n // 2, n - 64, n - 8, n - 1):
        _assert_rejected(tmp_path, small_model_file[:cut])


def test_flipped_bytes_are_detected(tmp_path, small_model_file):
    """Every byte of the fixed header, padding and arrays; every 7th of the JSON."""
    blob = bytearray(small_model_file)
    json_len = struct.unpack("<Q", blob[16:24])[0]
    positions = [i for i in range(len(blob)) if not 32 <= i < 32 + json_len or i % 7 == 0]
    path = tmp_path / "flip.bpm"
    for i in positions:
        damaged = blob.copy()
        damaged[i] ^= 0x20
        path.write_bytes(damaged)
        with pytest.raises(ValueError):
            blasprop.load(path)


def test_trailing_garbage(tmp_path, small_model_file):
    _assert_rejected(tmp_path, small_model_file + b"\0", match="trailing")


def test_wrong_magic_and_other_formats(tmp_path, small_model_file):
    _assert_rejected(tmp_path, b"NOTBPM!!" + small_model_file[8:], match="magic")
    _assert_rejected(tmp_path, b"", match="short")
    _assert_rejected(tmp_path, b"a,b,c\n1,2,3\n" * 10, match="magic")
    buf = io.BytesIO()
    np.savez(buf, coefs=np.zeros(3))
    _assert_rejected(tmp_path, buf.getvalue(), match="zip")


def test_zip_bomb_is_not_expanded(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("coefs_.npy", b"\0" * (64 * 2**20))  # 64 MiB of zeros, ~64 kB compressed
    blob = buf.getvalue()
    assert len(blob) < 2**20
    _assert_rejected(tmp_path, blob, match="zip", max_alloc=4 * 2**20)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-pickle",))


def test_pickle_payload_is_never_unpickled(tmp_path, small_model_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for payload in (pickle.dumps(_Evil()), pickle.dumps(_Evil(), protocol=0)):
        _assert_rejected(tmp_path, payload, match="pickle")
    # a pickle where the arrays should be
    header, data = _unpack(small_model_file)
    evil = pickle.dumps(_Evil())
    header["arrays"][0]["dtype"] = "|O"
    _assert_rejected(tmp_path, _pack(header, data), match="dtype")
    header, _ = _unpack(small_model_file)
    _assert_rejected(tmp_path, _pack(header, evil + data[len(evil) :]), match="checksum")
    assert not (tmp_path / "pwned-by-pickle").exists()


def test_huge_declared_lengths(tmp_path, small_model_file):
    header, data = _unpack(small_model_file)
    _assert_rejected(tmp_path, _pack(header, data, json_len=2**62), match="JSON header length")
    _assert_rejected(tmp_path, _pack(header, data, json_len=2**31), match="JSON header length")
    _assert_rejected(tmp_path, _pack(header, data, data_len=2**63), match="truncated")


@pytest.mark.parametrize("shape", [[10**9, 10**9], [2**62, 2**62], [10**12], [3, 3, 3]])
def test_absurd_array_shapes(tmp_path, small_model_file, shape):
    header, data = _unpack(small_model_file)
    header["arrays"][0]["shape"] = shape
    _assert_rejected(tmp_path, _pack(header, data))


def test_absurd_architecture(tmp_path, small_model_file):
    header, data = _unpack(small_model_file)
    header["params"]["hidden_layer_sizes"] = [10**9]
    header["arrays"][0]["shape"] = [4, 10**9]
    _assert_rejected(tmp_path, _pack(header, data), match="does not fit")


def _edited(small_model_file, edit):
    header, data = _unpack(small_model_file)
    data = bytearray(data)
    edit(header, data)
    return _pack(header, bytes(data))


def _set_nan(header, data):
    entry = header["arrays"][0]
    nan = np.array([np.nan]).tobytes()
    data[entry["offset"] : entry["offset"] + 8] = nan
    n = int(np.prod(entry["shape"])) * 8
    entry["crc32"] = zlib.crc32(bytes(data[entry["offset"] : entry["offset"] + n]))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda h, d: h["params"].update(hidden_layer_sizes=[4]), "shape"),
        (lambda h, d: h["attributes"].update(n_features_in_=5), "shape"),
        (lambda h, d: h["attributes"].update(n_outputs_=2), "shape|classes"),
        (lambda h, d: h["attributes"].update(n_layers_=4), "n_layers_"),
        (lambda h, d: h["attributes"].update(out_activation_="logistic"), "out_activation_"),
        (lambda h, d: h["attributes"].update(out_activation_="os.system"), "output activation"),
        (lambda h, d: h.update(label_type="multilabel-indicator"), "multilabel"),
        (lambda h, d: h["classes"]["values"].pop(), "classes"),
        (lambda h, d: h["classes"].update(dtype="|O", element="pickle"), "element"),
        (lambda h, d: h["classes"].update(dtype="V100000000"), "dtype"),
        (lambda h, d: h["classes"].update(dtype="<U100000000"), "wider"),
        (lambda h, d: h["classes"].update(dtype="<U2"), "fitting"),
        (lambda h, d: h.update(estimator={"module": "os", "class": "system"}), "os.system"),
        (lambda h, d: h["params"].update(activation="rm -rf"), "activation"),
        (lambda h, d: h["params"].update(not_a_param=1), "not_a_param"),
        (lambda h, d: h.update(dtype="float16"), "dtype"),
        (lambda h, d: h["arrays"][0].update(dtype="<f4"), "dtype|fit|starts|cover"),
        (lambda h, d: h["arrays"][1].update(offset=0), "starts at"),
        (lambda h, d: h["arrays"].append(dict(h["arrays"][0])), "twice"),
        (lambda h, d: h["arrays"][0].update(name="os.system"), "missing|unexpected"),
        (lambda h, d: h.update(format_version=2), "format version"),
        (lambda h, d: h["attributes"].update(t_="many"), "t_"),
        (lambda h, d: h["attributes"].update(n_iter_=-1), "n_iter_"),
        (lambda h, d: h.update(feature_names_in=["a"]), "feature names"),
        (_set_nan, "NaN"),
    ],
)
def test_inconsistent_headers(tmp_path, small_model_file, edit, match):
    _assert_rejected(tmp_path, _edited(small_model_file, edit), match=match)


def test_bad_json(tmp_path, small_model_file):
    header, data = _unpack(small_model_file)
    raw = json.dumps(header).encode()
    nested = b"[" * 100_000 + b"]" * 100_000
    dup = raw[:-1] + b',"format":"blasprop-model"}'
    for bad in (b"\xff\xfe not utf-8", b"{not json", nested, dup, b"[1, 2]", b"NaN", b"1" * 5000):
        _assert_rejected(tmp_path, _pack(None, data, json_bytes=bad))


def test_version_from_the_future(tmp_path, small_model_file):
    header, data = _unpack(small_model_file)
    _assert_rejected(tmp_path, _pack(header, data, version=2), match="version 2")


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(OSError):
        blasprop.load(tmp_path / "missing.bpm")


# ---------------------------------------------------------------------------
# every parameter value fit accepts round-trips (or save refuses it up front)


def _params_equal(a, b):
    """get_params() equality that compares NumPy arrays by value and dtype."""
    pa, pb = a.get_params(), b.get_params()
    assert pa.keys() == pb.keys()
    for key in pa:
        va, vb = pa[key], pb[key]
        if isinstance(va, np.ndarray):
            assert isinstance(vb, np.ndarray) and vb.dtype == va.dtype, key
            np.testing.assert_array_equal(vb, va)
        else:
            assert type(vb) is type(va) or (
                va == vb and not isinstance(va, (tuple, list, range))), key
            assert vb == va, key


_FIT_PARAMS = {
    "hidden-int": dict(hidden_layer_sizes=4),
    "hidden-numpy-int": dict(hidden_layer_sizes=np.int64(4)),
    "hidden-list": dict(hidden_layer_sizes=[4, 3]),
    "hidden-tuple": dict(hidden_layer_sizes=(4, 3)),
    "hidden-ndarray-int64": dict(hidden_layer_sizes=np.array([4, 3])),
    "hidden-ndarray-int32": dict(hidden_layer_sizes=np.array([4, 3], dtype=np.int32)),
    "hidden-range": dict(hidden_layer_sizes=range(3, 5)),
    "hidden-empty": dict(hidden_layer_sizes=()),
    "activation-list": dict(hidden_layer_sizes=(4, 3), activation=["tanh", "gelu"]),
    "activation-tuple": dict(hidden_layer_sizes=(4, 3), activation=("elu", "relu")),
    "dropout-float": dict(hidden_layer_sizes=(4, 3), dropout=0.25),
    "dropout-numpy-float": dict(hidden_layer_sizes=(4,), dropout=np.float32(0.25)),
    "dropout-list": dict(hidden_layer_sizes=(4, 3), dropout=[0.1, 0.2]),
    "dropout-tuple": dict(hidden_layer_sizes=(4, 3), dropout=(0.0, 0.5)),
    "n_iter_no_change-inf": dict(n_iter_no_change=np.inf),
    "n_iter_no_change-numpy-int": dict(n_iter_no_change=np.int32(3)),
    "numpy-floats": dict(alpha=np.float32(1e-3), learning_rate_init=np.float64(0.01),
                         tol=np.float16(1e-3), momentum=np.float64(0.5)),
    "batch_size-numpy-int": dict(batch_size=np.int64(16), solver="sgd"),
    "max_iter-numpy-int": dict(max_iter=np.uint8(3)),
    "random_state-None": dict(random_state=None),
    "random_state-numpy-int": dict(random_state=np.int64(3)),
    "early_stopping": dict(early_stopping=True, validation_fraction=0.2),
    "lbfgs": dict(solver="lbfgs", max_fun=50),
    "adamw": dict(solver="adamw"),
    "callbacks-empty": dict(callbacks=[]),
    "callbacks-empty-tuple": dict(callbacks=()),
    "shuffle-numpy-bool": dict(shuffle=np.bool_(False)),
}
_CLASS_WEIGHTS = {
    "class_weight-balanced": ("int", "balanced"),
    "class_weight-int": ("int", {-2: 2.0, 1: 1.0, 4: 0.5, 7: 1.5}),
    "class_weight-numpy-int": ("int", {np.int64(-2): np.float64(2.0), np.int64(1): 1,
                                       np.int64(4): 0.5, np.int64(7): 1.0}),
    "class_weight-str": ("str", {"ant": 2.0, "bee": 1.0, "cat": 0.5}),
    "class_weight-bool": ("bool", {True: 3.0, False: 1.0}),
    "class_weight-extra-key": ("str", {"ant": 2.0, "bee": 1.0, "cat": 0.5, "dog": 9.0}),
}


@pytest.mark.parametrize(
    "case, kind",
    [(case, kind) for case in _FIT_PARAMS for kind in ("classifier", "regressor")]
    + [(case, "classifier") for case in _CLASS_WEIGHTS],
)
def test_every_parameter_value_fit_accepts_round_trips(tmp_path, case, kind):
    labels, params = "int", dict(_FIT_PARAMS.get(case, {}))
    if case in _CLASS_WEIGHTS:
        labels, params["class_weight"] = _CLASS_WEIGHTS[case]
    X = _X(80)
    params.setdefault("max_iter", 4)
    params.setdefault("random_state", 0)
    if kind == "classifier":
        est = MLPClassifier(**params).fit(X, _labels(labels, X))
    else:
        est = MLPRegressor(**params).fit(X, X[:, 0])
    path = tmp_path / "m.bpm"
    blasprop.save(est, path)
    loaded = blasprop.load(path)
    _params_equal(est, loaded)
    X_new = _X(30, seed=4)
    np.testing.assert_array_equal(loaded.predict(X_new), est.predict(X_new))
    if est.get_params()["solver"] != "lbfgs" and not est.early_stopping:
        y = _labels(labels, X) if kind == "classifier" else X[:, 0]
        if est.get_params().get("class_weight") == "balanced":
            with pytest.raises(ValueError, match="balanced"):
                loaded.partial_fit(X, y)
        else:
            loaded.partial_fit(X, y)  # the loaded state is one partial_fit accepts


@pytest.mark.parametrize(
    "param, value",
    [
        ("hidden_layer_sizes", np.array([[3]])),
        ("hidden_layer_sizes", np.array(["3"])),
        ("activation", ["relu", object()]),
        ("dropout", [0.1, np.nan]),
        ("class_weight", {("a", "b"): 1.0}),
        ("alpha", 1j),
    ],
)
def test_save_refuses_unstorable_parameters_before_writing(tmp_path, param, value):
    X = _X()
    est = MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0).fit(
        X, _labels("int", X))
    est.set_params(**{param: value})
    (tmp_path / "m.bpm").write_bytes(b"previous")
    with pytest.raises(ValueError, match=param):
        blasprop.save(est, tmp_path / "m.bpm")
    assert (tmp_path / "m.bpm").read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.bpm"]


@pytest.mark.parametrize(
    "param, value, match",
    [
        ("activation", ["relu", "tanh"], "activation"),  # one hidden layer
        ("activation", "softmax", "activation"),
        ("dropout", [0.1, 0.2], "dropout"),
        ("dropout", 0.5, "dropout"),  # with lbfgs
        ("class_weight", {"dog": 1.0}, "class_weight"),
        ("solver", "newton", "solver"),
        ("batch_size", 0, "batch_size"),
    ],
)
def test_save_refuses_states_that_load_would_refuse(tmp_path, param, value, match):
    X = _X()
    est = MLPClassifier(hidden_layer_sizes=(3,), solver="lbfgs", max_iter=2, random_state=0)
    est.fit(X, _labels("str", X)).set_params(**{param: value})
    with pytest.raises(ValueError, match=match):
        blasprop.save(est, tmp_path / "m.bpm")
    assert list(tmp_path.iterdir()) == []


def test_unsaved_parameters_are_only_the_documented_ones(tmp_path):
    X = _X()
    est = MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=np.random.RandomState(1),
                        callbacks=[print]).fit(X, _labels("int", X))
    blasprop.save(est, tmp_path / "m.bpm")
    header = read_info(tmp_path / "m.bpm")
    assert sorted(header["unsaved_params"]) == ["callbacks", "random_state"]
    blob = (tmp_path / "m.bpm").read_bytes()
    header, data = _unpack(blob)
    # files of earlier versions also left out e.g. n_iter_no_change=inf: the
    # default applies, as it did then
    header["params"]["n_iter_no_change"] = None
    header["unsaved_params"].append("n_iter_no_change")
    assert _load_bytes(tmp_path, _pack(header, data)).n_iter_no_change == 10
    # but an unsaved parameter must be stored as null
    header["params"]["n_iter_no_change"] = 5
    _assert_rejected(tmp_path, _pack(header, data), match="n_iter_no_change")


def test_wide_string_label_dtype_is_narrowed_at_save(tmp_path):
    kind = "U"  # scikit-learn refuses bytes labels
    X = _X()
    est = MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0).fit(
        X, _labels("str", X))
    for width, stored in ((500, 3), (20, 20)):  # beyond the documented slack, within it
        est.classes_ = est._label_binarizer.classes_ = est.classes_.astype(f"{kind}{width}")
        expected = est.predict(X)
        blasprop.save(est, tmp_path / "m.bpm")
        loaded = blasprop.load(tmp_path / "m.bpm")
        assert loaded.classes_.dtype == np.dtype(f"{kind}{stored}")
        np.testing.assert_array_equal(loaded.predict(X), expected)


def test_save_never_writes_a_file_that_load_rejects(tmp_path_factory):
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    X = _X(50)

    hidden = st.one_of(
        st.integers(1, 4),
        st.lists(st.integers(1, 4), max_size=3),
        st.lists(st.integers(1, 4), max_size=3).map(tuple),
        st.lists(st.integers(1, 4), min_size=1, max_size=3).map(np.array),
        st.integers(1, 3).map(lambda n: range(2, 2 + n)),
    )
    acts = st.sampled_from(["relu", "tanh", "logistic", "identity", "gelu", "silu"])
    labels = st.sampled_from(["int", "str", "object_str", "bool", "float", "binary_str"])

    @hypothesis.settings(max_examples=25, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(hidden=hidden, act=acts, per_layer=st.booleans(), labels=labels,
                      regress=st.booleans(),
                      solver=st.sampled_from(["adam", "sgd", "lbfgs", "adamw"]),
                      dtype=st.sampled_from([np.float32, np.float64]), drop=st.floats(0, 0.9),
                      weights=st.booleans(), meta=st.recursive(
                          st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
                          | st.text(max_size=5)
                          | st.floats(allow_nan=False, allow_infinity=False),
                          lambda c: (st.lists(c, max_size=3)
                                     | st.dictionaries(st.text(max_size=3), c, max_size=3)),
                          max_leaves=8))
    def check(hidden, act, per_layer, labels, regress, solver, dtype, drop, weights, meta):
        n_hidden = len(list(hidden)) if hasattr(hidden, "__iter__") else 1
        activation = [act] * n_hidden if per_layer else act
        params = dict(hidden_layer_sizes=hidden, activation=activation, solver=solver, max_iter=3,
                      random_state=0, dropout=0.0 if solver == "lbfgs" else drop)
        Xd = X.astype(dtype)
        if regress:
            est = MLPRegressor(**params).fit(Xd, X[:, 0])
        else:
            y = _labels(labels, X)
            if weights:
                params["class_weight"] = {c: 1.0 + i for i, c in enumerate(np.unique(y))}
            est = MLPClassifier(**params).fit(Xd, y)
        path = tmp_path_factory.mktemp("prop") / "m.bpm"
        blasprop.save(est, path, metadata=meta)
        loaded = blasprop.load(path)
        assert blasprop.load_metadata(path) == meta
        np.testing.assert_array_equal(loaded.predict(Xd), est.predict(Xd))

    check()


# ---------------------------------------------------------------------------
# the whole estimator state is validated at load


def _file_of(est, **save_kw):
    buf_path = None
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        buf_path = os.path.join(d, "m.bpm")
        blasprop.save(est, buf_path, **save_kw)
        with open(buf_path, "rb") as f:
            return f.read()


@pytest.fixture(scope="module")
def state_files():
    """A classifier (2 hidden layers, string labels) and a regressor, saved."""
    X = _X(60, n_features=4)
    clf = MLPClassifier(hidden_layer_sizes=(3, 2), max_iter=2, random_state=0,
                        class_weight={"ant": 1.0, "bee": 2.0, "cat": 1.0}).fit(
                            X, _labels("str", X))
    reg = MLPRegressor(hidden_layer_sizes=(3, 2), max_iter=2, random_state=0).fit(X, X[:, 0])
    return {"classifier": _file_of(clf), "regressor": _file_of(reg)}


def _set_param(name, value, ptype=None):
    def edit(h):
        h["params"][name] = value
        if ptype is None:
            h["param_types"].pop(name, None)
        else:
            h["param_types"][name] = ptype
    return edit


_STATE_EDITS = {
    # name: (applies to, edit, match)
    "activation-list-too-short": ("both", _set_param("activation", ["relu"]), "activation"),
    "activation-list-too-long": ("both", _set_param("activation", ["relu"] * 3), "activation"),
    "activation-unknown-in-list": ("both", _set_param("activation", ["relu", "rm"]), "activation"),
    "activation-nested-list": ("both", _set_param("activation", [["relu"], "relu"]), "activation"),
    "activation-number": ("both", _set_param("activation", 3), "activation"),
    "dropout-list-length": ("both", _set_param("dropout", [0.1]), "dropout"),
    "dropout-out-of-range": ("both", _set_param("dropout", [0.1, 1.0]), "dropout"),
    "dropout-negative": ("both", _set_param("dropout", -0.5), "dropout"),
    "dropout-strings": ("both", _set_param("dropout", ["a", "b"]), "dropout"),
    "dropout-with-lbfgs": ("both", lambda h: h["params"].update(dropout=0.2, solver="lbfgs"),
                           "dropout"),
    "callbacks-values": ("both", _set_param("callbacks", [1, "print"]), "callbacks"),
    "callbacks-string": ("both", _set_param("callbacks", "print"), "callbacks"),
    "class_weight-unknown-class": ("classifier", _set_param("class_weight", [["dog", 1.0]], "dict"),
                                   "class_weight"),
    "class_weight-string-weight": ("classifier",
                                   _set_param("class_weight",
                                              [["ant", "x"], ["bee", 1], ["cat", 1]], "dict"),
                                   "class_weight"),
    "class_weight-bad-pairs": ("classifier", _set_param("class_weight", [["ant"]], "dict"),
                               "class_weight"),
    "class_weight-unknown-string": ("classifier", _set_param("class_weight", "uniform"),
                                    "class_weight"),
    "solver-unknown": ("both", _set_param("solver", "newton"), "solver"),
    "loss-unknown": ("regressor", _set_param("loss", "hinge"), "loss"),
    "loss-vs-out-activation": ("regressor", _set_param("loss", "poisson"), "out_activation_"),
    "out_activation-softmax-regressor": (
        "regressor",
        lambda h: h["attributes"].update(out_activation_="softmax"),
        "output activation"),
    "out_activation-identity-classifier": (
        "classifier",
        lambda h: h["attributes"].update(out_activation_="identity"),
        "out_activation_"),
    "n_outputs-vs-classes": ("classifier", lambda h: h["attributes"].update(n_outputs_=4),
                             "shape|labels"),
    "n_outputs-vs-output-units": ("regressor", lambda h: h["attributes"].update(n_outputs_=2),
                                  "shape"),
    "hidden-vs-coefs-chain": ("both", _set_param("hidden_layer_sizes", [2, 3], "tuple"), "shape"),
    "hidden-zero": ("both", _set_param("hidden_layer_sizes", [3, 0], "tuple"),
                    "hidden_layer_sizes"),
    "hidden-bad-range": ("both", _set_param("hidden_layer_sizes", [3, 5, 0], "range"), "step"),
    "hidden-bad-ndarray": ("both",
                           _set_param("hidden_layer_sizes",
                                      {"dtype": "|O", "values": [3, 2]}, "ndarray"),
                           "dtype"),
    "hidden-ndarray-overflow": ("both",
                                _set_param("hidden_layer_sizes",
                                           {"dtype": "|i1", "values": [300]}, "ndarray"),
                                "range"),
    "param-type-unknown": ("both", _set_param("alpha", 1.0, "pickle"), "pickle"),
    "param-type-float-bad": ("both", _set_param("n_iter_no_change", "many", "float"), "inf"),
    "param-type-orphan": ("both", lambda h: h["param_types"].update(nothere="tuple"),
                          "param_types"),
    "param-nested-object": ("both", _set_param("alpha", {"a": 1}), "alpha"),
    "batch_size-zero": ("both", _set_param("batch_size", 0), "batch_size"),
    "max_iter-float": ("both", _set_param("max_iter", 2.5), "max_iter"),
    "no-loss-curve-for-adam": (
        "both",
        lambda h: h["attributes"].pop("loss_curve_") and h["arrays"].__setitem__(
            slice(None), [a for a in h["arrays"] if a["name"] != "loss_curve_"]),
        "loss_curve_|cover"),
    "best_loss-null-for-adam": ("both", lambda h: h["attributes"].update(best_loss_=None),
                                "best_loss_"),
    "t-missing-for-adam": ("both", lambda h: h["attributes"].pop("t_"), "t_"),
    "huge-int-attribute": ("both", lambda h: h["attributes"].update(n_iter_=2**64), "n_iter_"),
    "multilabel-wrong-classes": ("classifier",
                                 lambda h: h.update(label_type="multilabel-indicator"),
                                 "multilabel|out_activation_"),
    "metadata-cli-not-object": ("both", lambda h: h.update(metadata={"cli": [1, 2]}), "cli"),
    "metadata-cli-seconds-string": ("both",
                                    lambda h: h.update(
                                        metadata={"cli": {"seconds_per_epoch": "x"}}),
                                    "seconds_per_epoch"),
    "metadata-cli-score-list": ("both", lambda h: h.update(metadata={"cli": {"test_score": [1]}}),
                                "test_score"),
    "metadata-cli-features-not-strings": ("both",
                                          lambda h: h.update(
                                              metadata={"cli": {"features": [1, 2]}}),
                                          "features"),
    "metadata-cli-n_train-bool": ("both",
                                  lambda h: h.update(metadata={"cli": {"n_train": True}}),
                                  "n_train"),
    "metadata-cli-data-object": ("both",
                                 lambda h: h.update(metadata={"cli": {"data": {"a": 1}}}),
                                 "data"),
}


@pytest.mark.parametrize(
    "case, kind",
    [(case, kind) for case, (applies, _, _) in _STATE_EDITS.items()
     for kind in ("classifier", "regressor") if applies in ("both", kind)],
)
def test_inconsistent_state_is_refused_at_load(tmp_path, state_files, kind, case):
    _, edit, match = _STATE_EDITS[case]
    header, data = _unpack(state_files[kind])
    if case.startswith("class_weight") and kind == "classifier":
        assert header["param_types"]["class_weight"] == "dict"
    edit(header)
    if "loss_curve_" not in header["attributes"] and case == "no-loss-curve-for-adam":
        data = data[: header["arrays"][-1]["offset"]
                    + 8 * int(np.prod(header["arrays"][-1]["shape"]))]
    blob = _pack(header, data)
    _assert_rejected(tmp_path, blob, match=match)
    path = tmp_path / "bad.bpm"
    with pytest.raises(ValueError, match=match):
        blasprop.load_metadata(path)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_unedited_state_files_load_and_keep_training(tmp_path, state_files, kind):
    """The baseline of the test above: the files it edits are valid."""
    est = _load_bytes(tmp_path, state_files[kind])
    X = _X(60, n_features=4)
    y = _labels("str", X) if kind == "classifier" else X[:, 0]
    est.predict(X)
    est.partial_fit(X, y)


# ---------------------------------------------------------------------------
# non-regular files


_READERS = {
    "load": blasprop.load,
    "load_with_info": load_with_info,
    "load_metadata": blasprop.load_metadata,
    "read_info": read_info,
}


def _call_with_timeout(fn, path, seconds=5.0):
    """fn(path) in a daemon thread; returns the exception it raised (a hang fails)."""
    import threading

    outcome = {}

    def run():
        try:
            fn(path)
            outcome["exc"] = None
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["exc"] = exc

    t = threading.Thread(target=run, daemon=True)
    start = time.perf_counter()
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn.__name__} blocked on {path}"
    assert time.perf_counter() - start < seconds
    return outcome["exc"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
@pytest.mark.parametrize("reader", list(_READERS))
def test_fifo_is_refused_at_once(tmp_path, reader):
    path = tmp_path / "model.bpm"
    os.mkfifo(path)
    exc = _call_with_timeout(_READERS[reader], path)
    assert isinstance(exc, ValueError), exc
    assert "FIFO" in str(exc) and "regular file" in str(exc)


@pytest.mark.parametrize("reader", list(_READERS))
def test_devices_sockets_and_directories_are_refused(tmp_path, reader):
    import socket

    fn = _READERS[reader]
    if os.path.exists("/dev/zero"):
        exc = _call_with_timeout(fn, "/dev/zero")
        assert isinstance(exc, ValueError) and "character device" in str(exc), exc
    exc = _call_with_timeout(fn, tmp_path)
    assert isinstance(exc, IsADirectoryError), exc
    if hasattr(socket, "AF_UNIX"):
        sock_path = tmp_path / "s.sock"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(sock_path))
            exc = _call_with_timeout(fn, sock_path)
        assert isinstance(exc, ValueError) and "socket" in str(exc), exc
    exc = _call_with_timeout(fn, tmp_path / "missing.bpm")
    assert isinstance(exc, FileNotFoundError), exc


def test_file_swapped_for_a_fifo_after_the_stat_is_refused(tmp_path, small_model_file, monkeypatch):
    """The descriptor actually opened is checked, not only the name's first stat."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("needs os.mkfifo")
    from blasprop import _model_io

    path = tmp_path / "m.bpm"
    path.write_bytes(small_model_file)
    real_stat = os.stat

    def stat_then_swap(p, *args, **kwargs):
        st = real_stat(p, *args, **kwargs)
        if os.fspath(p) == os.fspath(path):
            os.unlink(path)
            os.mkfifo(path)
        return st

    monkeypatch.setattr(_model_io.os, "stat", stat_then_swap)
    exc = _call_with_timeout(blasprop.load, path)
    assert isinstance(exc, ValueError) and "FIFO" in str(exc), exc


# ---------------------------------------------------------------------------
# replacing files


@pytest.fixture(scope="module")
def tiny_model():
    X = _X(30, n_features=3)
    return MLPRegressor(hidden_layer_sizes=(2,), max_iter=2, random_state=0).fit(X, X[:, 0])


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("mode", [0o600, 0o644, 0o640, 0o444])
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_save_over_a_file_keeps_its_permission_bits(tmp_path, tiny_model, mode, umask):
    path = tmp_path / "m.bpm"
    path.write_bytes(b"old")
    os.chmod(path, mode)
    old_umask = os.umask(umask)
    try:
        blasprop.save(tiny_model, path)
        assert os.stat(path).st_mode & 0o7777 == mode
        # a new file gets what open() would give it under this umask
        blasprop.save(tiny_model, tmp_path / "new.bpm")
        assert os.stat(tmp_path / "new.bpm").st_mode & 0o777 == 0o666 & ~umask
    finally:
        os.umask(old_umask)
    assert isinstance(blasprop.load(path), MLPRegressor)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bpm", "new.bpm"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
@pytest.mark.parametrize("relative", [True, False])
def test_save_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path, tiny_model,
                                                                       relative):
    (tmp_path / "models").mkdir()
    target = tmp_path / "models" / "real.bpm"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    link = tmp_path / "link.bpm"
    os.symlink(os.path.join("models", "real.bpm") if relative else target, link)
    blasprop.save(tiny_model, link)
    assert link.is_symlink()
    assert os.readlink(link) == (os.path.join("models", "real.bpm") if relative else str(target))
    assert isinstance(blasprop.load(target), MLPRegressor)
    assert os.stat(target).st_mode & 0o777 == 0o640
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["real.bpm"]
    # a dangling link: the file it names is created
    target.unlink()
    blasprop.save(tiny_model, link)
    assert link.is_symlink() and target.is_file()


@pytest.mark.parametrize("exc_type", [OSError, KeyboardInterrupt, MemoryError])
@pytest.mark.parametrize("after_bytes", [0, 40, 10_000])
def test_interrupted_save_leaves_the_old_file_and_no_temporary(tmp_path, tiny_model, monkeypatch,
                                                               exc_type, after_bytes):
    path = tmp_path / "m.bpm"
    blasprop.save(tiny_model, path, metadata={"version": 1})
    before = path.read_bytes()
    X = _X(30, n_features=3)
    # ~18 kB
    other = MLPRegressor(hidden_layer_sizes=(400,), max_iter=2, random_state=1).fit(X, X[:, 1])
    real_fdopen = os.fdopen

    class FailingFile:
        """The temporary file, failing once ``after_bytes`` have been written."""

        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            n = len(memoryview(data).cast("B"))
            if self.written + n > after_bytes:
                raise exc_type("simulated failure mid-write")
            self.written += n
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    monkeypatch.setattr(os, "fdopen", lambda *a, **k: FailingFile(real_fdopen(*a, **k)))
    try:
        with pytest.raises(exc_type, match="simulated"):
            blasprop.save(other, path, metadata={"version": 2})
    finally:
        monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.bpm"]


@pytest.mark.parametrize("exc_type", [OSError, KeyboardInterrupt])
def test_save_failing_at_fsync_or_rename_cleans_up(tmp_path, tiny_model, monkeypatch, exc_type):
    from blasprop import _model_io

    path = tmp_path / "m.bpm"
    path.write_bytes(b"old")
    for name in ("fsync", "replace"):
        def boom(*args, _name=name, **kwargs):
            raise exc_type(f"simulated {_name} failure")

        monkeypatch.setattr(_model_io.os, name, boom)
        with pytest.raises(exc_type, match="simulated"):
            blasprop.save(tiny_model, path)
        monkeypatch.undo()
        assert path.read_bytes() == b"old"
        assert [p.name for p in tmp_path.iterdir()] == ["m.bpm"]


def test_save_refuses_to_replace_what_is_not_a_regular_file(tmp_path, tiny_model):
    (tmp_path / "dir.bpm").mkdir()
    with pytest.raises(IsADirectoryError):
        blasprop.save(tiny_model, tmp_path / "dir.bpm")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.bpm")
        with pytest.raises(ValueError, match="not a regular file"):
            blasprop.save(tiny_model, tmp_path / "fifo.bpm")
        assert (tmp_path / "fifo.bpm").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["dir.bpm"] + (["fifo.bpm"] if hasattr(os, "mkfifo") else [])
    )
    assert list((tmp_path / "dir.bpm").iterdir()) == []


# ---------------------------------------------------------------------------
# reading metadata back


@pytest.mark.parametrize(
    "metadata",
    [None, {"note": "hello", "n": [1, 2.5, None, True]}, [1, 2], "text", 3,
     {"cli": {"data": "x.csv", "target": None, "features": ["a"], "test_score": None,
              "extra": {"k": 1}}}],
)
def test_load_metadata_returns_what_save_was_given(tmp_path, tiny_model, metadata):
    blasprop.save(tiny_model, tmp_path / "m.bpm", metadata=metadata)
    assert blasprop.load_metadata(tmp_path / "m.bpm") == metadata
    assert load_with_info(tmp_path / "m.bpm")[1]["metadata"] == metadata


@pytest.mark.parametrize(
    "cli",
    [[1], {"seconds_per_epoch": "x" * 100}, {"test_score": "0.9"}, {"features": "abc"},
     {"n_train": -1}, {"standardized": 1}, {"target": 5}],
)
def test_save_refuses_command_line_metadata_of_the_wrong_type(tmp_path, tiny_model, cli):
    with pytest.raises(ValueError, match="cli"):
        blasprop.save(tiny_model, tmp_path / "m.bpm", metadata={"cli": cli})
    assert list(tmp_path.iterdir()) == []


def test_load_metadata_does_not_read_the_weights(tmp_path, small_model_file):
    """It checks the header as load does, but a damaged weight is only load's concern."""
    blob = bytearray(small_model_file)
    blob[-1] ^= 0xFF
    path = tmp_path / "m.bpm"
    path.write_bytes(bytes(blob))
    assert blasprop.load_metadata(path) is None
    with pytest.raises(ValueError, match="checksum"):
        blasprop.load(path)


# ---------------------------------------------------------------------------
# hostile files: refused quickly, within a memory bound
#
# Each file is a few MB to ~15 MB.  They are loaded in one subprocess with
# its address space limited (so an amplification shows as MemoryError or a
# death, not as a swapping machine), and each load's resident peak (VmHWM,
# reset through /proc/self/clear_refs) and time are reported back.

HOSTILE_ADDRESS_SPACE = 3 << 29  # 1.5 GiB; importing blasprop and scikit-learn takes ~0.5
HOSTILE_MAX_RESIDENT = 64 << 20
HOSTILE_MAX_SECONDS = 3.0


def _with_arrays(header, arrays):
    """Fill header["arrays"] for (name, ndarray) pairs; return the packed file."""
    header["arrays"], data, offset = [], b"", 0
    for name, arr in arrays:
        arr = np.ascontiguousarray(arr)
        pad = -offset % 64
        data += b"\0" * pad
        offset += pad
        header["arrays"].append({"name": name, "dtype": arr.dtype.str, "shape": list(arr.shape),
                                 "offset": offset, "crc32": zlib.crc32(arr.tobytes())})
        data += arr.tobytes()
        offset += arr.nbytes
    return _pack(header, data)


def _many_classes(template, n_classes, dtype, values=None):
    """A multiclass model with one hidden unit and ``n_classes`` outputs."""
    header, _ = _unpack(template)
    header["params"]["hidden_layer_sizes"] = [1]
    header["attributes"].update(n_outputs_=n_classes, n_layers_=3, n_features_in_=4)
    header["classes"] = {"dtype": dtype,
                         "values": (values if values is not None
                                    else [str(i) for i in range(n_classes)])}
    header["params"]["class_weight"] = None
    header["param_types"].pop("class_weight", None)
    f8 = lambda *shape: np.zeros(shape, dtype="<f8")  # noqa: E731
    return _with_arrays(header, [("coefs_.0", f8(4, 1)), ("intercepts_.0", f8(1)),
                                 ("coefs_.1", f8(1, n_classes)), ("intercepts_.1", f8(n_classes)),
                                 ("loss_curve_", f8(2))])


def _with_raw_json(template, key, value_json):
    """The template with header[key] replaced by the given JSON text."""
    header, data = _unpack(template)
    header[key] = "@@VALUE@@"
    raw = json.dumps(header).encode().replace(b'"@@VALUE@@"', value_json)
    return _pack(None, data, json_bytes=raw)


def _with_metadata_json(template, metadata_json):
    return _with_raw_json(template, "metadata", metadata_json)


def _with_first_shape(blob, shape):
    header, data = _unpack(blob)
    header["arrays"][0]["shape"] = shape
    return _pack(header, data)


def _hostile_files(template):
    mb = 2**20
    return {
        "metadata-5M-empty-objects": _with_metadata_json(
            template, b"[" + b"{}," * (5 * mb) + b"{}]"),
        "metadata-2M-nested-lists": _with_metadata_json(
            template, b"[" + b",".join([b"[[[[[[[[[[1]]]]]]]]]]"] * (mb // 2)) + b"]"),
        "metadata-3M-short-strings": _with_metadata_json(
            template, b"[" + b'"a",' * (3 * mb) + b'"a"]'),
        "metadata-3M-floats": _with_metadata_json(template, b"[" + b"1.5," * (3 * mb) + b"1.5]"),
        "metadata-huge-ints": _with_metadata_json(
            template, b"[" + b",".join([b"9" * 4000] * 3000) + b"]"),
        "metadata-deep-100k": _with_metadata_json(template, b"[" * 100_000 + b"]" * 100_000),
        "feature-names-3M": _with_raw_json(
            template, "feature_names_in", b"[" + b'"f",' * (3 * mb) + b'"f"]'),
        "feature-names-500k-for-4-features": _with_raw_json(
            template, "feature_names_in", b"[" + b'"feature",' * (mb // 2) + b'"f"]'),
        "labels-U1000-x-200k-classes": _many_classes(template, 200_000, "<U1000"),
        "labels-U70-x-200k-classes": _many_classes(template, 200_000, "<U70"),
        "labels-one-long-x-200k-classes": _many_classes(
            template, 200_000, f"<U{mb}", ["x" * mb] + [str(i) for i in range(1, 200_000)]),
        "labels-more-than-outputs": _many_classes(
            template, 3, "<U6", [str(i) for i in range(400_000)]),
        "shape-2**31-squared": _with_first_shape(
            _many_classes(template, 200_000, "<U6"), [2**31, 2**31]),
        "shape-negative": _with_first_shape(_many_classes(template, 200_000, "<U6"), [-4, -1]),
        "shape-2**64": _with_first_shape(_many_classes(template, 200_000, "<U6"), [2**64, 1]),
        "truncated-arrays": _many_classes(template, 200_000, "<U6")[:-800_000],
        "metadata-strings-of-brackets": _with_metadata_json(
            template, b"[" + b'"[[[[{{{{,,,,::::",' * (mb // 4) + b'""]'),
        "cli-seconds-string": _with_metadata_json(
            template, json.dumps({"cli": {"seconds_per_epoch": "x" * (mb - 16)}}).encode()),
        "cli-score-string": _with_metadata_json(
            template, json.dumps({"cli": {"test_score": "x" * (mb - 16)}}).encode()),
    }


_HOSTILE_SCRIPT = (
    """
import json, sys, time, contextlib, io
import blasprop
from blasprop import cli
# import what a load builds (scikit-learn, the estimators) before anything is
# measured: `import blasprop` is lazy, and the first load would pay for it
from blasprop import MLPClassifier, MLPRegressor, load, load_metadata  # noqa: F401

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False

for name, path in json.loads(sys.argv[1]).items():
    for how in ("load", "load_metadata", "info"):
        print(json.dumps({"case": name, "how": how, "start": True}), flush=True)
        can_reset = reset_peak()
        before = status("VmRSS")
        t = time.perf_counter()
        err = io.StringIO()
        try:
            if how == "info":
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    code = cli.main(["info", path])
                outcome = ["exit", code]
            else:
                getattr(blasprop, how)(path)
                outcome = None
        except BaseException as exc:
            outcome = [type(exc).__name__, str(exc)[-300:]]
        seconds = time.perf_counter() - t
        peak = status("VmHWM") - before if can_reset else None
        print(json.dumps({"case": name, "how": how, "outcome": outcome,"""
    # one line of the script, split here only to keep this file's lines short
    """ "stderr": err.getvalue()[-300:],
                          "resident": peak, "seconds": seconds}), flush=True)
"""
)


@pytest.fixture(scope="module")
def hostile_results(tmp_path_factory, small_model_file):
    import resource
    import subprocess
    import sys

    directory = tmp_path_factory.mktemp("hostile")
    paths = {}
    for name, blob in _hostile_files(small_model_file).items():
        paths[name] = str(directory / f"{name}.bpm")
        with open(paths[name], "wb") as f:
            f.write(blob)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (HOSTILE_ADDRESS_SPACE, HOSTILE_ADDRESS_SPACE))

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _HOSTILE_SCRIPT, json.dumps(paths)],
                          capture_output=True, text=True, timeout=600, preexec_fn=limit, env=env)
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    sizes = {name: os.path.getsize(p) for name, p in paths.items()}
    return proc, records, sizes


@pytest.mark.slow  # one subprocess for all cases: ~7 s with building the files
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
@pytest.mark.parametrize("case", [
    "metadata-5M-empty-objects", "metadata-2M-nested-lists", "metadata-3M-short-strings",
    "metadata-3M-floats", "metadata-huge-ints", "metadata-deep-100k", "feature-names-3M",
    "feature-names-500k-for-4-features", "labels-U1000-x-200k-classes", "labels-U70-x-200k-classes",
    "labels-one-long-x-200k-classes", "labels-more-than-outputs", "shape-2**31-squared",
    "shape-negative", "shape-2**64", "truncated-arrays", "cli-seconds-string", "cli-score-string",
])
@pytest.mark.parametrize("how", ["load", "load_metadata", "info"])
def test_hostile_file_is_refused_quickly_in_little_memory(hostile_results, case, how):
    proc, records, sizes = hostile_results
    started = [r for r in records if r.get("start")]
    assert proc.returncode == 0, (
        f"the subprocess died (status {proc.returncode}) in "
        f"{started[-1] if started else 'startup'}\n{proc.stderr[-2000:]}"
    )
    result = next(r for r in records if r["case"] == case and r["how"] == how and "start" not in r)
    if how == "info":
        assert result["outcome"] == ["exit", 2], result
        assert (result["stderr"].startswith("blasprop: error: ")
                and "not a valid blasprop model" in result["stderr"])
    else:
        assert result["outcome"][0] == "ValueError", result
        assert "not a valid blasprop model file" in result["outcome"][1]
    assert result["seconds"] < HOSTILE_MAX_SECONDS, result
    if result["resident"] is not None:
        assert result["resident"] < HOSTILE_MAX_RESIDENT, result


@pytest.mark.slow  # shares the subprocess above
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
@pytest.mark.parametrize("how", ["load", "load_metadata", "info"])
def test_valid_file_full_of_punctuation_in_strings_is_accepted(hostile_results, how):
    """The pre-parse counts include bytes inside strings; a file over the
    limits only because of them must still load (the strings are blanked
    out and the counts taken again), in memory proportional to its size."""
    proc, records, sizes = hostile_results
    assert proc.returncode == 0, proc.stderr[-2000:]
    case = "metadata-strings-of-brackets"
    result = next(r for r in records if r["case"] == case and r["how"] == how and "start" not in r)
    assert result["outcome"] == (["exit", 0] if how == "info" else None), result
    assert result["seconds"] < HOSTILE_MAX_SECONDS, result
    if result["resident"] is not None:
        assert result["resident"] < 12 * sizes[case], result


def test_concurrent_saves_and_loads_of_one_path(tmp_path):
    """Threads saving different models to one path: every load sees one
    whole model, the last rename wins, and no temporary file is left."""
    import threading

    X = _X(40, n_features=3)
    models = [MLPRegressor(hidden_layer_sizes=(h,), max_iter=2, random_state=0).fit(X, X[:, 0])
              for h in (2, 5, 9, 17)]
    path = tmp_path / "m.bpm"
    blasprop.save(models[0], path)
    errors, seen = [], set()

    def saver(est):
        try:
            for _ in range(10):
                blasprop.save(est, path)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def loader():
        try:
            for _ in range(20):
                seen.add(blasprop.load(path).coefs_[0].shape[1])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=saver, args=(m,)) for m in models]
    threads += [threading.Thread(target=loader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert seen <= {2, 5, 9, 17} and seen
    assert blasprop.load(path).coefs_[0].shape[1] in {2, 5, 9, 17}
    assert [p.name for p in tmp_path.iterdir()] == ["m.bpm"]
