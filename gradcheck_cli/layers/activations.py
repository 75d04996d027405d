"""Activation functions: elementwise, then along the last dim.

Elementwise (``out`` has the shape of ``x``, and every backward is
``grad_x = grad_out * f'(x)``, the local derivative times the upstream one)::

    relu        out = max(x, 0)
    leaky_relu  out = x if x > 0 else negative_slope * x
    gelu        out = x * Phi(x)            (Phi: the standard normal CDF)
    sigmoid     out = 1 / (1 + exp(-x))
    tanh        out = tanh(x)

Along the last dim (each row mixes its own entries, so the backward is a
vector-Jacobian product per row, not a plain elementwise product)::

    softmax      out[b, i] = exp(x[b, i]) / sum_j exp(x[b, j])
    log_softmax  out[b, i] = x[b, i] - logsumexp(x[b, :])
    logsumexp    out[b]    = log(sum_j exp(x[b, j]))
"""

import math

import torch
from torch import Tensor


def relu_forward(x: Tensor) -> Tensor:
    """out = max(x, 0), elementwise."""
    return x.clamp(min=0)


def relu_backward(grad_out: Tensor, x: Tensor) -> Tensor:
    """Gradient of ``out = max(x, 0)``.

    Local derivative: d out / d x = 1 where x > 0, else 0.
    dL/dx = grad_out * (x > 0)          [same shape as x]
    The gradient passes through where the unit was on and is blocked where
    it was off. (At x == 0 exactly the derivative is undefined; 0 is used,
    as PyTorch does.)
    """
    return grad_out * (x > 0).to(grad_out.dtype)


def leaky_relu_forward(x: Tensor, negative_slope: float) -> Tensor:
    """out = x where x > 0, else negative_slope * x, elementwise."""
    return torch.where(x > 0, x, negative_slope * x)


def leaky_relu_backward(grad_out: Tensor, x: Tensor, negative_slope: float) -> Tensor:
    """Gradient of ``out = x if x > 0 else negative_slope * x``.

    Local derivative: d out / d x = 1 where x > 0, else negative_slope.
    dL/dx = grad_out where x > 0, else negative_slope * grad_out   [same shape as x]
    Unlike relu, a little gradient still flows where the unit is "off".
    """
    return torch.where(x > 0, grad_out, negative_slope * grad_out)


# Constants of the two gelu forms.
_SQRT_2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_CUBIC = 0.044715


