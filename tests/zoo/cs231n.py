"""Deliberately wrong backwards in the cs231n assignments' style: numpy arrays,
``(out, cache)`` forwards and ``(dout, cache)`` backwards. ``w`` is ``[D, M]``."""

import numpy as np


def affine_forward(x, w, b):
    return x @ w + b, (x, w, b)


def affine_backward_db_not_summed(dout, cache):
    """db = dout: b is broadcast over the N rows, so db is a sum over them."""
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout


def affine_backward_dw_transposed(dout, cache):
    """dw = dout.T @ x: [M, D] instead of [D, M]."""
    x, w, b = cache
    return dout @ w.T, dout.T @ x, dout.sum(axis=0)


def affine_backward_dx_flat(dout, cache):
    """dx flattened with ravel(): the right values in the wrong shape."""
    x, w, b = cache
    return (dout @ w.T).ravel(), x.T @ dout, dout.sum(axis=0)


def affine_backward(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def relu_forward(x):
    return np.maximum(0, x), x


def relu_backward_no_mask(dout, cache):
    """dx = dout: the (x > 0) mask is forgotten."""
    return dout.copy()


def sigmoid_forward(x):
    with np.errstate(over="ignore"):
        out = 1 / (1 + np.exp(-x))  # exp(1000) = inf gives 1 / inf = 0: right
    return out, x


def sigmoid_backward_overflow(dout, cache):
    """sigmoid written as exp(x) / (1 + exp(x)): inf / inf = NaN once exp(x) overflows."""
    x = cache
    with np.errstate(over="ignore", invalid="ignore"):
        s = np.exp(x) / (1 + np.exp(x))
    return dout * s * (1 - s)


def mse_forward(x, y):
    diff = x - y
    return (diff**2).mean(), diff


def mse_backward_no_mean(dloss, cache):
    """2 * diff: the mean over all N * M elements is forgotten."""
    diff = cache
    return dloss * 2 * diff
