"""Deliberately wrong backwards as torch.autograd.Function subclasses: forward
saves what backward needs, backward returns one gradient per forward input."""

import torch


class Linear(torch.autograd.Function):
    """out = x @ weight.T + bias (torch.nn.Linear's layout)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return x @ weight.T + bias

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        return grad_out @ weight, grad_out.T @ x, grad_out.sum(0)


class LinearWeightTransposed(Linear):
    @staticmethod
    def backward(ctx, grad_out):
        """x.T @ grad_out for the weight: the shape only shows it when in != out."""
        x, weight = ctx.saved_tensors
        return grad_out @ weight, x.T @ grad_out, grad_out.sum(0)


class LinearNoBiasGrad(Linear):
    @staticmethod
    def backward(ctx, grad_out):
        """None for bias: autograd then leaves bias.grad unset."""
        x, weight = ctx.saved_tensors
        return grad_out @ weight, grad_out.T @ x, None


class Mse(torch.autograd.Function):
    """loss = mean((inp[:, 0] - targ)^2)."""

    @staticmethod
    def forward(ctx, inp, targ):
        diff = inp.squeeze(-1) - targ
        ctx.save_for_backward(diff)
        return diff.pow(2).mean()

    @staticmethod
    def backward(ctx, grad_out):
        """2 * diff, without the 1/n of the mean."""
        (diff,) = ctx.saved_tensors
        return grad_out * 2 * diff.unsqueeze(-1), None


class LowerBound(torch.autograd.Function):
    """CompressAI's LowerBound: out = max(x, bound). Its backward is a surrogate on purpose:
    below the bound it still passes a negative upstream gradient (one that pushes x up)."""

    @staticmethod
    def forward(ctx, x, bound):
        b = torch.full_like(x, bound)
        ctx.save_for_backward(x, b)
        return torch.max(x, b)

    @staticmethod
    def backward(ctx, grad_out):
        x, b = ctx.saved_tensors
        pass_through = (x >= b) | (grad_out < 0)
        return pass_through * grad_out, None


class LowerBoundExact(LowerBound):
    @staticmethod
    def backward(ctx, grad_out):
        """What autograd does for max(x, bound): the gradient only where x is above the bound."""
        x, b = ctx.saved_tensors
        return (x >= b) * grad_out, None


class ClippedIdentity(torch.autograd.Function):
    """A straight-through estimator: out = x, and the gradient clipped to [-1, 1]."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out.clamp(-1, 1)
