"""blasprop: compiled multilayer perceptrons, a faster drop-in for
scikit-learn's MLPClassifier and MLPRegressor."""

from ._version import __version__
from ._classes import MLPClassifier, MLPRegressor
from ._config import show_config
from ._gradcheck import check_gradients
from ._model_io import load, load_metadata, save
from ._onnx import to_onnx

__all__ = [
    "MLPClassifier",
    "MLPRegressor",
    "check_gradients",
    "save",
    "load",
    "load_metadata",
    "to_onnx",
    "show_config",
    "__version__",
]
