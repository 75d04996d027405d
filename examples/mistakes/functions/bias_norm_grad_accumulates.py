"""icefall's ``BiasNorm`` as it was written: the backward makes its saved tensors require grad.

Their ``.grad`` then lives on from one backward to the next, so a second
backward on the same graph (``torch.autograd.gradcheck`` runs one) returns
twice the bias and log_scale gradients.
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
        bias.requires_grad = True  # the mistake: the saved tensors keep their .grad between calls
        log_scale.requires_grad = True
        with torch.enable_grad():
            scales = torch.mean((x - bias) ** 2, dim=ctx.channel_dim, keepdim=True) ** -0.5 * log_scale.exp()
            ans = x * scales
            ans.backward(gradient=ans_grad)
        return x.grad, bias.grad, log_scale.grad, None
