"""Normalisation layers: subtract a mean, divide by a standard deviation,
then scale and shift.

``batch_norm`` (training mode): statistics over the batch, per feature::

    x_hat = (x - x.mean(0)) / sqrt(x.var(0, biased) + eps)
    out   = weight * x_hat + bias                 x [batch, features]

``layer_norm``: statistics over the last dim, per row::

    x_hat = (x - x.mean(-1)) / sqrt(x.var(-1, biased) + eps)
    out   = weight * x_hat + bias                 x [..., features]

Both backwards are the same formula, only the axis of the statistics
changes. With ``g = grad_out * weight`` (the gradient reaching ``x_hat``)
and the means taken along the axis of the statistics::

    dL/dx = (g - mean(g) - x_hat * mean(g * x_hat)) / sqrt(var + eps)

The ``- mean(g)`` term is the path through the mean, the
``- x_hat * mean(g * x_hat)`` term the path through the variance.
"""

import torch
from torch import Tensor


def normalize(x: Tensor, dim: int, eps: float) -> tuple[Tensor, Tensor]:
    """x_hat = (x - mean) / std along ``dim`` (biased variance), and std = sqrt(var + eps).

    ``std`` keeps ``dim`` (size 1) so that it broadcasts against x.
    """
    mean = x.mean(dim=dim, keepdim=True)
    var = x.var(dim=dim, keepdim=True, correction=0)
    std = torch.sqrt(var + eps)
    return (x - mean) / std, std


def normalize_backward(grad_x_hat: Tensor, x_hat: Tensor, std: Tensor, dim: int) -> Tensor:
    """dL/dx from dL/dx_hat for x_hat = (x - mean) / std along ``dim``.

    Write g = dL/dx_hat. Every x[i] reaches the loss three ways: directly
    through x_hat[i], and through the mean and the variance, which depend on
    all the x[j] of the same statistic (n of them). With
    d mean / d x[i] = 1 / n and d var / d x[i] = 2 (x[i] - mean) / n:

    d x_hat[j] / d x[i] = (delta_ij - 1 / n) / std - x_hat[i] * x_hat[j] / (n * std)

    and the chain rule sums over j:

    dL/dx[i] = (1 / std) * (g[i] - mean_j(g[j]) - x_hat[i] * mean_j(g[j] * x_hat[j]))

    The means are taken along ``dim`` and broadcast back: the sums over j in
    the chain rule.
    """
    mean_g = grad_x_hat.mean(dim=dim, keepdim=True)
    mean_g_x_hat = (grad_x_hat * x_hat).mean(dim=dim, keepdim=True)
    return (grad_x_hat - mean_g - x_hat * mean_g_x_hat) / std


def batch_norm_forward(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """out[b, f] = weight[f] * x_hat[b, f] + bias[f], x_hat normalised over the batch dim."""
    x_hat, _ = normalize(x, dim=0, eps=eps)
    return weight * x_hat + bias


def batch_norm_backward(
    grad_out: Tensor, x: Tensor, weight: Tensor, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of batch norm in training mode (batch statistics).

    dL/dx_hat  = grad_out * weight                 weight [features] broadcast over the batch
    dL/dx      = normalize_backward along dim 0    [batch, features]
    dL/dweight = (grad_out * x_hat).sum(0)         weight was broadcast over the batch: sum
    dL/dbias   = grad_out.sum(0)                   likewise                       -> [features]
    """
    x_hat, std = normalize(x, dim=0, eps=eps)
    grad_x = normalize_backward(grad_out * weight, x_hat, std, dim=0)
    grad_weight = (grad_out * x_hat).sum(dim=0)
    grad_bias = grad_out.sum(dim=0)
    return grad_x, grad_weight, grad_bias


def layer_norm_forward(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """out[..., f] = weight[f] * x_hat[..., f] + bias[f], x_hat normalised over the last dim."""
    x_hat, _ = normalize(x, dim=-1, eps=eps)
    return weight * x_hat + bias


def layer_norm_backward(
    grad_out: Tensor, x: Tensor, weight: Tensor, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of layer norm (statistics over the last dim).

    dL/dx_hat  = grad_out * weight                 weight [features] broadcast over the leading dims
    dL/dx      = normalize_backward along dim -1   [..., features]
    dL/dweight = (grad_out * x_hat) summed over every leading dim (weight was
                 broadcast over them)              -> [features]
    dL/dbias   = grad_out summed over every leading dim
    """
    x_hat, std = normalize(x, dim=-1, eps=eps)
    grad_x = normalize_backward(grad_out * weight, x_hat, std, dim=-1)
    leading_dims = tuple(range(x.dim() - 1))
    grad_weight = (grad_out * x_hat).sum(dim=leading_dims)
    grad_bias = grad_out.sum(dim=leading_dims)
    return grad_x, grad_weight, grad_bias
