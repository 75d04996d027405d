"""ReLU over the concatenation of two inputs, with its backward: correct, kink included."""

import torch


def relu_forward(x, z):
    return torch.cat([x, z]).clamp(min=0)


def relu_backward(grad_out, x, z):
    grad = grad_out * (torch.cat([x, z]) > 0)  # 0 at the kink: one of its subgradients
    return grad[: len(x)], grad[len(x) :]
