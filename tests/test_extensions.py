"""Options blasprop adds to scikit-learn's MLP."""

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.metrics import recall_score
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.utils.class_weight import compute_sample_weight

from blasprop import MLPClassifier, MLPRegressor


@pytest.fixture(scope="module")
def imbalanced():
    X, y = make_classification(n_samples=600, n_features=8, weights=[0.93],
                               class_sep=0.6, random_state=0)
    return X, y


def test_class_weight_balanced_raises_minority_recall(imbalanced):
    X, y = imbalanced
    kw = dict(hidden_layer_sizes=(16,), max_iter=60, random_state=0)
    plain = MLPClassifier(**kw).fit(X, y)
    balanced = MLPClassifier(class_weight="balanced", **kw).fit(X, y)
    r_plain = recall_score(y, plain.predict(X), pos_label=1)
    r_bal = recall_score(y, balanced.predict(X), pos_label=1)
    assert r_bal > r_plain + 0.1, (r_plain, r_bal)


@pytest.mark.parametrize("class_weight", ["balanced", {0: 1.0, 1: 7.5}])
def test_class_weight_equals_sample_weight(imbalanced, class_weight):
    X, y = imbalanced
    sw_user = np.random.RandomState(0).rand(len(y)) + 0.5
    kw = dict(hidden_layer_sizes=(8,), max_iter=15, random_state=0, solver="sgd")
    a = MLPClassifier(class_weight=class_weight, **kw).fit(X, y, sample_weight=sw_user)
    sw = compute_sample_weight(class_weight, y) * sw_user
    b = MLPClassifier(**kw).fit(X, y, sample_weight=sw)
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(ca, cb, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-10)


def test_class_weight_balanced_refused_in_partial_fit(imbalanced):
    X, y = imbalanced
    with pytest.raises(ValueError, match="balanced"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1])


def test_defaults_of_new_options_leave_sklearn_results(imbalanced):
    X, y = imbalanced
    kw = dict(hidden_layer_sizes=(8,), max_iter=10, random_state=0)
    ours = MLPClassifier(class_weight=None, callbacks=None, **kw).fit(X, y)
    ref = SkMLPClassifier(**kw).fit(X, y)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)


def test_adamw_decays_weights_decoupled():
    rng = np.random.RandomState(0)
    X, y = rng.randn(200, 5), rng.randn(200)
    kw = dict(hidden_layer_sizes=(10,), max_iter=30, random_state=0, tol=0)
    no_decay = MLPRegressor(solver="adamw", alpha=0.0, **kw).fit(X, y)
    adam = MLPRegressor(solver="adam", alpha=0.0, **kw).fit(X, y)
    # with alpha=0, AdamW is Adam
    np.testing.assert_allclose(no_decay.coefs_[0], adam.coefs_[0], rtol=1e-12)
    decayed = MLPRegressor(solver="adamw", alpha=5.0, **kw).fit(X, y)
    norm = lambda m: sum(np.sum(c**2) for c in m.coefs_)  # noqa: E731
    assert norm(decayed) < 0.8 * norm(no_decay)
    # the decay is not part of the reported loss
    l2 = MLPRegressor(solver="adam", alpha=5.0, **kw).fit(X, y)
    assert decayed.loss_ < l2.loss_


def test_huber_is_robust_to_outliers():
    rng = np.random.RandomState(0)
    X = rng.randn(300, 1)
    y = 2 * X.ravel()
    y[:15] += 60  # gross outliers
    kw = dict(hidden_layer_sizes=(5,), activation="identity", max_iter=300,
              random_state=0, learning_rate_init=0.01)
    sq = MLPRegressor(**kw).fit(X, y)
    hub = MLPRegressor(loss="huber", **kw).fit(X, y)
    clean = np.linspace(-2, 2, 50).reshape(-1, 1)
    err = lambda m: np.abs(m.predict(clean) - 2 * clean.ravel()).mean()  # noqa: E731
    assert err(hub) < 0.5 * err(sq)


