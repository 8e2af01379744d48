"""Plain-numpy reference of the forward pass, written independently of
blasprop's kernels, for the tests."""

import numpy as np
from scipy.special import erf, expit

HIDDEN = {
    "identity": lambda z: z,
    "logistic": expit,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
    "gelu": lambda z: 0.5 * z * (1 + erf(z / np.sqrt(2))),
    "silu": lambda z: z * expit(z),
    "softplus": lambda z: np.logaddexp(0, z),
}


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


OUTPUT = {"identity": lambda z: z, "logistic": expit, "softmax": softmax, "exp": np.exp}


def forward(est, X):
    """Output layer of a fitted estimator, computed in float64 with numpy."""
    acts = est.activation
    n_hidden = len(est.coefs_) - 1
    if isinstance(acts, str):
        acts = [acts] * n_hidden
    a = np.asarray(X, dtype=np.float64)
    for i, (W, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        z = a @ W.astype(np.float64) + b.astype(np.float64)
        a = HIDDEN[acts[i]](z) if i < n_hidden else OUTPUT[est.out_activation_](z)
    return a
