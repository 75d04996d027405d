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


def conv_forward_naive(x, w, b, conv_param):
    """x: (N, C, H, W), w: (F, C, HH, WW), b: (F,); conv_param: {'stride', 'pad'}."""
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    H_out = 1 + (H + 2 * pad - HH) // stride
    W_out = 1 + (W + 2 * pad - WW) // stride
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    out = np.zeros((N, F, H_out, W_out), dtype=x.dtype)
    for i in range(H_out):
        for j in range(W_out):
            window = x_pad[:, :, i * stride : i * stride + HH, j * stride : j * stride + WW]
            out[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, b, conv_param)


def _conv_backward(dout, cache, dx_pad_shape):
    """The naive loops, accumulating into a padded dx buffer of the given shape."""
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    _, _, HH, WW = w.shape
    _, _, H_out, W_out = dout.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    dx_pad = np.zeros(dx_pad_shape, dtype=x.dtype)
    dw = np.zeros_like(w)
    db = dout.sum(axis=(0, 2, 3))
    for i in range(H_out):
        for j in range(W_out):
            hs, ws = i * stride, j * stride
            d = dout[:, :, i, j]  # (N, F)
            dw += np.tensordot(d, x_pad[:, :, hs : hs + HH, ws : ws + WW], axes=([0], [0]))
            dx_pad[:, :, hs : hs + HH, ws : ws + WW] += np.tensordot(d, w, axes=([1], [0]))
    return dx_pad, dw, db


def conv_backward_naive(dout, cache):
    x, w, b, conv_param = cache
    pad = conv_param["pad"]
    N, C, H, W = x.shape
    dx_pad, dw, db = _conv_backward(dout, cache, (N, C, H + 2 * pad, W + 2 * pad))
    return dx_pad[:, :, pad : pad + H, pad : pad + W], dw, db


def conv_backward_stride_remainder(dout, cache):
    """dx_pad sized from the output, (H_out - 1) * stride + HH: when the stride leaves a
    remainder ((H + 2 * pad - HH) % stride == 1) it is one row and column short of the
    padded input, and dx comes back [N, C, H - 1, W - 1]. At pad=1 the last row and column
    of x were in the last window; at pad=0 no window reaches them (their gradient is 0)."""
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    _, _, HH, WW = w.shape
    _, _, H_out, W_out = dout.shape
    Hp, Wp = (H_out - 1) * stride + HH, (W_out - 1) * stride + WW
    dx_pad, dw, db = _conv_backward(dout, cache, (N, C, Hp, Wp))
    return dx_pad[:, :, pad : Hp - pad, pad : Wp - pad], dw, db


def conv_backward_pad_slice(dout, cache):
    """dx = dx_pad[:, :, pad:-pad, pad:-pad]: right for pad >= 1, empty for pad = 0 (x[0:-0] is x[0:0])."""
    x, w, b, conv_param = cache
    pad = conv_param["pad"]
    N, C, H, W = x.shape
    dx_pad, dw, db = _conv_backward(dout, cache, (N, C, H + 2 * pad, W + 2 * pad))
    return dx_pad[:, :, pad:-pad, pad:-pad], dw, db


def max_pool_forward_naive(x, pool_param):
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H, W = x.shape
    H_out, W_out = 1 + (H - ph) // stride, 1 + (W - pw) // stride
    out = np.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for i in range(H_out):
        for j in range(W_out):
            out[:, :, i, j] = x[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw].max(
                axis=(2, 3)
            )
    return out, (x, pool_param)


def _max_pool_backward(dout, cache, accumulate):
    x, pool_param = cache
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H_out, W_out = dout.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * stride, j * stride
                    window = x[n, c, hs : hs + ph, ws : ws + pw]
                    r, s = np.unravel_index(np.argmax(window), window.shape)
                    if accumulate:
                        dx[n, c, hs + r, ws + s] += dout[n, c, i, j]
                    else:
                        dx[n, c, hs + r, ws + s] = dout[n, c, i, j]
    return dx


def max_pool_backward_naive(dout, cache):
    return _max_pool_backward(dout, cache, accumulate=True)


def max_pool_backward_assign(dout, cache):
    """dx[argmax] = dout: with overlapping windows (stride < pool size) a pixel that is
    the max of two windows keeps the last window's gradient instead of their sum."""
    return _max_pool_backward(dout, cache, accumulate=False)
