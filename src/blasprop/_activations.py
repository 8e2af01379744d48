"""Names of activations and losses, and their codes in the C kernels.

The codes are defined once, by ``enum bp_activation`` and ``enum bp_loss``
in ``csrc/bp_kernels.h``; the maps here take the names from the members
(``BP_LEAKY_RELU`` is ``"leaky_relu"``).
"""

from ._codes import bp_activation, bp_loss


def _names(enum):
    return {member.name.removeprefix("BP_").lower(): int(member) for member in enum}


_ACTIVATION_CODES = _names(bp_activation)
_LOSS_CODES = _names(bp_loss)

# Activations only an output layer has (they couple or bound the outputs).
_OUTPUT_ONLY = ("softmax", "exp")

# Hidden-layer activations: scikit-learn's four, then blasprop's own
# (leaky_relu: slope 0.01 for x < 0; elu: alpha 1; gelu: exact, x * Phi(x)
# with Phi the normal CDF; silu: x * sigmoid(x); softplus: log(1 + e^x)).
HIDDEN_ACTIVATIONS = {
    name: code for name, code in _ACTIVATION_CODES.items() if name not in _OUTPUT_ONLY
}

OUTPUT_ACTIVATIONS = {
    name: _ACTIVATION_CODES[name] for name in ("identity", "logistic") + _OUTPUT_ONLY
}

# loss name -> (code, output activation)
REGRESSION_LOSSES = {
    name: (_LOSS_CODES[name], out)
    for name, out in (
        ("squared_error", "identity"),
        ("poisson", "exp"),
        ("huber", "identity"),
        ("absolute_error", "identity"),
    )
}
LOG_LOSS = _LOSS_CODES["log_loss"]  # softmax output, multiclass
BINARY_LOG_LOSS = _LOSS_CODES["binary_log_loss"]  # logistic output, binary and multilabel


def hidden_activation_names(activation, n_hidden):
    """One activation name per hidden layer, from a name or a list of names."""
    if isinstance(activation, str):
        return [activation] * n_hidden
    names = list(activation)
    if len(names) != n_hidden:
        raise ValueError(
            f"activation has {len(names)} entries but there are {n_hidden} "
            "hidden layers; give one name per hidden layer or a single name."
        )
    for name in names:
        if name not in HIDDEN_ACTIVATIONS:
            raise ValueError(
                f"Unknown activation {name!r}; expected one of "
                f"{sorted(HIDDEN_ACTIVATIONS)}."
            )
    return names


def glorot_factor(activation):
    """Glorot-uniform factor scikit-learn uses: 2 for logistic, else 6.

    With per-layer activations the factor follows the activation named for
    the layer's output (the last weight layer follows the first hidden
    activation when all are the same, as in scikit-learn)."""
    return 2.0 if activation == "logistic" else 6.0
