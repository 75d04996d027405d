"""A linear layer written by hand, torch.nn.Linear's layout: weight is [out, in]."""

import torch


def linear_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return x @ weight.T + bias


def linear_backward(grad_out, x, weight, bias):
    """Gradients of x, weight and bias from grad_out = dL/dy, y = x @ weight.T + bias."""
    grad_x = grad_out @ weight  # [batch, out] @ [out, in] -> [batch, in]
    grad_weight = grad_out.T @ x  # [out, batch] @ [batch, in] -> [out, in]
    grad_bias = grad_out.sum(0)  # bias was broadcast over the batch: sum it back
    return grad_x, grad_weight, grad_bias
