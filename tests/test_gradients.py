"""The test that must never be skipped: backpropagation against central
finite differences, for every activation, loss, task and dtype."""

import numpy as np
import pytest
import scipy.sparse as sp

from blasprop import MLPClassifier, MLPRegressor, check_gradients

from ._reference import HIDDEN

# float64 backprop agrees with float64 differences to ~1e-8; a float32
# backprop carries float32 rounding (~1e-7 relative per operation).
TOL = {np.float64: 1e-6, np.float32: 2e-3}


def _data(task, dtype, n=30, n_features=5, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, n_features).astype(dtype)
    if task == "binary":
        y = rng.randint(2, size=n)
    elif task == "multiclass":
        y = rng.randint(4, size=n)
    elif task == "multilabel":
        y = rng.randint(2, size=(n, 3))
        y[0] = [0, 1, 1]  # every label seen both ways
        y[1] = [1, 0, 0]
    elif task == "poisson":
        y = rng.poisson(2.0, size=(n, 2)).astype(float)
    else:
        y = rng.randn(n, 2)
    return X, y


def _estimator(task, activation, loss=None):
    kw = dict(hidden_layer_sizes=(6, 4), activation=activation, random_state=0,
              alpha=0.1)
    if task in ("binary", "multiclass", "multilabel"):
        return MLPClassifier(**kw)
    return MLPRegressor(loss=loss or task, **kw)


