"""icefall's ``SoftmaxFunction`` (Zipformer): a softmax whose backward computes in float32.

Written for float16 training, its backward casts to float32 whatever it is
given, and autograd casts the result back. In a float64 check every element is
within the tolerance, yet the errors are those of float32, not float64: the
report says so in a note.
"""

import torch
from torch.autograd import Function


class SoftmaxFunction(Function):
    @staticmethod
    def forward(ctx, x, dim):
        ans = x.softmax(dim=dim)
        ctx.save_for_backward(ans)
        ctx.dim = dim
        return ans

    @staticmethod
    def backward(ctx, ans_grad):
        (ans,) = ctx.saved_tensors
        ans_grad = ans_grad.to(torch.float32)
        ans = ans.to(torch.float32)
        x_grad = ans_grad * ans
        x_grad = x_grad - ans * x_grad.sum(dim=ctx.dim, keepdim=True)
        return x_grad, None
