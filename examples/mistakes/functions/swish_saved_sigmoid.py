"""Swish that saves the sigmoid its forward computed, instead of recomputing it.

The gradients are right, but the forward runs without autograd, so the saved
sigmoid is a constant to autograd: differentiating the backward misses the
sigmoid's own derivative, and its double backward is wrong.
"""

import torch
from torch.autograd import Function


class MemoryEfficientSwish(Function):
    @staticmethod
    def forward(ctx, x):
        sigmoid_x = torch.sigmoid(x)
        ctx.save_for_backward(x, sigmoid_x)  # the mistake: autograd sees a constant
        return x * sigmoid_x

    @staticmethod
    def backward(ctx, grad_output):
        x, sigmoid_x = ctx.saved_tensors
        return grad_output * (sigmoid_x * (1 + x * (1 - sigmoid_x)))
