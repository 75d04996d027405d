"""A gradient reversal layer (domain-adversarial training, Ganin & Lempitsky 2015).

The identity in the forward; in the backward the gradient is reversed and
scaled by ``alpha``, so the layers below learn to confuse a domain classifier.
"""

from torch.autograd import Function


class GradientReversal(Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return -ctx.alpha * grad_output, None
