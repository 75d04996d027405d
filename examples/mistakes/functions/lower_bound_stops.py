"""CompressAI's ``LowerBound``, with its backward's surrogate forgotten: the gradient stops at the bound.

Below the bound, autograd of ``torch.max`` gives 0, and a value stuck there
could never come back. This backward also lets the gradient through where it
would push ``x`` up (``grad_output < 0``: gradient descent increases ``x``).
"""

import torch
from torch.autograd import Function


class LowerBoundFunction(Function):
    @staticmethod
    def forward(ctx, input, bound):
        ctx.save_for_backward(input, bound)
        return torch.max(input, bound)

    @staticmethod
    def backward(ctx, grad_output):
        input, bound = ctx.saved_tensors
        pass_through_if = input >= bound  # the mistake: | (grad_output < 0) is forgotten
        return pass_through_if * grad_output, None
