"""Convolutions, written as matrix products.

A convolution slides a small kernel over the input; at every position it
takes a dot product between the kernel and the patch of input under it.
Two equivalent ways to organise that work are shown here:

``conv1d``: one matrix product per kernel tap. Tap ``j`` of a size-``k``
kernel always looks at the input ``j * dilation`` positions to the right of
the window's start, so its contribution to every output position is one
strided slice of the (padded) input times ``weight[:, :, j]``::

    out[b, o, l] = bias[o] + sum_j sum_i weight[o, i, j] * x_pad[b, i, l * stride + j * dilation]

``conv2d``: im2col. ``F.unfold`` copies every patch the kernel visits into
a column, giving ``cols`` of shape ``[batch, c_in * kh * kw, L]`` (``L`` =
number of output positions). The convolution is then one matrix product
with the weight flattened to ``[c_out, c_in * kh * kw]``, i.e. a linear
layer applied to every patch.

In both views the input gradient is a *transposed convolution*: each output
position sends ``grad_out`` back through the kernel to the input pixels it
read, and pixels read by several windows (overlapping kernels) add up the
contributions. ``F.fold``, the adjoint of ``F.unfold``, does exactly that
scatter-and-sum. ``unfold``/``fold`` are plain tensor ops, not autograd.
"""

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

IntPair = int | Sequence[int]
"""A size per spatial axis ``(h, w)``, or one int used for both, as in torch."""


def pair(value: IntPair) -> tuple[int, int]:
    """``2 -> (2, 2)``; ``[3, 2] -> (3, 2)``."""
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """How many window positions fit along one axis.

    A dilated kernel spans ``dilation * (kernel - 1) + 1`` input positions;
    it starts at 0, stride, 2 * stride, ... of the padded axis and must end
    inside it.
    """
    span = dilation * (kernel - 1) + 1
    return (size + 2 * padding - span) // stride + 1


def conv1d_tap(j: int, stride: int, dilation: int, length_out: int) -> slice:
    """The positions of the padded input that kernel tap ``j`` reads.

    Output position ``l`` reads ``l * stride + j * dilation``, for
    ``l = 0 .. length_out - 1``: a strided slice.
    """
    start = j * dilation
    return slice(start, start + stride * (length_out - 1) + 1, stride)


def conv1d_forward(
    x: Tensor, weight: Tensor, bias: Tensor, stride: int, padding: int, dilation: int
) -> Tensor:
    """out[b, o, l] = bias[o] + sum_{i, j} weight[o, i, j] * x_pad[b, i, l * stride + j * dilation]

    x [batch, c_in, length], weight [c_out, c_in, k], bias [c_out]
    -> out [batch, c_out, length_out]. Each tap ``j`` is a matrix product
    ``weight[:, :, j] @ x_pad[:, :, tap]``: [c_out, c_in] @ [batch, c_in, length_out].
    """
    k = weight.shape[2]
    length_out = output_size(x.shape[2], k, stride, padding, dilation)
    x_pad = F.pad(x, (padding, padding))
    out = bias[:, None]  # [c_out, 1], broadcast over batch and positions
    for j in range(k):
        tap = conv1d_tap(j, stride, dilation, length_out)
        out = out + weight[:, :, j] @ x_pad[:, :, tap]
    return out


def conv1d_backward(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    stride: int,
    padding: int,
    dilation: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of the tap-by-tap convolution (see ``conv1d_forward``).

    For one tap ``j`` the forward is a linear layer
    ``out += weight[:, :, j] @ x_pad[:, :, tap]``, so, as for ``linear``:

    dL/dweight[:, :, j] = sum_b grad_out[b] @ x_pad[b, :, tap].T
                          [c_out, L] @ [L, c_in] -> [c_out, c_in], summed over the batch
    dL/dx_pad[:, :, tap] += weight[:, :, j].T @ grad_out
                          [c_in, c_out] @ [batch, c_out, L] -> [batch, c_in, L]
        Neighbouring windows overlap when the kernel spans more than the
        stride, so one input position can be read by several (window, tap)
        pairs: the contributions are *added*. This is the transposed
        convolution. The padding is constant, so its gradient is dropped:
        dL/dx = dL/dx_pad[:, :, padding : padding + length].
    dL/dbias = grad_out summed over batch and positions: bias was broadcast
               to both.
    """
    length = x.shape[2]
    k = weight.shape[2]
    length_out = grad_out.shape[2]
    x_pad = F.pad(x, (padding, padding))
    grad_x_pad = x_pad.new_zeros(x_pad.shape)
    grad_weight = weight.new_zeros(weight.shape)
    for j in range(k):
        tap = conv1d_tap(j, stride, dilation, length_out)
        grad_weight[:, :, j] = (grad_out @ x_pad[:, :, tap].transpose(1, 2)).sum(dim=0)
        grad_x_pad[:, :, tap] += weight[:, :, j].T @ grad_out
    grad_x = grad_x_pad[:, :, padding : padding + length]
    grad_bias = grad_out.sum(dim=(0, 2))
    return grad_x, grad_weight, grad_bias


def conv2d_forward(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
) -> Tensor:
    """out = weight_matrix @ cols + bias, reshaped to an image.

    cols = unfold(x)                  [batch, c_in * kh * kw, L]   one patch per column
    weight_matrix = weight.reshape    [c_out, c_in * kh * kw]
    out[b, :, l] = weight_matrix @ cols[b, :, l] + bias
                                      [batch, c_out, L] -> [batch, c_out, h_out, w_out]
    """
    batch, _, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    h_out = output_size(h, kh, sh, ph, dh)
    w_out = output_size(w, kw, sw, pw, dw)
    cols = F.unfold(x, (kh, kw), dilation=(dh, dw), padding=(ph, pw), stride=(sh, sw))
    out = weight.reshape(c_out, -1) @ cols + bias[:, None]
    return out.reshape(batch, c_out, h_out, w_out)


def conv2d_backward(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of ``out = weight_matrix @ cols + bias`` (see ``conv2d_forward``).

    With grad_out flattened to grad_cols_out [batch, c_out, L] this is a
    linear layer applied to every patch (column):

    dL/dweight = sum_b grad_cols_out[b] @ cols[b].T
                 [c_out, L] @ [L, c_in*kh*kw], summed over the batch -> weight's shape
    dL/dcols   = weight_matrix.T @ grad_cols_out
                 [c_in*kh*kw, c_out] @ [batch, c_out, L] -> [batch, c_in*kh*kw, L]
    dL/dx      = fold(dL/dcols): every column entry is put back on the pixel
                 it was copied from, and a pixel copied into several patches
                 receives the *sum*. That is the transposed convolution.
                 Padding entries fall outside the image and are dropped.
    dL/dbias   = grad_out summed over batch, h_out and w_out (bias was
                 broadcast to all of them).
    """
    batch, c_out = grad_out.shape[:2]
    _, _, h, w = x.shape
    kh, kw = weight.shape[2:]
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    cols = F.unfold(x, (kh, kw), dilation=(dh, dw), padding=(ph, pw), stride=(sh, sw))
    grad_cols_out = grad_out.reshape(batch, c_out, -1)
    grad_weight = (grad_cols_out @ cols.transpose(1, 2)).sum(dim=0).reshape(weight.shape)
    grad_cols = weight.reshape(c_out, -1).T @ grad_cols_out
    grad_x = F.fold(
        grad_cols,
        (h, w),
        (kh, kw),
        dilation=(dh, dw),
        padding=(ph, pw),
        stride=(sh, sw),
    )
    grad_bias = grad_out.sum(dim=(0, 2, 3))
    return grad_x, grad_weight, grad_bias