def _assert_close(errors, dtype):
    assert errors.shape == (3,)
    assert np.all(errors < TOL[dtype]), errors


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", sorted(HIDDEN))
@pytest.mark.parametrize(
    "task", ["binary", "multiclass", "multilabel", "squared_error", "poisson",
             "huber", "absolute_error"],
)
def test_gradients_every_activation_loss_task(task, activation, dtype):
    X, y = _data("poisson" if task == "poisson" else task, dtype)
    est = _estimator(task, activation)
    if task == "huber":
        est.set_params(huber_delta=0.5)  # both branches of the loss are used
    _assert_close(check_gradients(est, X, y), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", sorted(HIDDEN))
@pytest.mark.parametrize(
    "task", ["binary", "multiclass", "multilabel", "squared_error", "poisson",
             "huber", "absolute_error"],
)
def test_gradients_of_the_blocked_path(task, activation, dtype):
    """With n_jobs set, the objective runs in row blocks shared by threads
    (70 rows: 4 blocks) and the gradient in slices: checked the same way."""
    X, y = _data("poisson" if task == "poisson" else task, dtype, n=70)
    est = _estimator(task, activation).set_params(n_jobs=2)
    if task == "huber":
        est.set_params(huber_delta=0.5)
    _assert_close(check_gradients(est, X, y), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_jobs", [None, 2])
def test_gradients_of_the_blocked_path_sparse_dropout_weights(n_jobs, dtype):
    X, y = _data("multiclass", dtype, n=70)
    X[np.abs(X) < 0.7] = 0
    sw = np.random.RandomState(1).rand(X.shape[0]) * 3
    est = MLPClassifier(hidden_layer_sizes=(6, 5), activation="silu", dropout=0.3,
                        random_state=0, alpha=0.01, n_jobs=n_jobs)
    _assert_close(check_gradients(est, sp.csr_matrix(X), y, sample_weight=sw), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gradients_with_sample_weight_and_sparse_input(dtype):
    X, y = _data("multiclass", dtype)
    X[np.abs(X) < 0.7] = 0
    sw = np.random.RandomState(1).rand(X.shape[0]) * 3
    est = _estimator("multiclass", "tanh")
    dense = check_gradients(est, X, y, sample_weight=sw)
    sparse = check_gradients(est, sp.csr_matrix(X), y, sample_weight=sw)
    _assert_close(dense, dtype)
    _assert_close(sparse, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gradients_per_layer_activations_and_class_weight(dtype):
    X, y = _data("multiclass", dtype)
    est = MLPClassifier(hidden_layer_sizes=(6, 5, 4),
                        activation=["gelu", "elu", "logistic"],
                        class_weight={0: 3.0, 1: 0.5}, random_state=0, alpha=0.01)
    errors = check_gradients(est, X, y)
    assert errors.shape == (4,)
    assert np.all(errors < TOL[dtype]), errors


def test_gradient_check_detects_a_wrong_gradient(monkeypatch):
    """The checker must fail when backprop is wrong: corrupt the gradient the
    compiled objective returns and expect a large error."""
    from blasprop import _core

    real = _core.objective

    def wrong(*args):
        loss = real(*args)
        grads = args[6]
        grads[0] *= 1.5
        return loss

    X, y = _data("binary", np.float64)
    est = _estimator("binary", "tanh")
    monkeypatch.setattr(_core, "objective", wrong)
    errors = check_gradients(est, X, y, max_checks=10_000)
    assert errors[0] > 1e-3


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("dropout", [0.3, [0.5, 0.0]])
def test_gradients_with_dropout_fixed_mask(dropout, dtype):
    X, y = _data("multiclass", dtype)
    est = MLPClassifier(hidden_layer_sizes=(6, 4), activation="silu",
                        dropout=dropout, random_state=0, alpha=0.01)
    _assert_close(check_gradients(est, X, y), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_threads", [0, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_objective_sums_over_a_split_of_the_rows_finish_to_the_objective(
        dtype, n_threads, weighted):
    """``objective_sums`` (what a data-parallel L-BFGS adds up) over three
    uneven pieces of the rows, summed and finished by hand as the docstring
    says, equals ``objective`` over all rows: loss and gradient."""
    from blasprop import _core

    X, y = _data("multiclass", dtype, n=240)
    est = MLPClassifier(hidden_layer_sizes=(6,), activation="tanh", max_iter=1,
                        random_state=0).fit(X, y)
    Y = np.ascontiguousarray(est._label_binarizer.transform(y), dtype=dtype)
    rng = np.random.RandomState(1)
    sw = (rng.uniform(0.5, 2.0, X.shape[0]).astype(dtype) if weighted
          else np.empty(0, dtype))
    net = est._network(X.shape[0], dtype)
    params = (rng.normal(scale=0.5, size=net.layout.n_params)).astype(dtype)
    alpha = 0.3

    def workspace(n):
        net_n = est._network(n, dtype)
        return net_n, net_n.workspace(dtype, False, blocked=n_threads > 0)

    net_all, ws = workspace(X.shape[0])
    g_all = np.empty_like(params)
    loss_all = _core.objective(net_all.layout, ws, _core.Input(X), Y, sw, params, g_all,
                               alpha, -1, n_threads)

    loss_sum, weight, g_sum = 0.0, 0.0, np.zeros(params.shape[0], np.float64)
    for a, b in ((0, 17), (17, 150), (150, X.shape[0])):
        net_p, ws_p = workspace(b - a)
        g = np.empty_like(params)
        part_loss, part_weight = _core.objective_sums(
            net_p.layout, ws_p, _core.Input(np.ascontiguousarray(X[a:b])),
            np.ascontiguousarray(Y[a:b]), sw[a:b] if weighted else sw, params, g,
            n_threads)
        loss_sum += part_loss
        weight += part_weight
        g_sum += g
    expected_weight = float(np.sum(sw, dtype=np.float64)) if weighted else X.shape[0]
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    assert weight == pytest.approx(expected_weight, rel=rtol)
    n_coef = net.layout.n_coef
    w = params[:n_coef].astype(np.float64)
    loss = loss_sum / weight + 0.5 * alpha * (w @ w) / weight
    g_sum[:n_coef] += alpha * w
    g_sum /= weight
    assert loss == pytest.approx(loss_all, rel=rtol)
    np.testing.assert_allclose(g_sum, g_all, rtol=rtol,
                               atol=rtol * np.abs(g_all).max())


def test_gradient_check_subset_for_large_networks():
    X, y = _data("multiclass", np.float64, n=20, n_features=40)
    est = MLPClassifier(hidden_layer_sizes=(60,), random_state=0)
    errors = check_gradients(est, X, y, max_checks=200)
    assert errors.shape == (2,) and np.all(errors < 1e-6)


# --------------------------------------------------------------------------
# Targets that do not fit a fitted model, and estimators that are not ours
# --------------------------------------------------------------------------

N = 150


def _fitted_case(kind, dtype=np.float64, sklearn=False):
    """(fitted estimator, X, matching y, mismatched ys) for one kind of model."""
    import sklearn.neural_network as sk_nn

    rng = np.random.RandomState(0)
    X = rng.randn(N, 5).astype(dtype)
    labels3 = rng.randint(3, size=N)
    mismatched = [rng.randn(N)]  # continuous targets are never labels
    if kind == "binary":
        y = rng.randint(2, size=N)
        mismatched += [labels3, np.eye(2, dtype=int)[y]]
    elif kind == "multiclass3":
        y = labels3
        mismatched += [np.where(labels3 == 2, 5, labels3), np.eye(3, dtype=int)[y]]
    elif kind == "multiclass50":
        y = np.arange(N) % 50
        mismatched += [rng.randint(2, size=N) + 50, np.eye(50, dtype=int)[y]]
    elif kind == "multilabel":
        y = rng.randint(2, size=(N, 4))
        mismatched += [y[:, :3], y[:, :2].sum(axis=1), np.hstack([y, y[:, :1]])]
    elif kind == "string_labels":
        y = np.array(["ant", "bee", "cat"], dtype=object)[labels3]
        mismatched += [labels3, np.array(["ant", "bee", "dog"], dtype=object)[labels3]]
    elif kind == "regression1":
        y = rng.randn(N)
        mismatched += [rng.randn(N, 3), rng.randn(N, 2)]
    else:
        y = rng.randn(N, 3)
        mismatched += [rng.randn(N), rng.randn(N, 2), rng.randn(N, 4)]
    if kind.startswith("regression"):
        mismatched.pop(0)  # continuous is what a regressor takes
        cls = sk_nn.MLPRegressor if sklearn else MLPRegressor
    else:
        cls = sk_nn.MLPClassifier if sklearn else MLPClassifier
    est = cls(hidden_layer_sizes=(6,), activation="tanh", alpha=0.01, max_iter=5,
              random_state=0)
    with pytest.warns(Warning):  # ConvergenceWarning after 5 iterations
        est.fit(X, y)
    return est, X, y, mismatched


KINDS = ["binary", "multiclass3", "multiclass50", "multilabel", "string_labels",
         "regression1", "regression3"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", KINDS)
def test_fitted_model_with_matching_targets_is_checked(kind, dtype):
    est, X, y, _ = _fitted_case(kind, dtype)
    errors = check_gradients(est, X, y)
    assert errors.shape == (2,) and np.all(errors < TOL[dtype]), errors


@pytest.mark.parametrize("kind", KINDS)
def test_fitted_model_refuses_targets_that_do_not_fit_it(kind):
    """Labels outside classes_, labels of another kind (multilabel for a
    multiclass model, ...) or another number of outputs used to be binarized
    anew, into a target matrix of another width than the network's output:
    an out-of-bounds read, or large 'errors' as if backprop were wrong."""
    est, X, y, mismatched = _fitted_case(kind)
    before = [c.copy() for c in est.coefs_], getattr(est, "classes_", None)
    for bad in mismatched:
        with pytest.raises(ValueError, match="y "):
            check_gradients(est, X, bad)
    with pytest.raises(ValueError, match="features"):
        check_gradients(est, X[:, :4], y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        check_gradients(est, X, y[:-1])
    # the estimator given is untouched
    assert all(np.array_equal(a, b) for a, b in zip(est.coefs_, before[0]))
    if before[1] is not None:
        assert est.classes_ is before[1]


@pytest.mark.parametrize("kind", ["multiclass3", "multiclass50", "string_labels"])
def test_labels_that_are_a_subset_of_the_classes_fit(kind):
    """A multiclass model given only some of its classes (two of three, two of
    fifty) is checked on its own output layer."""
    est, X, y, _ = _fitted_case(kind)
    subset = np.where(y == est.classes_[2], est.classes_[0], y)
    subset = np.where(subset == est.classes_[1], est.classes_[0], subset)
    subset[:5] = est.classes_[1]
    assert len(np.unique(subset)) == len(est.classes_) - 1 or kind == "multiclass50"
    errors = check_gradients(est, X, subset)
    assert np.all(errors < TOL[np.float64]), errors


def test_inconsistent_fitted_estimator_is_refused():
    est, X, y, _ = _fitted_case("multiclass3")
    est.coefs_[-1] = est.coefs_[-1][:, :2]  # a third output with no weights
    with pytest.raises(ValueError, match="do not continue the network"):
        check_gradients(est, X, y)
    est, X, y, _ = _fitted_case("multiclass3")
    del est.classes_
    with pytest.raises(ValueError, match="no classes_"):
        check_gradients(est, X, y)
    est, X, y, _ = _fitted_case("regression3")
    est.n_outputs_ = 2
    with pytest.raises(ValueError, match="n_outputs_"):
        check_gradients(est, X, y[:, :2])


@pytest.mark.parametrize("kind", KINDS)
def test_scikit_learn_fitted_mlp_is_checked_at_its_weights(kind):
    """scikit-learn's fitted MLP becomes blasprop's estimator with the same
    parameters and weights: the same predictions, and its gradients check."""
    from blasprop._gradcheck import _from_sklearn, _sklearn_mlp_class

    sk_est, X, y, mismatched = _fitted_case(kind, sklearn=True)
    errors = check_gradients(sk_est, X, y)
    assert errors.shape == (2,) and np.all(errors < TOL[np.float64]), errors
    ours = _from_sklearn(sk_est, _sklearn_mlp_class(sk_est))
    assert type(ours) is (MLPClassifier if kind[0] != "r" else MLPRegressor)
    assert ours.get_params() == {**ours.get_params(), **sk_est.get_params()}
    np.testing.assert_allclose(ours.predict(X) if kind[0] == "r" else ours.predict_proba(X),
                               sk_est.predict(X) if kind[0] == "r" else sk_est.predict_proba(X),
                               rtol=1e-12, atol=1e-14)
    if kind[0] != "r":
        np.testing.assert_array_equal(ours.predict(X), sk_est.predict(X))
    for bad in mismatched:
        with pytest.raises(ValueError, match="y "):
            check_gradients(sk_est, X, bad)


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_scikit_learn_unfitted_mlp_is_fitted_as_blasprop_for_the_check(task):
    import sklearn.neural_network as sk_nn

    X, y = _data(task, np.float64)
    cls = sk_nn.MLPClassifier if task == "multiclass" else sk_nn.MLPRegressor
    sk_est = cls(hidden_layer_sizes=(6, 4), activation="logistic", alpha=0.1,
                 random_state=0)
    _assert_close(check_gradients(sk_est, X, y), np.float64)
    assert not hasattr(sk_est, "coefs_")


@pytest.mark.parametrize("estimator", [
    pytest.param(None, id="None"),
    pytest.param(MLPClassifier, id="the-class"),
    pytest.param("MLPClassifier", id="its-name"),
    pytest.param(object(), id="object"),
    pytest.param("logistic", id="LogisticRegression"),
    pytest.param("ridge", id="Ridge"),
])
def test_anything_else_is_refused_with_a_type_error(estimator):
    from sklearn.linear_model import LogisticRegression, Ridge

    X, y = _data("binary", np.float64)
    if estimator == "logistic":
        estimator = LogisticRegression().fit(X, y)
    elif estimator == "ridge":
        estimator = Ridge()
    with pytest.raises(TypeError, match="blasprop MLPClassifier or MLPRegressor"):
        check_gradients(estimator, X, y)
