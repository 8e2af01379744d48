"""Names of activations and losses, and their codes in the C kernels.

The codes mirror ``enum bp_activation`` and ``enum bp_loss`` in
``csrc/bp_kernels.h``.
"""

# Hidden-layer activations: scikit-learn's four, then blasprop's own.
HIDDEN_ACTIVATIONS = {
    "identity": 0,
    "logistic": 1,
    "tanh": 2,
    "relu": 3,
    "leaky_relu": 4,  # slope 0.01 for x < 0
    "elu": 5,  # alpha 1
    "gelu": 6,  # exact: x * Phi(x), Phi the normal CDF (erf form)
    "silu": 7,  # x * sigmoid(x)
    "softplus": 8,  # log(1 + e^x)
}
SKLEARN_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")

OUTPUT_ACTIVATIONS = {"identity": 0, "logistic": 1, "softmax": 9, "exp": 10}

# loss name -> (code, output activation)
REGRESSION_LOSSES = {
    "squared_error": (0, "identity"),
    "poisson": (3, "exp"),
    "huber": (4, "identity"),
    "absolute_error": (5, "identity"),
}
LOG_LOSS = 1  # softmax output, multiclass
BINARY_LOG_LOSS = 2  # logistic output, binary and multilabel


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