def _check_approximate(approximate: str) -> None:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def gelu_forward(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU, elementwise, in one of torch's two forms.

    approximate="none":  out = x * Phi(x),  Phi(x) = (1 + erf(x / sqrt(2))) / 2
    approximate="tanh":  out = x * (1 + tanh(u)) / 2,
                         u = sqrt(2 / pi) * (x + 0.044715 * x^3)
    """
    _check_approximate(approximate)
    if approximate == "tanh":
        u = _SQRT_2_OVER_PI * (x + _GELU_CUBIC * x**3)
        return 0.5 * x * (1.0 + torch.tanh(u))
    return 0.5 * x * (1.0 + torch.erf(x / _SQRT_2))


def gelu_backward(grad_out: Tensor, x: Tensor, approximate: str = "none") -> Tensor:
    """Gradient of GELU; the product rule on ``x * gate(x)``.

    approximate="none":  out = x * Phi(x)
        d out / d x = Phi(x) + x * phi(x),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
        (phi, the normal density, is the derivative of the CDF Phi.)
    approximate="tanh":  out = x * (1 + t) / 2,  t = tanh(u)
        d out / d x = (1 + t) / 2 + x / 2 * (1 - t^2) * du/dx,
        du/dx = sqrt(2 / pi) * (1 + 3 * 0.044715 * x^2)
        (d tanh(u) / du = 1 - tanh(u)^2.)
    dL/dx = grad_out * d out / d x          [same shape as x]
    """
    _check_approximate(approximate)
    if approximate == "tanh":
        u = _SQRT_2_OVER_PI * (x + _GELU_CUBIC * x**3)
        t = torch.tanh(u)
        du_dx = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_CUBIC * x**2)
        local = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t**2) * du_dx
    else:
        cdf = 0.5 * (1.0 + torch.erf(x / _SQRT_2))
        pdf = _INV_SQRT_2PI * torch.exp(-0.5 * x**2)
        local = cdf + x * pdf
    return grad_out * local


def sigmoid_forward(x: Tensor) -> Tensor:
    """out = 1 / (1 + exp(-x)), elementwise."""
    return 1.0 / (1.0 + torch.exp(-x))


def sigmoid_backward(grad_out: Tensor, out: Tensor) -> Tensor:
    """Gradient of ``out = sigmoid(x)``, written with the forward's output.

    Local derivative: d sigmoid(x) / dx = sigmoid(x) * (1 - sigmoid(x)) = out * (1 - out)
    dL/dx = grad_out * out * (1 - out)      [same shape as x]
    """
    return grad_out * out * (1.0 - out)


def tanh_forward(x: Tensor) -> Tensor:
    """out = tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x)), elementwise."""
    return torch.tanh(x)


def tanh_backward(grad_out: Tensor, out: Tensor) -> Tensor:
    """Gradient of ``out = tanh(x)``, written with the forward's output.

    Local derivative: d tanh(x) / dx = 1 - tanh(x)^2 = 1 - out^2
    dL/dx = grad_out * (1 - out^2)          [same shape as x]
    """
    return grad_out * (1.0 - out**2)


def softmax_forward(x: Tensor) -> Tensor:
    """out[b, i] = exp(x[b, i]) / sum_j exp(x[b, j])           [batch, classes]

    The row max is subtracted first: it cancels in the ratio and keeps exp
    from overflowing.
    """
    e = torch.exp(x - x.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


def softmax_backward(grad_out: Tensor, out: Tensor) -> Tensor:
    """Gradient of softmax along the last dim, written with its output ``s``.

    Jacobian of one row: d s[i] / d x[j] = s[i] * (delta_ij - s[j]).
    Chain rule, summing over i:
        dL/dx[j] = sum_i grad_out[i] * s[i] * (delta_ij - s[j])
                 = s[j] * (grad_out[j] - sum_i grad_out[i] * s[i])
    The inner sum is one number per row: keepdim=True broadcasts it back.
    Shapes: [batch, classes] -> sum [batch, 1] -> [batch, classes]
    """
    row_dot = (grad_out * out).sum(dim=-1, keepdim=True)
    return out * (grad_out - row_dot)


def log_softmax_forward(x: Tensor) -> Tensor:
    """out[b, i] = x[b, i] - logsumexp_j x[b, j]               [batch, classes]"""
    return x - logsumexp_forward(x).unsqueeze(-1)


def log_softmax_backward(grad_out: Tensor, out: Tensor) -> Tensor:
    """Gradient of log_softmax along the last dim, written with its output.

    out[i] = x[i] - logsumexp(x), and d logsumexp(x) / d x[j] = softmax(x)[j],
    so d out[i] / d x[j] = delta_ij - softmax(x)[j].
    Chain rule, summing over i:
        dL/dx[j] = grad_out[j] - softmax(x)[j] * sum_i grad_out[i]
    with softmax(x) = exp(out). Per row: [batch, classes] - [batch, classes] * [batch, 1]
    """
    softmax = torch.exp(out)
    return grad_out - softmax * grad_out.sum(dim=-1, keepdim=True)


def logsumexp_forward(x: Tensor) -> Tensor:
    """out[b] = log(sum_j exp(x[b, j]))                   [batch, classes] -> [batch]

    Computed as m + log(sum_j exp(x[b, j] - m)) with m the row max, so exp
    cannot overflow.
    """
    m = x.amax(dim=-1, keepdim=True)
    return (m + torch.log(torch.exp(x - m).sum(dim=-1, keepdim=True))).squeeze(-1)


def logsumexp_backward(grad_out: Tensor, x: Tensor, out: Tensor) -> Tensor:
    """Gradient of ``out[b] = log(sum_j exp(x[b, j]))``.

    d out[b] / d x[b, j] = exp(x[b, j]) / sum_k exp(x[b, k]) = exp(x[b, j] - out[b]),
    the softmax of the row.
    dL/dx[b, j] = grad_out[b] * softmax(x)[b, j]
    Shapes: out and grad_out are [batch]; unsqueeze(-1) makes them [batch, 1]
    to broadcast over the classes (the forward summed them away).
    """
    softmax = torch.exp(x - out.unsqueeze(-1))
    return grad_out.unsqueeze(-1) * softmax
