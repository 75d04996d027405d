"""Deliberately wrong backwards in the fast.ai lesson's style: gradients go in ``.g``.

``out.g`` holds the upstream gradient when the backward is called; each
function sets ``inp.g``, ``w.g``, ``b.g``. ``lin`` uses the lesson's layout
(``w`` is ``[in, out]``, ``out = inp @ w + b``).
"""

import torch


def lin(inp, w, b):
    return inp @ w + b


def lin_grad_w_transposed(inp, out, w, b):
    """w.g = out.g.T @ inp: the operands in the wrong order, [out, in] instead of [in, out]."""
    inp.g = out.g @ w.t()
    w.g = out.g.t() @ inp
    b.g = out.g.sum(0)


def lin_grad_b_not_summed(inp, out, w, b):
    """b.g = out.g: the bias is broadcast over the rows, so its gradient is a sum over them."""
    inp.g = out.g @ w.t()
    w.g = inp.t() @ out.g
    b.g = out.g


def lin_grad_b_column(inp, out, w, b):
    """The right sum, kept as a column: [out, 1] instead of [out]."""
    inp.g = out.g @ w.t()
    w.g = inp.t() @ out.g
    b.g = out.g.sum(0)[:, None]


def lin_grad_b_forgotten(inp, out, w, b):
    """b.g never set."""
    inp.g = out.g @ w.t()
    w.g = inp.t() @ out.g


def lin_grad_w_zero(inp, out, w, b):
    """w.g set to a fresh zeros() 'to fill in later'."""
    inp.g = out.g @ w.t()
    w.g = torch.zeros_like(w)
    b.g = out.g.sum(0)


def lin_grad(inp, out, w, b):
    inp.g = out.g @ w.t()
    w.g = inp.t() @ out.g
    b.g = out.g.sum(0)


def mse(inp, targ):
    return (inp.squeeze(-1) - targ).pow(2).mean()


def mse_grad_no_mean(inp, targ):
    """The lesson's mse_grad without the / inp.shape[0] of the mean."""
    inp.g = 2.0 * (inp.squeeze(-1) - targ).unsqueeze(-1)


def mse_grad_no_two(inp, targ):
    """d(d^2)/dd = 2d, and the 2 is forgotten."""
    inp.g = (inp.squeeze(-1) - targ).unsqueeze(-1) / inp.shape[0]


def mse_grad_no_unsqueeze(inp, targ):
    """The right values, [n] instead of inp's [n, 1]: the unsqueeze(-1) is forgotten."""
    inp.g = 2.0 * (inp.squeeze(-1) - targ) / inp.shape[0]


def mse_grad(inp, targ):
    inp.g = 2.0 * (inp.squeeze(-1) - targ).unsqueeze(-1) / inp.shape[0]


def relu(inp):
    return inp.clamp_min(0.0)


def relu_grad_no_mask(inp, out):
    """inp.g = out.g: the (inp > 0) factor is forgotten."""
    inp.g = out.g


def mse_grad_no_mean_no_two(inp, targ):
    """Both the 2 of the square and the 1/n of the mean forgotten."""
    inp.g = (inp.squeeze(-1) - targ).unsqueeze(-1)
