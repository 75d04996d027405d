"""icefall's ``BiasNorm`` (Zipformer): x * exp(log_scale) / rms(x - bias) over the channels.

The backward saves memory by recomputing the forward under autograd. The
tensors it differentiates are fresh copies (``.detach().requires_grad_()``): a
saved tensor made to require grad would keep its ``.grad`` from one backward to
the next, and a second backward on the same graph would return twice the gradient.
A backward that calls ``.backward()`` cannot itself be differentiated: it says
so with ``@once_differentiable``.
"""

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable


class BiasNormFunction(Function):
    @staticmethod
    def forward(ctx, x, bias, log_scale, channel_dim):
        ctx.channel_dim = channel_dim
        ctx.save_for_backward(x.detach(), bias.detach(), log_scale.detach())
        scales = torch.mean((x - bias) ** 2, dim=channel_dim, keepdim=True) ** -0.5 * log_scale.exp()
        return x * scales

    @staticmethod
    @once_differentiable
    def backward(ctx, ans_grad):
        x, bias, log_scale = ctx.saved_tensors
        x = x.detach().requires_grad_()
        bias, log_scale = bias.detach().requires_grad_(), log_scale.detach().requires_grad_()
        with torch.enable_grad():
            scales = torch.mean((x - bias) ** 2, dim=ctx.channel_dim, keepdim=True) ** -0.5 * log_scale.exp()
            ans = x * scales
            ans.backward(gradient=ans_grad)
        return x.grad, bias.grad, log_scale.grad, None
