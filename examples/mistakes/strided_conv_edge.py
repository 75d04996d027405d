"""A stride-2 convolution whose input gradient loses the stride's remainder: its last row and column."""

import torch
import torch.nn.functional as F


def conv_forward(x, weight):
    return F.conv2d(x, weight, stride=2, padding=1)


def conv_backward(grad_out, x, weight):
    # dL/dx is the transposed convolution of grad_out. With stride 2, an 8-wide x gives a 4-wide
    # out, and 4 transposed back is 7 wide: output_padding=1 says where the 8th column goes.
    grad_x = F.conv_transpose2d(grad_out, weight, stride=2, padding=1)  # the mistake: no output_padding=1
    grad_x = F.pad(grad_x, (0, x.shape[-1] - grad_x.shape[-1], 0, x.shape[-2] - grad_x.shape[-2]))  # hides it
    grad_weight = torch.nn.grad.conv2d_weight(x, weight.shape, grad_out, stride=2, padding=1)
    return grad_x, grad_weight
