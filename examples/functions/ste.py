"""A straight-through estimator, written as kornia's ``STEFunction`` writes it.

The forward hands back an output computed elsewhere (here ``torch.round(x)``,
whose own gradient is zero almost everywhere); the backward passes the upstream
gradient straight through to the input and to that output, through ``grad_fn``
(``F.hardtanh`` clips it to [-1, 1]). No autograd of a forward gives this
gradient: the spec writes it in ``reference_grads``.
"""

from torch.autograd import Function


class STEFunction(Function):
    @staticmethod
    def forward(ctx, input, output, grad_fn=None):
        ctx.in_shape = input.shape
        ctx.out_shape = output.shape
        ctx.grad_fn = grad_fn
        return output

    @staticmethod
    def backward(ctx, grad_output):
        if ctx.grad_fn is None:
            return grad_output.sum_to_size(ctx.in_shape), grad_output.sum_to_size(ctx.out_shape), None
        return (
            ctx.grad_fn(grad_output.sum_to_size(ctx.in_shape)),
            ctx.grad_fn(grad_output.sum_to_size(ctx.out_shape)),
            None,
        )