def test_callbacks_see_every_epoch_and_can_stop():
    rng = np.random.RandomState(0)
    X, y = rng.randn(100, 4), rng.randint(2, size=100)
    seen = []

    def record(est, info):
        seen.append(info)
        return info["epoch"] == 4

    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=50, tol=0, random_state=0,
                        early_stopping=True, callbacks=[record]).fit(X, y)
    assert [i["epoch"] for i in seen] == [1, 2, 3, 4]
    assert clf.n_iter_ == 4
    assert seen[-1]["loss"] == clf.loss_curve_[-1]
    assert seen[-1]["validation_score"] == clf.validation_scores_[-1]
    assert all(i["max_iter"] == 50 and i["elapsed"] >= 0 for i in seen)


def test_invalid_new_options_are_refused():
    X, y = np.random.RandomState(0).randn(20, 3), np.arange(20) % 2
    with pytest.raises(ValueError, match="hidden layers"):
        MLPClassifier(hidden_layer_sizes=(3, 3), activation=["relu"]).fit(X, y)
    with pytest.raises(ValueError, match="Unknown activation"):
        MLPClassifier(hidden_layer_sizes=(3,), activation=["swish"]).fit(X, y)
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError):
        MLPRegressor(loss="hinge").fit(X, y)
    with pytest.raises(InvalidParameterError):
        MLPRegressor(huber_delta=0).fit(X, y)


SIGINT_SCRIPT = textwrap.dedent("""
    import sys, warnings, numpy as np
    from blasprop import MLPClassifier
    rng = np.random.RandomState(0)
    X = rng.randn(20000, 50)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=10000, tol=0,
                        n_iter_no_change=10**9, batch_size=32, random_state=0)
    print("fitting", flush=True)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        clf.fit(X, y)
    print("messages:", [str(m.message) for m in w])
    print("n_iter:", clf.n_iter_)
    print("accuracy:", (clf.predict(X) == y).mean())
    print("finite:", all(np.isfinite(c).all() for c in clf.coefs_))
""")


def test_sigint_stops_fit_and_leaves_a_usable_model():
    proc = subprocess.Popen([sys.executable, "-c", SIGINT_SCRIPT],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "fitting"
        time.sleep(1.5)
        proc.send_signal(subprocess.signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Training interrupted by user." in out
    n_iter = int(out.split("n_iter:")[1].split()[0])
    assert n_iter < 10000
    assert float(out.split("accuracy:")[1].split()[0]) > 0.75  # chance is 0.5
    assert "finite: True" in out


def test_dropout_is_reproducible_and_off_at_predict():
    rng = np.random.RandomState(0)
    X, y = rng.randn(300, 6), rng.randint(3, size=300)
    kw = dict(hidden_layer_sizes=(20, 10), max_iter=5, random_state=0)
    a = MLPClassifier(dropout=0.3, **kw).fit(X, y)
    b = MLPClassifier(dropout=0.3, **kw).fit(X, y)
    for ca, cb in zip(a.coefs_, b.coefs_):
        np.testing.assert_array_equal(ca, cb)
    # dropout changes training ...
    plain = MLPClassifier(**kw).fit(X, y)
    assert not np.allclose(plain.coefs_[0], a.coefs_[0])
    # ... but never prediction: the output is the plain forward pass
    from ._reference import forward

    np.testing.assert_allclose(a.predict_proba(X), forward(a, X), rtol=1e-12)
    np.testing.assert_array_equal(a.predict_proba(X), a.predict_proba(X))


def test_dropout_rate_zero_in_a_list_keeps_sklearn_stream():
    rng = np.random.RandomState(0)
    X, y = rng.randn(120, 5), rng.randint(2, size=120)
    kw = dict(hidden_layer_sizes=(8, 4), max_iter=8, random_state=0)
    ref = SkMLPClassifier(**kw).fit(X, y)
    ours = MLPClassifier(dropout=[0.0, 0.0], **kw).fit(X, y)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)


def test_dropout_refused_with_lbfgs_and_bad_rates():
    X, y = np.random.RandomState(0).randn(20, 3), np.arange(20) % 2
    with pytest.raises(ValueError, match="lbfgs"):
        MLPClassifier(solver="lbfgs", dropout=0.2).fit(X, y)
    with pytest.raises(ValueError, match="one per hidden layer"):
        MLPClassifier(hidden_layer_sizes=(3, 3), dropout=[0.1]).fit(X, y)
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError):
        MLPClassifier(dropout=1.0).fit(X, y)


