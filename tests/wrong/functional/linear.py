"""A linear layer written by hand, torch.nn.Linear's layout: weight is [out, in]."""

import torch


def linear_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return x @ weight.T + bias


def linear_backward(grad_out, x, weight, bias):
    grad_x = grad_out @ weight
    grad_weight = x.T @ grad_out  # BUG: [in, out], the transpose of weight's gradient
    grad_bias = grad_out.sum(0)
    return grad_x, grad_weight, grad_bias
