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
