"""Affine layers, in the two layouts people derive them in.

``linear``: torch.nn.Linear's layout, ``weight`` is ``[out, in]``::

    out = x @ weight.T + bias

``lin``: the fast.ai lesson's layout, ``w`` is ``[in, out]``::

    out = x @ w + b
"""

from torch import Tensor


def linear_forward(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """out[b, o] = sum_i x[b, i] * weight[o, i] + bias[o]"""
    return x @ weight.T + bias


def linear_backward(
    grad_out: Tensor, x: Tensor, weight: Tensor, bias: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of ``out = x @ weight.T + bias``.

    dL/dx      = grad_out @ weight        [batch, out] @ [out, in]  -> [batch, in]
    dL/dweight = grad_out.T @ x           [out, batch] @ [batch, in] -> [out, in]
    dL/dbias   = grad_out summed over the batch dim: bias was broadcast
                 to every row, so each row's gradient flows back to it.
    """
    grad_x = grad_out @ weight
    grad_weight = grad_out.T @ x
    grad_bias = grad_out.sum(dim=0)
    return grad_x, grad_weight, grad_bias


def lin_forward(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """out[n, o] = sum_i x[n, i] * w[i, o] + b[o]"""
    return x @ w + b


def lin_backward(grad_out: Tensor, x: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of ``out = x @ w + b``.

    dL/dx = grad_out @ w.T        [n, out] @ [out, in] -> [n, in]
    dL/dw = x.T @ grad_out        [in, n] @ [n, out]   -> [in, out]
    dL/db = grad_out.sum(0)       b was broadcast over the n rows
    """
    return grad_out @ w.T, x.T @ grad_out, grad_out.sum(dim=0)
