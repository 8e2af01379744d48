"""blasprop: compiled multilayer perceptrons, a faster drop-in for
scikit-learn's MLPClassifier and MLPRegressor."""

from ._version import __version__

# The public names are imported on first use (PEP 562), so that importing
# blasprop, and `blasprop --version`, do not pay for importing scikit-learn.
_LAZY = {
    "MLPClassifier": "._classes",
    "MLPRegressor": "._classes",
    "show_config": "._config",
    "check_gradients": "._gradcheck",
    "load": "._model_io",
    "load_metadata": "._model_io",
    "save": "._model_io",
    "to_onnx": "._onnx",
}

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


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
