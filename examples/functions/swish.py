"""Swish, x * sigmoid(x), as EfficientNet-PyTorch's memory-efficient version writes it.

Only ``x`` is saved; the backward recomputes the sigmoid from it with torch
operations, so autograd can differentiate the backward itself: this Function
has a double backward (gradient penalties, Hessian-vector products).
"""

import torch
from torch.autograd import Function


class MemoryEfficientSwish(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        sigmoid_x = torch.sigmoid(x)
        return grad_output * (sigmoid_x * (1 + x * (1 - sigmoid_x)))
