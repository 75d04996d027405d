"""2-D pooling, written with im2col (see ``conv``).

``F.unfold`` copies every ``kh x kw`` window into a column; viewed per
channel that is ``windows`` of shape ``[batch, channels, kh * kw, L]``
(``L`` = number of output positions). Pooling reduces each column:

``max_pool2d``: ``out = windows.amax(dim=2)``
``avg_pool2d``: ``out = windows.mean(dim=2)``

The backward builds the gradient of every column, ``[batch, channels,
kh * kw, L]``, and ``F.fold`` puts it back on the pixels the column was
copied from, summing where windows overlap. No padding: ``unfold`` would pad
with zeros, which is wrong for a max.
"""

import torch.nn.functional as F
from torch import Tensor

from gradcheck_cli.layers.conv import IntPair, output_size, pair


def pool_windows(x: Tensor, kernel: IntPair, stride: IntPair) -> Tensor:
    """Every pooling window of x as a column.

    [batch, channels, h, w] -> [batch, channels, kh * kw, L]
    """
    batch, channels = x.shape[:2]
    cols = F.unfold(x, pair(kernel), stride=pair(stride))  # [batch, channels * kh * kw, L]
    return cols.reshape(batch, channels, -1, cols.shape[-1])


def fold_windows(grad_windows: Tensor, x: Tensor, kernel: IntPair, stride: IntPair) -> Tensor:
    """Inverse direction of ``pool_windows``: sum each column entry back onto its pixel of x."""
    batch, channels, h, w = x.shape
    grad_cols = grad_windows.reshape(batch, channels * grad_windows.shape[2], -1)
    return F.fold(grad_cols, (h, w), pair(kernel), stride=pair(stride))


def pooled_shape(x: Tensor, kernel: IntPair, stride: IntPair) -> tuple[int, int, int, int]:
    """[batch, channels, h_out, w_out]: window positions per axis (no padding, no dilation)."""
    batch, channels, h, w = x.shape
    (kh, kw), (sh, sw) = pair(kernel), pair(stride)
    return batch, channels, output_size(h, kh, sh, 0, 1), output_size(w, kw, sw, 0, 1)


def max_pool2d_forward(x: Tensor, kernel: IntPair, stride: IntPair) -> Tensor:
    """out[b, c, p] = max over the window p of x[b, c]     [batch, channels, h_out, w_out]"""
    out = pool_windows(x, kernel, stride).amax(dim=2)
    return out.reshape(pooled_shape(x, kernel, stride))


def max_pool2d_backward(grad_out: Tensor, x: Tensor, kernel: IntPair, stride: IntPair) -> Tensor:
    """Gradient of the window maximum.

    d max(v) / d v[k] = 1 if v[k] is the largest entry, else 0 (the input
    has no ties). So each window sends its whole grad_out to the single
    position of its maximum (argmax) and nothing to the others:

    grad_windows[b, c, k, p] = grad_out[b, c, p] if k == argmax(window p) else 0
                               [batch, channels, kh * kw, L]
    dL/dx = fold(grad_windows): a pixel that is the maximum of several
            overlapping windows receives the sum of their gradients.
    """
    windows = pool_windows(x, kernel, stride)
    argmax = windows.argmax(dim=2, keepdim=True)  # [batch, channels, 1, L]
    grad_flat = grad_out.reshape(argmax.shape)  # [batch, channels, 1, L]
    grad_windows = windows.new_zeros(windows.shape).scatter(2, argmax, grad_flat)
    return fold_windows(grad_windows, x, kernel, stride)


def avg_pool2d_forward(x: Tensor, kernel: IntPair, stride: IntPair) -> Tensor:
    """out[b, c, p] = mean over the window p of x[b, c]    [batch, channels, h_out, w_out]"""
    out = pool_windows(x, kernel, stride).mean(dim=2)
    return out.reshape(pooled_shape(x, kernel, stride))


def avg_pool2d_backward(grad_out: Tensor, x: Tensor, kernel: IntPair, stride: IntPair) -> Tensor:
    """Gradient of the window mean.

    out = (1 / n) * sum_k v[k] with n = kh * kw, so d out / d v[k] = 1 / n
    for every position of the window: each window spreads grad_out / n
    evenly over its n pixels (a broadcast over the kernel axis):

    grad_windows[b, c, k, p] = grad_out[b, c, p] / n      [batch, channels, kh * kw, L]
    dL/dx = fold(grad_windows): overlapping windows add up.
    """
    batch, channels = x.shape[:2]
    kh, kw = pair(kernel)
    n = kh * kw
    grad_flat = grad_out.reshape(batch, channels, 1, -1)  # [batch, channels, 1, L]
    grad_windows = (grad_flat / n).expand(-1, -1, n, -1)  # [batch, channels, n, L]
    return fold_windows(grad_windows, x, kernel, stride)
