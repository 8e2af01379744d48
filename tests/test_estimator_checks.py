"""scikit-learn's estimator API conformance checks, run on blasprop's estimators.

No check is marked as an expected failure: blasprop's estimators must pass
every check that scikit-learn's own MLPClassifier/MLPRegressor pass.
Each solver gets its own instance (lbfgs has no ``partial_fit``; sgd and adam
have different optimizer state). The settings are small so that the whole set
runs in seconds while still reaching the training scores the checks demand.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from blasprop import MLPClassifier, MLPRegressor

SMALL = dict(hidden_layer_sizes=(5,), random_state=0)
SOLVERS = [
    dict(solver="adam", learning_rate_init=0.05, max_iter=30),
    dict(solver="sgd", learning_rate_init=0.02, max_iter=30),
    dict(solver="lbfgs", max_iter=30),
]
ESTIMATORS = [
    Estimator(**SMALL, **solver)
    for solver in SOLVERS
    for Estimator in (MLPClassifier, MLPRegressor)
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
