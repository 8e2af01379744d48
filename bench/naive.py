"""The hand-written backprop loop of the seed question, in plain Python.

Layers [39, 39, 39, 1]: sigmoid hidden units, a linear output, squared error,
per-sample SGD (learning rate 0.01), every neuron and every weight visited by
nested Python loops over lists.  It computes the same function and update as
``MLPRegressor(hidden_layer_sizes=(39, 39), activation="logistic",
solver="sgd", momentum=0, batch_size=1, alpha=0)``.  It is the bottom rung of
the ladder in ``bench/ladder.png``; ``seed.py`` times it on a few rows and
extrapolates to a 10,000-row epoch.
"""

import math
import random


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def init_net(sizes, seed=0):
    rnd = random.Random(seed)
    weights, biases = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        weights.append([[rnd.uniform(-bound, bound) for _ in range(fan_in)]
                        for _ in range(fan_out)])          # weights[l][j][i]: i -> j
        biases.append([rnd.uniform(-bound, bound) for _ in range(fan_out)])
    return weights, biases


def train_epoch(weights, biases, X, y, lr=0.01, seed=0):
    """One epoch of per-sample SGD over the rows of X (lists of floats)."""
    order = list(range(len(X)))
    random.Random(seed).shuffle(order)
    n_layers = len(weights)
    total = 0.0
    for s in order:
        # forward
        acts = [X[s]]
        for l in range(n_layers):
            W, b, a = weights[l], biases[l], acts[-1]
            out = []
            for j in range(len(W)):
                z = b[j]
                for i in range(len(a)):
                    z += W[j][i] * a[i]
                out.append(z if l == n_layers - 1 else sigmoid(z))
            acts.append(out)
        # backward: delta of the linear output under 0.5 * (p - y)^2
        delta = [acts[-1][0] - y[s]]
        total += 0.5 * delta[0] ** 2
        for l in range(n_layers - 1, -1, -1):
            W, a = weights[l], acts[l]
            if l > 0:   # delta for the layer below, through the sigmoid
                prev = []
                for i in range(len(a)):
                    g = 0.0
                    for j in range(len(W)):
                        g += W[j][i] * delta[j]
                    prev.append(g * a[i] * (1.0 - a[i]))
            for j in range(len(W)):
                step = lr * delta[j]
                Wj = W[j]
                for i in range(len(a)):
                    Wj[i] -= step * a[i]
                biases[l][j] -= step
            if l > 0:
                delta = prev
    return total / len(X)
