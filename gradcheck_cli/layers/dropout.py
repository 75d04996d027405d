"""Dropout with the random mask made an input, so that it is reproducible.

``u`` is uniform noise in [0, 1) with the shape of ``x``; an entry is kept
when ``u >= p`` (probability 1 - p) and kept entries are scaled by
``1 / (1 - p)`` so that the expected output equals ``x`` (inverted dropout)::

    mask = (u >= p)
    out  = x * mask / (1 - p)
"""

from torch import Tensor


def dropout_scale(u: Tensor, p: float) -> Tensor:
    """mask / (1 - p): 1 / (1 - p) where kept, 0 where dropped; same shape as u."""
    keep = (u >= p).to(u.dtype)
    return keep / (1 - p)


def dropout_forward(x: Tensor, u: Tensor, p: float) -> Tensor:
    """out = x * mask / (1 - p), elementwise"""
    return x * dropout_scale(u, p)


def dropout_backward(grad_out: Tensor, u: Tensor, p: float) -> Tensor:
    """Gradient of ``out = x * mask / (1 - p)``.

    The mask does not depend on x, so the layer is elementwise linear in x:
    d out[i] / d x[i] = mask[i] / (1 - p). Dropped entries pass no gradient,
    kept ones pass grad_out scaled by 1 / (1 - p), the same mask as the forward:

    dL/dx = grad_out * mask / (1 - p)              same shape as x
    """
    return grad_out * dropout_scale(u, p)
