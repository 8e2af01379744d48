"""blasprop: compiled multilayer perceptrons, a faster drop-in for
scikit-learn's MLPClassifier and MLPRegressor."""

from ._version import __version__
from ._classes import MLPClassifier, MLPRegressor
from ._gradcheck import check_gradients

__all__ = ["MLPClassifier", "MLPRegressor", "check_gradients", "__version__"]
