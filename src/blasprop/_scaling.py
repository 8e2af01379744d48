"""Standardising the command line's training data and folding it into the weights.

``blasprop train`` fits on standardised features (and regression targets),
then rewrites the first layer (and the output layer) so that the saved
model takes raw values and predicts in raw units: a model file needs no
scaler beside it.
"""

from __future__ import annotations

import numpy as np


def fold_scaling(est, x_mean, x_scale, y_mean=None, y_scale=None):
    """Fold standardisation of X (and y, for an identity output) into the weights.

    After ``est`` was fitted on ``(X - x_mean) / x_scale`` (and
    ``(y - y_mean) / y_scale``), it predicts from raw ``X`` in raw units.
    Raises ValueError, leaving ``est`` unchanged, when the folded weights
    cannot be held in the weights' dtype: a weight that overflows, or one
    that underflows to zero or loses precision (a feature silently dropped).
    """
    dtype = est.coefs_[0].dtype
    coefs = [w.astype(np.float64) for w in est.coefs_]
    intercepts = [b.astype(np.float64) for b in est.intercepts_]
    folded_w = coefs[0] / x_scale[:, None]
    intercepts[0] = intercepts[0] - (x_mean / x_scale) @ coefs[0]  # the ratio never overflows
    old_w, coefs[0] = coefs[0], folded_w
    if y_mean is not None:
        old_w = [old_w, coefs[-1]]
        coefs[-1] = coefs[-1] * y_scale
        intercepts[-1] = intercepts[-1] * y_scale + y_mean
    else:
        old_w = [old_w]
    tiny, big = np.finfo(dtype).tiny, np.finfo(dtype).max
    for w in coefs + intercepts:
        if not np.all(np.abs(w) <= big):
            raise ValueError(
                f"folding the standardisation into the {dtype} weights overflows; use --dtype "
                "float64, or --no-scale with features and targets of moderate size"
            )
    hint = "use --dtype float64" if dtype != np.float64 else "rescale it before training"
    for i, (old, new) in enumerate(zip(old_w, (coefs[0], coefs[-1]))):
        # a feature is lost when all its weights round to zero (or to
        # subnormals, which keep almost no precision)
        rows = (old, new) if i == 0 else (old.reshape(1, -1), new.reshape(1, -1))
        lost = (np.abs(rows[1]).max(axis=1) < tiny) & (np.abs(rows[0]).max(axis=1) > 0)
        if lost.any():
            what = f"feature {int(np.flatnonzero(lost)[0])}" if i == 0 else "the target"
            raise ValueError(
                f"the standardisation of {what} cannot be folded into {dtype} weights "
                f"(they would round to zero); {hint}"
            )
    est.coefs_[:] = [w.astype(dtype) for w in coefs]
    est.intercepts_[:] = [b.astype(dtype) for b in intercepts]


def standardize(a):
    """``(a - mean) / scale`` per column, and the mean and scale.

    Each column is divided first by a power of two near its largest
    magnitude (an exact division), so that a column of 1e300s (whose sum and
    variance overflow) or of 1e-300s (whose variance underflows) is scaled
    properly instead of becoming zeros. Constant columns get scale 1 (they
    become 0, as with StandardScaler).
    """
    _, exponent = np.frexp(np.abs(a).max(axis=0))
    unit = np.ldexp(1.0, exponent - 1)  # every |a / unit| < 2; a column of zeros gets 0.5
    b = a / unit
    mean = b.mean(axis=0)
    scale = b.std(axis=0)
    # constant up to the rounding of the mean (StandardScaler's test): a
    # column of 0.1s must not become +-1s
    n, eps = len(a), np.finfo(np.float64).eps
    constant = scale**2 <= n * eps * scale**2 + (n * mean * eps) ** 2
    scale[constant] = 1.0 / unit[constant]  # after "* unit": 1
    z = (b - mean) / scale
    z[:, constant] = 0.0
    return z, mean * unit, scale * unit
