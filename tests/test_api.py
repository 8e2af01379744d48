"""Drop-in API parity with scikit-learn's MLPClassifier / MLPRegressor.

Signatures, public methods, tags, cloning, pickling, use inside Pipeline and
GridSearchCV, and the exceptions and warnings raised on bad input. Messages are
never hard-coded here: each scenario runs on scikit-learn and on blasprop in
the same test and the outcomes (exception type and message, warning categories
and messages) must be identical.
"""

import inspect
import pickle
import re
import warnings
from types import SimpleNamespace

import joblib
import numpy as np
import pytest
import sklearn.neural_network as sk_nn
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import get_tags
from sklearn.utils._param_validation import InvalidParameterError

import blasprop

SK = SimpleNamespace(MLPClassifier=sk_nn.MLPClassifier, MLPRegressor=sk_nn.MLPRegressor)
BP = SimpleNamespace(
    MLPClassifier=blasprop.MLPClassifier, MLPRegressor=blasprop.MLPRegressor
)
KINDS = ["MLPClassifier", "MLPRegressor"]
SMALL = dict(hidden_layer_sizes=(5,), max_iter=10, random_state=0)


# --------------------------------------------------------------------------
# running one scenario on both libraries
# --------------------------------------------------------------------------


def outcome(scenario, ns):
    """Run ``scenario(ns)``; return (exception or None, warnings, stdout-free).

    Exceptions are summarised as (type, message); warnings as a list of
    (category, message). numpy's floating-point RuntimeWarnings (overflow in
    sklearn's Python arithmetic) are an implementation detail and ignored.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            scenario(ns)
            error = None
        except Exception as exc:  # noqa: BLE001 - compared below
            error = (type(exc), str(exc))
    return error, [(w.category, str(w.message)) for w in caught]


_INVALID_PARAM = re.compile(
    r"^(The '\w+' parameter of \w+ must be )(.*)(\. Got .* instead\.)$", re.S
)


def _constraint_parts(description):
    """Allowed options and constraint phrases of an InvalidParameterError."""
    options = {
        option.strip()
        for group in re.findall(r"\{([^}]*)\}", description)
        for option in group.split(",")
    }
    phrases = re.split(r", | or ", re.sub(r"\{[^}]*\}", "{}", description))
    return options, {p.strip() for p in phrases}


def _same_error(bp_error, sk_error):
    """Equal type and message. The one tolerance: blasprop may accept more
    values for a parameter than sklearn (documented extensions such as more
    activations or solvers), so an InvalidParameterError may list a superset of
    sklearn's allowed values; the parameter, the class and the rejected value
    must still be reported identically."""
    if bp_error == sk_error:
        return True
    if bp_error is None or sk_error is None or bp_error[0] is not sk_error[0]:
        return False
    if sk_error[0] is not InvalidParameterError:
        return False
    bp_match, sk_match = _INVALID_PARAM.match(bp_error[1]), _INVALID_PARAM.match(
        sk_error[1]
    )
    if not (bp_match and sk_match):
        return False
    if (bp_match[1], bp_match[3]) != (sk_match[1], sk_match[3]):
        return False
    bp_options, bp_phrases = _constraint_parts(bp_match[2])
    sk_options, sk_phrases = _constraint_parts(sk_match[2])
    return sk_options <= bp_options and sk_phrases <= bp_phrases


def assert_same_outcome(scenario, expect_error=True, expect_warning=False):
    sk_error, sk_warnings = outcome(scenario, SK)
    bp_error, bp_warnings = outcome(scenario, BP)
    # the scenario must exercise what it is meant to (checked on sklearn)
    if expect_error:
        assert sk_error is not None, "sklearn raised nothing: the scenario is wrong"
    if expect_warning:
        assert sk_warnings, "sklearn warned nothing: the scenario is wrong"
    assert _same_error(bp_error, sk_error), (
        f"\nblasprop raised: {bp_error}\nsklearn raised:  {sk_error}"
    )
    assert bp_warnings == sk_warnings, (
        f"\nblasprop warned: {bp_warnings}\nsklearn warned:  {sk_warnings}"
    )


def _xy(n=40, n_features=5, n_classes=2, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, n_features))
    y = np.arange(n) % n_classes
    return X, y


def _xy_for(kind, **kw):
    X, y = _xy(**kw)
    return X, (y if kind == "MLPClassifier" else y.astype(float) + X[:, 0])


# --------------------------------------------------------------------------
# signatures, methods, tags
# --------------------------------------------------------------------------


def assert_signature_extends(bp_callable, sk_callable, what):
    """blasprop's parameters start with sklearn's (same names, order, kinds and
    defaults); any extra ones come after them, keyword-only, with defaults.
    Annotations are not compared (sklearn's generated methods annotate the
    class itself)."""
    sk_params = list(inspect.signature(sk_callable).parameters.values())
    bp_params = list(inspect.signature(bp_callable).parameters.values())
    n = len(sk_params)
    assert [p.name for p in bp_params[:n]] == [p.name for p in sk_params], what
    for b, s in zip(bp_params, sk_params):
        assert b.kind == s.kind, f"{what} {s.name}: {b.kind} != {s.kind}"
        assert type(b.default) is type(s.default) and b.default == s.default, (
            f"{what} {s.name}: default {b.default!r} != {s.default!r}"
        )
    for extra in bp_params[n:]:
        assert extra.kind is inspect.Parameter.KEYWORD_ONLY, f"{what} {extra.name}"
        assert extra.default is not inspect.Parameter.empty, f"{what} {extra.name}"


@pytest.mark.parametrize("kind", KINDS)
def test_init_signature_starts_with_sklearns(kind):
    assert_signature_extends(getattr(BP, kind), getattr(SK, kind), kind)


@pytest.mark.parametrize("kind", KINDS)
def test_default_params_and_repr(kind):
    sk_est, bp_est = getattr(SK, kind)(), getattr(BP, kind)()
    sk_params, bp_params = sk_est.get_params(), bp_est.get_params()
    assert {k: bp_params[k] for k in sk_params} == sk_params
    assert repr(bp_est) == repr(sk_est)
    assert repr(getattr(BP, kind)(alpha=0.5, solver="sgd")) == repr(
        getattr(SK, kind)(alpha=0.5, solver="sgd")
    )
    assert set(getattr(SK, kind)._parameter_constraints) <= set(
        getattr(BP, kind)._parameter_constraints
    )


def _public_methods(cls):
    return {
        name
        for name in dir(cls)
        if not name.startswith("_") and callable(getattr(cls, name, None))
    }


@pytest.mark.parametrize("kind", KINDS)
def test_public_methods_and_signatures(kind):
    sk_cls, bp_cls = getattr(SK, kind), getattr(BP, kind)
    missing = _public_methods(sk_cls) - _public_methods(bp_cls)
    assert not missing, f"blasprop lacks public methods {sorted(missing)}"
    for name in sorted(_public_methods(sk_cls)):
        assert_signature_extends(
            getattr(bp_cls, name), getattr(sk_cls, name), f"{kind}.{name}"
        )


@pytest.mark.parametrize("kind", KINDS)
def test_tags_and_estimator_type(kind):
    assert get_tags(getattr(BP, kind)()) == get_tags(getattr(SK, kind)())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_partial_fit_availability(kind, solver):
    assert hasattr(getattr(BP, kind)(solver=solver), "partial_fit") == hasattr(
        getattr(SK, kind)(solver=solver), "partial_fit"
    )


# --------------------------------------------------------------------------
# clone, pickle, joblib
# --------------------------------------------------------------------------


def _fitted_state(est):
    return [a.copy() for a in est.coefs_ + est.intercepts_]


@pytest.mark.parametrize("kind", KINDS)
def test_clone(kind):
    X, y = _xy_for(kind)
    est = getattr(BP, kind)(alpha=0.3, **SMALL).fit(X, y)
    cloned = clone(est)
    assert type(cloned) is type(est)
    assert cloned.get_params() == est.get_params()
    assert not hasattr(cloned, "coefs_")
    cloned.fit(X, y)
    for a, b in zip(_fitted_state(cloned), _fitted_state(est)):
        assert_array_equal(a, b)


def _pickle_roundtrip(est, how, tmp_path):
    if how == "pickle":
        return pickle.loads(pickle.dumps(est))
    path = tmp_path / "model.joblib"
    joblib.dump(est, path)
    return joblib.load(path)


@pytest.mark.parametrize("how", ["pickle", "joblib"])
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("kind", KINDS)
def test_pickle_roundtrip_predicts_and_trains_on_identically(
    kind, solver, how, tmp_path
):
    X, y = _xy_for(kind, n=60)
    params = dict(SMALL, solver=solver, warm_start=True)
    est = getattr(BP, kind)(**params).fit(X, y)
    loaded = _pickle_roundtrip(est, how, tmp_path)
    assert type(loaded) is type(est)
    assert_array_equal(loaded.predict(X), est.predict(X))
    if kind == "MLPClassifier":
        assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))
    for a, b in zip(_fitted_state(loaded), _fitted_state(est)):
        assert_array_equal(a, b)
    # training continues identically (optimizer and RNG state survive)
    for model in (est, loaded):
        model.fit(X, y)
        if solver != "lbfgs":
            model.partial_fit(X, y)
            model.partial_fit(X[:25], y[:25])
    for a, b in zip(_fitted_state(loaded), _fitted_state(est)):
        assert_array_equal(a, b)
    assert loaded.n_iter_ == est.n_iter_ and loaded.t_ == est.t_


@pytest.mark.parametrize("kind", KINDS)
def test_pickle_unfitted(kind):
    est = getattr(BP, kind)(alpha=0.2)
    loaded = pickle.loads(pickle.dumps(est))
    assert loaded.get_params() == est.get_params()


# --------------------------------------------------------------------------
# composition: Pipeline and GridSearchCV (against the same with sklearn)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_pipeline_with_scaler(kind):
    X, y = _xy_for(kind, n=80)
    X = X * 10 + 3
    preds = []
    for ns in (BP, SK):
        pipe = make_pipeline(
            StandardScaler(), getattr(ns, kind)(solver="lbfgs", **SMALL)
        )
        pipe.fit(X, y)
        out = pipe.predict_proba(X) if kind == "MLPClassifier" else pipe.predict(X)
        preds.append(out)
    assert_allclose(preds[0], preds[1], rtol=1e-6, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind,n_jobs", [("MLPClassifier", 1), ("MLPRegressor", 1), ("MLPClassifier", 2)]
)
def test_grid_search(kind, n_jobs):
    X, y = _xy_for(kind, n=90, n_classes=3)
    grid = {"alpha": [1e-4, 1e-1], "hidden_layer_sizes": [(4,), (6, 3)]}
    results = []
    for ns in (BP, SK):
        search = GridSearchCV(
            getattr(ns, kind)(solver="lbfgs", max_iter=20, random_state=0),
            grid,
            cv=3,
            n_jobs=n_jobs,
        )
        search.fit(X, y)
        results.append(search)
    bp_search, sk_search = results
    assert bp_search.best_params_ == sk_search.best_params_
    assert_allclose(
        bp_search.cv_results_["mean_test_score"],
        sk_search.cv_results_["mean_test_score"],
        rtol=1e-6,
        atol=1e-9,
    )
    assert type(bp_search.best_estimator_) is getattr(BP, kind)


# --------------------------------------------------------------------------
# errors: invalid parameters
# --------------------------------------------------------------------------

INVALID_PARAMS = [
    ("hidden_layer_sizes", 0),
    ("hidden_layer_sizes", "10"),
    ("hidden_layer_sizes", [3, 0]),
    ("hidden_layer_sizes", (4, -1)),
    ("activation", "softmax"),
    ("solver", "newton"),
    ("alpha", -1.0),
    ("batch_size", 0),
    ("batch_size", "big"),
    ("learning_rate", "optimal"),
    ("learning_rate_init", 0.0),
    ("power_t", -0.5),
    ("max_iter", 0),
    ("max_iter", 1.5),
    ("shuffle", "yes"),
    ("random_state", "seed"),
    ("tol", -1.0),
    ("verbose", "loud"),
    ("warm_start", 1),
    ("momentum", 1.5),
    ("nesterovs_momentum", None),
    ("early_stopping", None),
    ("validation_fraction", 1.0),
    ("beta_1", 1.0),
    ("beta_2", -0.1),
    ("epsilon", 0.0),
    ("n_iter_no_change", 0),
    ("max_fun", 0),
]


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("param,value", INVALID_PARAMS)
def test_invalid_parameter(param, value, kind, method):
    X, y = _xy_for(kind)
    extra = {"classes": [0, 1]} if kind == "MLPClassifier" else {}

    def scenario(ns):
        est = getattr(ns, kind)(**{"solver": "sgd", param: value})
        if method == "fit":
            est.fit(X, y)
        else:
            est.partial_fit(X, y, **extra)

    assert_same_outcome(scenario)


@pytest.mark.parametrize("value", ["bogus", "log_loss", None])
def test_invalid_regressor_loss(value):
    X, y = _xy_for("MLPRegressor")
    assert_same_outcome(lambda ns: ns.MLPRegressor(loss=value).fit(X, y))


# --------------------------------------------------------------------------
# errors: fitting state and input validation
# --------------------------------------------------------------------------

UNFITTED_CALLS = {
    "MLPClassifier": ["predict", "predict_proba", "predict_log_proba", "score"],
    "MLPRegressor": ["predict", "score"],
}


@pytest.mark.parametrize(
    "kind,method", [(k, m) for k, methods in UNFITTED_CALLS.items() for m in methods]
)
def test_not_fitted(kind, method):
    X, y = _xy_for(kind)
    args = (X, y) if method == "score" else (X,)
    assert_same_outcome(lambda ns: getattr(getattr(ns, kind)(), method)(*args))


@pytest.mark.parametrize("attr", ["coefs_", "intercepts_", "n_iter_", "classes_"])
def test_unfitted_attribute_access(attr):
    assert_same_outcome(lambda ns: getattr(ns.MLPClassifier(), attr))


@pytest.mark.parametrize(
    "kind,call",
    [
        (kind, call)
        for kind in KINDS
        for call in ["predict", "predict_proba", "score", "partial_fit", "warm_start_fit"]
        if not (kind == "MLPRegressor" and call == "predict_proba")
    ],
)
def test_wrong_number_of_features(kind, call):
    X, y = _xy_for(kind)

    def scenario(ns):
        est = getattr(ns, kind)(solver="sgd", warm_start=True, **SMALL).fit(X, y)
        X3 = X[:, :3]
        if call in ("predict", "predict_proba"):
            getattr(est, call)(X3)
        elif call == "score":
            est.score(X3, y)
        elif call == "partial_fit":
            est.partial_fit(X3, y)
        else:
            est.fit(X3, y)

    assert_same_outcome(scenario)


NON_FINITE = {
    "X-nan-fit": ("fit", "X", np.nan),
    "X-inf-fit": ("fit", "X", np.inf),
    "X-neginf-partial_fit": ("partial_fit", "X", -np.inf),
    "X-nan-predict": ("predict", "X", np.nan),
    "X-inf-predict": ("predict", "X", np.inf),
    "y-nan-fit": ("fit", "y", np.nan),
    "y-inf-fit": ("fit", "y", np.inf),
    "sample_weight-nan-fit": ("fit", "sample_weight", np.nan),
    "sample_weight-inf-fit": ("fit", "sample_weight", np.inf),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", list(NON_FINITE))
def test_non_finite_input(kind, case):
    method, where, bad = NON_FINITE[case]
    X, y = _xy_for(kind)

    def scenario(ns):
        Xb, yb, sw = X.copy(), y.astype(float), np.ones(len(y))
        {"X": Xb, "y": yb, "sample_weight": sw}[where][3] = bad
        est = getattr(ns, kind)(solver="sgd", **SMALL)
        if method == "predict":
            est.fit(X, y).predict(Xb)
        elif method == "partial_fit":
            extra = {"classes": [0, 1]} if kind == "MLPClassifier" else {}
            est.partial_fit(Xb, yb, **extra)
        else:
            est.fit(Xb, yb, sample_weight=sw)

    assert_same_outcome(scenario)


BAD_INPUT = {
    "y-too-short": lambda X, y: (X, y[:-1]),
    "no-samples": lambda X, y: (X[:0], y[:0]),
    "no-features": lambda X, y: (X[:, :0], y),
    "X-1d": lambda X, y: (X[:, 0], y),
    "X-3d": lambda X, y: (X[:, :, None], y),
    "X-strings": lambda X, y: (X.astype(str).astype(object) + "a", y),
    "X-complex": lambda X, y: (X + 1j, y),
    "y-2d-3d": lambda X, y: (X, y[:, None, None]),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_malformed_input(kind, case):
    X, y = _xy_for(kind)
    Xb, yb = BAD_INPUT[case](X, y)
    assert_same_outcome(lambda ns: getattr(ns, kind)(**SMALL).fit(Xb, yb))


@pytest.mark.parametrize("kind", KINDS)
def test_bad_sample_weight_shape(kind):
    X, y = _xy_for(kind)
    assert_same_outcome(
        lambda ns: getattr(ns, kind)(**SMALL).fit(X, y, sample_weight=np.ones(3))
    )


def test_regressor_string_targets():
    X, _ = _xy()
    y = np.array(["a", "b"] * 20, dtype=object)
    assert_same_outcome(lambda ns: ns.MLPRegressor(**SMALL).fit(X, y))


def test_classifier_continuous_targets():
    X, _ = _xy()
    y = np.linspace(0, 1, len(X))
    assert_same_outcome(lambda ns: ns.MLPClassifier(**SMALL).fit(X, y))


def test_classifier_single_class():
    X, _ = _xy()
    y = np.zeros(len(X), dtype=int)
    # sklearn accepts one class; blasprop must behave the same (error or not)
    assert_same_outcome(
        lambda ns: ns.MLPClassifier(**SMALL).fit(X, y).predict_proba(X),
        expect_error=False,
    )


# --------------------------------------------------------------------------
# errors: partial_fit, warm_start, early stopping, divergence
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_partial_fit_with_lbfgs(kind):
    # sklearn 1.9's MLPRegressor does not hide partial_fit for lbfgs (its
    # available_if check is `lambda est: est._check_solver`, never called):
    # the regressor runs a full lbfgs fit. blasprop follows sklearn either way.
    X, y = _xy_for(kind)
    assert_same_outcome(
        lambda ns: getattr(ns, kind)(solver="lbfgs", **SMALL).partial_fit(X, y),
        expect_error=kind == "MLPClassifier",
    )


PARTIAL_FIT_CLASS_ERRORS = {
    "no-classes-on-first-call": [dict(classes=None)],
    "y-not-in-classes-first-call": [dict(classes=[0])],
    "unseen-class-later": [dict(classes=[0, 1]), dict(y=np.arange(40) % 3)],
    "classes-changed": [dict(classes=[0, 1]), dict(classes=[0, 1, 2])],
    "classes-same-again": [dict(classes=[0, 1]), dict(classes=[0, 1])],
}


@pytest.mark.parametrize("case", list(PARTIAL_FIT_CLASS_ERRORS))
def test_partial_fit_classes(case):
    X, y = _xy()

    def scenario(ns):
        est = ns.MLPClassifier(solver="sgd", **SMALL)
        for call in PARTIAL_FIT_CLASS_ERRORS[case]:
            kwargs = {"classes": call["classes"]} if "classes" in call else {}
            est.partial_fit(X, call.get("y", y), **kwargs)

    assert_same_outcome(scenario, expect_error=case != "classes-same-again")


@pytest.mark.parametrize("after_fit", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_partial_fit_with_early_stopping(kind, after_fit):
    X, y = _xy_for(kind, n=60)
    extra = {"classes": [0, 1]} if kind == "MLPClassifier" else {}

    def scenario(ns):
        est = getattr(ns, kind)(early_stopping=True, **SMALL)
        if after_fit:
            est.fit(X, y)
        est.partial_fit(X, y, **extra)

    assert_same_outcome(scenario)


@pytest.mark.parametrize(
    "classes_after", [(0, 1), (0, 1, 3), (0, 1, 2, 3), (5, 6, 7)]
)
def test_warm_start_with_different_classes(classes_after):
    X, _ = _xy(n=60)
    y0 = np.arange(60) % 3
    y1 = np.asarray(classes_after)[np.arange(60) % len(classes_after)]

    def scenario(ns):
        est = ns.MLPClassifier(warm_start=True, solver="lbfgs", **SMALL)
        est.fit(X, y0).fit(X, y1)

    assert_same_outcome(scenario)


@pytest.mark.parametrize(
    "kind,n,fraction",
    [
        ("MLPRegressor", 10, 0.1),  # 1 validation sample
        ("MLPRegressor", 2, 0.1),
        ("MLPClassifier", 20, 0.05),  # stratified split smaller than n_classes
        ("MLPClassifier", 40, 0.025),
    ],
)
def test_validation_set_too_small(kind, n, fraction):
    X, y = _xy_for(kind, n=n)

    def scenario(ns):
        getattr(ns, kind)(
            early_stopping=True, validation_fraction=fraction, **SMALL
        ).fit(X, y)

    assert_same_outcome(scenario)


def test_early_stopping_stratified_too_few_members():
    X, _ = _xy(n=30)
    y = np.array([0] * 29 + [1])
    assert_same_outcome(
        lambda ns: ns.MLPClassifier(early_stopping=True, **SMALL).fit(X, y)
    )


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("kind", KINDS)
def test_non_finite_weights_after_divergence(kind, solver):
    rng = np.random.RandomState(0)
    X = np.finfo(np.float64).max * rng.uniform(size=(10, 2))
    y = rng.standard_normal(size=10) if kind == "MLPRegressor" else np.arange(10) % 2

    def scenario(ns):
        getattr(ns, kind)(solver=solver, max_iter=5, random_state=0).fit(X, y)

    if kind == "MLPRegressor" and solver != "lbfgs":
        # the documented case; for the others, whatever sklearn does is expected
        sk_error, _ = outcome(scenario, SK)
        assert sk_error is not None and "non-finite parameter weights" in sk_error[1]
    assert_same_outcome(scenario, expect_error=False)


# --------------------------------------------------------------------------
# warnings
# --------------------------------------------------------------------------

WARNING_CASES = {
    "batch_size-larger-than-n": dict(solver="sgd", batch_size=1000, max_iter=3),
    "sgd-max_iter": dict(solver="sgd", max_iter=2),
    "adam-max_iter": dict(solver="adam", max_iter=2),
    "lbfgs-max_iter": dict(solver="lbfgs", max_iter=2),
    "lbfgs-max_fun": dict(solver="lbfgs", max_fun=3, max_iter=50),
    "early-stopping-max_iter": dict(solver="adam", early_stopping=True, max_iter=2),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", list(WARNING_CASES))
def test_same_warnings(kind, case):
    X, y = _xy_for(kind, n=60)
    params = {**SMALL, **WARNING_CASES[case]}
    assert_same_outcome(
        lambda ns: getattr(ns, kind)(**params).fit(X, y),
        expect_error=False,
        expect_warning=True,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_column_vector_y_warns(kind):
    X, y = _xy_for(kind)
    assert_same_outcome(
        lambda ns: getattr(ns, kind)(**SMALL).fit(X, y.reshape(-1, 1)),
        expect_error=False,
        expect_warning=True,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_converged_fit_does_not_warn(kind):
    X, y = _xy_for(kind)
    assert_same_outcome(
        lambda ns: getattr(ns, kind)(solver="sgd", tol=10.0, max_iter=50).fit(X, y),
        expect_error=False,
    )


# --------------------------------------------------------------------------
# verbose output
# --------------------------------------------------------------------------

_NUMBER = re.compile(r"[-+]?\d+\.\d+(?:e[-+]?\d+)?|nan|inf")


def _split_numbers(text):
    return _NUMBER.sub("#", text), [float(v) for v in _NUMBER.findall(text)]


@pytest.mark.parametrize(
    "params",
    [
        dict(solver="sgd"),
        dict(solver="sgd", early_stopping=True),
        dict(solver="sgd", learning_rate="adaptive", tol=0.5, n_iter_no_change=1),
        dict(solver="adam", tol=0.5, n_iter_no_change=1),
        dict(solver="lbfgs"),
    ],
    ids=["sgd", "sgd-early-stopping", "sgd-adaptive", "adam-stops", "lbfgs"],
)
@pytest.mark.parametrize("kind", KINDS)
def test_verbose_output(kind, params, capfd):
    X, y = _xy_for(kind, n=60)
    texts = []
    for ns in (BP, SK):
        est = getattr(ns, kind)(verbose=True, **{**SMALL, "max_iter": 6, **params})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
        texts.append(capfd.readouterr().out)
    (bp_template, bp_numbers), (sk_template, sk_numbers) = map(_split_numbers, texts)
    assert bp_template == sk_template
    assert_allclose(bp_numbers, sk_numbers, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------
# feature names (needs a dataframe library)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_feature_names(kind):
    pd = pytest.importorskip("pandas")
    X, y = _xy_for(kind)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])

    def scenario(ns):
        est = getattr(ns, kind)(**SMALL).fit(df, y)
        assert_array_equal(est.feature_names_in_, df.columns)
        est.predict(X)  # warns: fitted with names, predicted without
        est.predict(df.rename(columns={"f0": "other"}))  # error: names differ

    assert_same_outcome(scenario, expect_warning=True)


# --------------------------------------------------------------------------
# scores and probabilities
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_score_with_sample_weight_matches_sklearn(kind):
    X, y = _xy_for(kind, n=60)
    sw = np.random.RandomState(1).uniform(0.5, 2, size=len(y))
    scores = [
        getattr(ns, kind)(solver="lbfgs", **SMALL).fit(X, y).score(X, y, sw)
        for ns in (BP, SK)
    ]
    assert_allclose(scores[0], scores[1], rtol=1e-6)


def test_predict_log_proba_is_log_of_predict_proba():
    X, y = _xy(n_classes=3)
    est = BP.MLPClassifier(**SMALL).fit(X, y)
    assert_allclose(est.predict_log_proba(X), np.log(est.predict_proba(X)))


# --------------------------------------------------------------------------
# Jupyter: the HTML repr, the class docstrings, the documentation link
# --------------------------------------------------------------------------


def _fitted_or_not(kind, fitted):
    est = getattr(BP, kind)(**SMALL)
    if fitted:
        X = np.random.RandomState(0).randn(40, 3)
        y = np.arange(40) % 3 if kind == "MLPClassifier" else X[:, 0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
    return est


@pytest.mark.parametrize("fitted", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_html_repr_renders_without_warnings_and_links_to_blasprop_docs(kind, fitted):
    from sklearn.utils import estimator_html_repr
    from sklearn.utils._repr_html import common

    # the parsed docstrings are cached: parse again so that a warning shows
    common.scrape_estimator_docstring.cache_clear()
    est = _fitted_or_not(kind, fitted)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        html = estimator_html_repr(est)
        html_jupyter = est._repr_html_()
    assert [str(w.message) for w in caught] == []
    link = est._get_doc_link()
    assert link.startswith("https://") and "/docs/api.md#mlpclassifier-and-mlpregressor" in link
    assert "scikit-learn.org" not in link
    assert f'href="{link}"' in html and f'href="{link}"' in html_jupyter
    # the parameter tooltips come from the docstring: blasprop's own
    # parameters are documented there
    assert common.get_docstring(type(est), "Parameters", "dropout").startswith(
        "dropout: float or list of float"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_class_docstring_is_numpydoc_with_standard_sections(kind):
    from sklearn.externals._numpydoc import docscrape

    cls = getattr(BP, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unknown section warns
        doc = docscrape.NumpyDocString(inspect.getdoc(cls))
    documented = [p.name for p in doc["Parameters"]]
    params = inspect.signature(cls).parameters
    assert set(documented) <= set(params)
    # every parameter scikit-learn lacks, and those taking more values, are
    # listed; each of the others is named as scikit-learn's
    own = set(params) - set(inspect.signature(getattr(SK, kind)).parameters)
    assert own | {"activation", "solver"} <= set(documented), documented
    summary = " ".join(doc["Extended Summary"])
    for name in set(params) - set(documented):
        assert re.search(rf"\b{name}\b", summary), name
    assert [a.name for a in doc["Attributes"]] == ["validation_loss_curve_"]
    for p in doc["Parameters"]:
        assert p.type and p.desc, p


@pytest.mark.parametrize("kind", KINDS)
def test_docstring_examples_run(kind):
    import doctest

    cls = getattr(BP, kind)
    runner = doctest.DocTestRunner(verbose=False)
    for test in doctest.DocTestFinder(recurse=False).find(cls, kind, globs={}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted >= 4 and result.failed == 0


# --------------------------------------------------------------------------
# Which module warnings are attributed to (README, "Migrating")
# --------------------------------------------------------------------------

README_FILTER = (
    'warnings.filterwarnings("ignore", category=ConvergenceWarning, module="blasprop")'
)


def _convergence_warnings(ns, kind, solver, filters):
    """Warnings that escape ``filters`` during a fit stopped by max_iter."""
    X = np.random.RandomState(0).randn(40, 3)
    y = np.arange(40) % 2 if kind == "MLPClassifier" else X[:, 0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(filters, {"warnings": warnings, "ConvergenceWarning": ConvergenceWarning})
        getattr(ns, kind)(hidden_layer_sizes=(3,), solver=solver, max_iter=1,
                          random_state=0).fit(X, y)
    return [w for w in caught if issubclass(w.category, ConvergenceWarning)]


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
@pytest.mark.parametrize("kind", KINDS)
def test_the_readme_filter_silences_blasprop_convergence_warnings(kind, solver):
    assert len(_convergence_warnings(BP, kind, solver, "")) == 1
    assert _convergence_warnings(BP, kind, solver, README_FILTER) == []
    # a scikit-learn user's filter does not (the README says so) ...
    sk_filter = README_FILTER.replace('"blasprop"', '"sklearn"')
    assert len(_convergence_warnings(BP, kind, solver, sk_filter)) == 1
    # ... though it does silence scikit-learn's own
    assert _convergence_warnings(SK, kind, solver, sk_filter) == []
    both = README_FILTER.replace('"blasprop"', '"sklearn|blasprop"')
    for ns in (SK, BP):
        assert _convergence_warnings(ns, kind, solver, both) == []


def test_readme_gives_that_filter():
    import pathlib

    readme = pathlib.Path(__file__).resolve().parent.parent / "README.md"
    if not readme.exists():  # the wheel round trip runs tests/ without it
        pytest.skip("README.md is not beside tests/")
    text = readme.read_text(encoding="utf-8")
    migrating = text[text.index("## Migrating from scikit-learn"):]
    migrating = migrating[: migrating.index("\n## ", 3)]
    assert README_FILTER in migrating
    assert 'module="sklearn|blasprop"' in migrating


def test_pickles_naming_the_old_optimizer_location_still_load():
    """blasprop 0.1.0 pickled the optimizer state as blasprop._base._Optimizer
    (without the solver's code); such pickles load and partial_fit goes on."""
    import pickle

    from blasprop import MLPRegressor

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), rng.normal(size=60)
    est = MLPRegressor(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X, y)
    # protocol 2 names classes as "c<module>\n<name>\n", with no frame lengths
    blob = pickle.dumps(est, protocol=2)
    patched = blob.replace(b"cblasprop._optimizer\nOptimizer\n", b"cblasprop._base\n_Optimizer\n")
    assert patched != blob and b"blasprop._optimizer" not in patched
    loaded = pickle.loads(patched)
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    loaded.partial_fit(X, y)
    est.partial_fit(X, y)
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))


@pytest.mark.parametrize("missing", ["dask", "distributed"])
def test_blasprop_dask_without_dask_says_how_to_install_it(missing):
    """Without the optional extra, importing blasprop.dask raises ImportError
    naming the install command (and plain blasprop still imports)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        f"sys.modules[{missing!r}] = None  # as if not installed\n"
        "import blasprop\n"
        "assert blasprop.MLPClassifier\n"
        "try:\n"
        "    import blasprop.dask\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    raise SystemExit('imported without ' + sys.argv[1])\n"
    )
    done = subprocess.run([sys.executable, "-c", code, missing], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pip install 'blasprop[dask]'" in done.stdout


def test_pickling_leaves_the_estimator_as_it_was():
    """__getstate__ drops attributes from the pickle, never from the model
    (on Python 3.11+ the state it starts from is the instance's own dict)."""
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 4), rng.randint(0, 2, 60)
    est = blasprop.MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0)
    est.fit(X, y)
    before = set(vars(est))
    assert "_best_coefs" in before
    pickle.dumps(est)
    assert set(vars(est)) == before
    assert "_best_coefs" not in pickle.loads(pickle.dumps(est)).__dict__
