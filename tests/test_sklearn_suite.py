"""scikit-learn's own MLP test-suite, run against blasprop's estimators.

The tests are not copied: ``sklearn/neural_network/tests/test_mlp.py`` ships
with the installed scikit-learn. For each of its ``test_*`` functions this
module defines a test of the same name that runs the original with the module
globals ``MLPClassifier``/``MLPRegressor`` swapped for blasprop's. Its pytest
marks are re-applied, with scikit-learn's classes in ``parametrize`` values
swapped too, so that pytest expands parameters, resolves fixtures (``capsys``,
``tmp_path``, and ``global_random_seed`` from tests/conftest.py) and applies
``filterwarnings`` exactly as it would for the original.

Tests that inspect scikit-learn's private implementation (not part of the
drop-in contract) are listed in ``PRIVATE`` and marked ``xfail(strict=True)``
with the exception they are expected to fail with: they fail the run the day
they start passing, so the list cannot go stale silently.
"""

import importlib
import inspect

import pytest
import sklearn.neural_network as sk_nn

import blasprop

SK_TESTS = importlib.import_module("sklearn.neural_network.tests.test_mlp")

SWAP = {
    sk_nn.MLPClassifier: blasprop.MLPClassifier,
    sk_nn.MLPRegressor: blasprop.MLPRegressor,
}

# test name -> (why it is excluded, exception it fails with against blasprop)
PRIVATE = {
    "test_gradient": (
        "calls sklearn's private method _loss_grad_lbfgs(packed_coef_inter, X, Y,"
        " sample_weight, activations, deltas, coef_grads, intercept_grads)",
        AttributeError,
    ),
}


def _swap(value):
    """Replace sklearn's MLP classes by blasprop's inside parametrize values."""
    if isinstance(value, type) and value in SWAP:
        return SWAP[value]
    if type(value) is type(pytest.param(None)):  # a ParameterSet
        return pytest.param(*_swap(value.values), marks=value.marks, id=value.id)
    if isinstance(value, (list, tuple)):
        return type(value)(_swap(v) for v in value)
    return value


def _sklearn_test_functions():
    return {
        name: func
        for name, func in vars(SK_TESTS).items()
        if name.startswith("test_") and inspect.isfunction(func)
    }


def _make_test(name, func):
    def test(**kwargs):
        with pytest.MonkeyPatch.context() as mp:
            for sk_class, bp_class in SWAP.items():
                mp.setattr(SK_TESTS, sk_class.__name__, bp_class)
            func(**kwargs)

    test.__name__ = test.__qualname__ = name
    test.__doc__ = func.__doc__
    test.__signature__ = inspect.signature(func)  # pytest reads fixtures/params here
    marks = getattr(func, "pytestmark", [])
    for mark in marks:  # pytestmark lists marks in the order they were applied
        decorator = getattr(pytest.mark, mark.name)
        if mark.name == "parametrize":
            argnames, argvalues, *rest = mark.args
            test = decorator(argnames, _swap(list(argvalues)), *rest, **mark.kwargs)(
                test
            )
        else:
            test = decorator(*mark.args, **mark.kwargs)(test)
    if name in PRIVATE:
        reason, raises = PRIVATE[name]
        test = pytest.mark.xfail(strict=True, raises=raises, reason=reason)(test)
    return test


for _name, _func in _sklearn_test_functions().items():
    globals()[_name] = _make_test(_name, _func)
del _name, _func


def test_every_sklearn_test_is_wrapped():
    sk_names = set(_sklearn_test_functions())
    assert len(sk_names) > 40  # sanity: the module was found and has its tests
    assert set(PRIVATE) <= sk_names, "PRIVATE names tests that no longer exist"
    here = {n for n, f in globals().items() if n.startswith("test_") and callable(f)}
    assert sk_names <= here


def test_wrapped_tests_see_blasprop_classes():
    seen = {}

    def probe():
        seen["clf"] = SK_TESTS.MLPClassifier
        seen["reg"] = SK_TESTS.MLPRegressor

    _make_test("probe", probe)()
    assert seen == {"clf": blasprop.MLPClassifier, "reg": blasprop.MLPRegressor}
    # and the module is restored afterwards
    assert SK_TESTS.MLPClassifier is sk_nn.MLPClassifier
    assert SK_TESTS.MLPRegressor is sk_nn.MLPRegressor