def test_validation_loss_curve_tracks_validation_set():
    rng = np.random.RandomState(0)
    X = rng.randn(400, 5)
    y = X @ rng.randn(5) + 0.1 * rng.randn(400)
    reg = MLPRegressor(hidden_layer_sizes=(10,), early_stopping=True, max_iter=30,
                       random_state=0, tol=0, n_iter_no_change=100).fit(X, y)
    assert len(reg.validation_loss_curve_) == len(reg.validation_scores_) == reg.n_iter_
    # recompute the last epoch's validation loss from the split sklearn makes
    from sklearn.model_selection import train_test_split

    rng2 = np.random.RandomState(0)
    rng2.uniform(size=5 * 10 + 10 + 10 * 1 + 1)  # the initial weights' draws
    _, val = train_test_split(np.arange(400), random_state=rng2, test_size=0.1)
    assert reg.validation_loss_curve_[-1] < reg.validation_loss_curve_[0]
    assert MLPRegressor(max_iter=2).fit(X, y).validation_loss_curve_ is None
    # the restored model is the one with the best validation score (r2), i.e.
    # the smallest validation loss; its half mean squared error is that loss
    half_mse = 0.5 * np.mean((reg.predict(X[val]) - y[val]) ** 2)
    np.testing.assert_allclose(half_mse, min(reg.validation_loss_curve_), rtol=1e-9)


PROGRESS_SCRIPT = textwrap.dedent("""
    import numpy as np
    from blasprop import MLPClassifier
    rng = np.random.RandomState(0)
    X, y = rng.randn(200, 4), rng.randint(2, size=200)
    MLPClassifier(hidden_layer_sizes=(5,), max_iter=7, verbose=True, tol=0,
                  early_stopping=True, random_state=0).fit(X, y)
""")


def test_verbose_progress_bar_on_a_terminal():
    pty = pytest.importorskip("pty")
    import os

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-W", "ignore", "-c", PROGRESS_SCRIPT],
                            stdout=slave, stderr=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    out = b"".join(chunks).decode()
    assert proc.returncode == 0
    assert out.count("\r") >= 7  # one redraw per epoch
    assert "epoch 7/7" in out and "ETA" in out and "val " in out
    assert "Iteration 1" not in out  # the bar replaces sklearn's lines on a TTY


def test_verbose_plain_lines_when_not_a_terminal(capsys):
    rng = np.random.RandomState(0)
    X, y = rng.randn(100, 4), rng.randint(2, size=100)
    MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, verbose=True, tol=0,
                  early_stopping=True, random_state=0).fit(X, y)
    out = capsys.readouterr().out
    assert out.count("Iteration ") == 3 and out.count("Validation score: ") == 3
    assert "\r" not in out


def test_sklearn_callback_api_per_epoch_and_stop():
    callback = pytest.importorskip("sklearn.callback")
    rng = np.random.RandomState(0)
    X, y = rng.randn(150, 4), rng.randint(3, size=150)

    class StopAfterThree:
        def __init__(self):
            self.events = []

        def setup(self, estimator, context):
            self.events.append("setup")

        def teardown(self, estimator, context):
            self.events.append("teardown")

        def on_fit_task_begin(self, estimator, context):
            self.events.append(("begin", context.task_name))

        def on_fit_task_end(self, estimator, context):
            self.events.append(("end", context.task_name))
            return self.events.count(("end", "epoch")) >= 3

    cb = StopAfterThree()
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=50, tol=0, random_state=0)
    clf.set_callbacks(cb).fit(X, y)
    assert clf.n_iter_ == 3
    assert cb.events == (["setup", ("begin", "fit")]
                         + [("begin", "epoch"), ("end", "epoch")] * 3
                         + [("end", "fit"), "teardown"])

    # sklearn's ScoringMonitor evaluates the model as it is after each epoch
    monitor = callback.ScoringMonitor(scoring="accuracy")
    MLPClassifier(hidden_layer_sizes=(8,), max_iter=4, random_state=0,
                  learning_rate_init=0.05).set_callbacks(monitor).fit(X, y)
    epochs = [r for r in monitor.get_logs().data if r["task_name"] == "epoch"]
    assert [r["task_id"] for r in epochs] == [0, 1, 2, 3]
    for r in epochs:
        k = r["task_id"] + 1
        ref = MLPClassifier(hidden_layer_sizes=(8,), max_iter=k, random_state=0,
                            learning_rate_init=0.05).fit(X, y)
        assert r["accuracy"] == ref.score(X, y)
