"""Deliberately wrong backwards, functional style: ``backward(grad_out, ...) -> grads``.

Each function carries one everyday mistake (named in its docstring); the spec
of the same name in this folder runs it, and tests/test_diagnose.py asserts
what gradcheck says about it. ``linear_*`` use torch.nn.Linear's layout
(``weight`` is ``[out, in]``, ``out = x @ weight.T + bias``).
"""

import torch


def linear_forward(x, weight, bias):
    return x @ weight.T + bias


def linear_weight_transposed(grad_out, x, weight, bias):
    """The weight gradient's matmul operands swapped: [in, out] instead of [out, in]."""
    return grad_out @ weight, x.T @ grad_out, grad_out.sum(0)


def linear_bias_not_summed(grad_out, x, weight, bias):
    """bias was broadcast over the batch, but its gradient is not summed over it."""
    return grad_out @ weight, grad_out.T @ x, grad_out


def linear_bias_keepdim(grad_out, x, weight, bias):
    """The right sum, with keepdim=True: [1, out] instead of [out]."""
    return grad_out @ weight, grad_out.T @ x, grad_out.sum(0, keepdim=True)


def linear_weight_flattened(grad_out, x, weight, bias):
    """The right values, flattened."""
    return grad_out @ weight, (grad_out.T @ x).flatten(), grad_out.sum(0)


def linear_x_sign_flipped(grad_out, x, weight, bias):
    """A minus sign from a loss derivation carried into the layer."""
    return -(grad_out @ weight), grad_out.T @ x, grad_out.sum(0)


def linear_two_bugs(grad_out, x, weight, bias):
    """Two mistakes at once: both must be reported."""
    return grad_out @ weight, x.T @ grad_out, grad_out


def linear_return_order(grad_out, x, weight, bias):
    """The gradients returned in another order than the spec's slots (x, weight, bias)."""
    return grad_out.T @ x, grad_out @ weight, grad_out.sum(0)


def linear_bias_none(grad_out, x, weight, bias):
    """The bias gradient left for later."""
    return grad_out @ weight, grad_out.T @ x, None


def linear_noise(grad_out, x, weight, bias):
    """Not a mistake anyone makes: values no rule can explain."""
    g = torch.Generator().manual_seed(1234)
    noise = torch.randn(weight.shape, generator=g, dtype=torch.float64).to(weight.dtype)
    return grad_out @ weight, noise, grad_out.sum(0)


def linear_noise_shape(grad_out, x, weight, bias):
    """Wrong shape and values no rule can explain."""
    g = torch.Generator().manual_seed(1234)
    return grad_out @ weight, grad_out.T @ x, torch.randn(3, generator=g, dtype=torch.float64).to(bias.dtype)


def linear_correct(grad_out, x, weight, bias):
    return grad_out @ weight, grad_out.T @ x, grad_out.sum(0)


def mul_forward(a, b):
    return a * b


def mul_swapped(grad_out, a, b):
    """d(a*b)/da is b, not a: each gradient got the other's factor."""
    return grad_out * a, grad_out * b


def relu_forward(x):
    return x.clamp(min=0)


def relu_mask_forgotten(grad_out, x):
    """The gradient passed straight through: the (x > 0) mask is forgotten."""
    return grad_out.clone()


def relu_forward_inplace(x):
    """Clamps its input in place: the caller's x is changed."""
    return x.clamp_(min=0)


def relu_backward(grad_out, x):
    return grad_out * (x > 0)


def relu_backward_inplace(grad_out, x):
    """Zeroes the upstream gradient in place instead of a copy of it."""
    grad_out[x <= 0] = 0
    return grad_out


def tanh_forward_typo(x):
    """A typo in the denominator: exp(x) + exp(x) instead of exp(x) + exp(-x)."""
    return (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(x))


def tanh_backward(grad_out, out):
    """Right, given the right out: 1 - tanh^2."""
    return grad_out * (1 - out**2)


def cross_entropy_forward(logits, targ):
    return (torch.logsumexp(logits, 1) - logits[torch.arange(len(targ)), targ]).mean()


def cross_entropy_no_one_hot(grad_out, logits, targ):
    """softmax / batch, but the -1 at each row's target class is forgotten."""
    return grad_out * torch.softmax(logits, 1) / logits.shape[0]


def cross_entropy_sum_not_mean(grad_out, logits, targ):
    """The loss is a mean over the batch; the gradient forgot the 1/batch."""
    one_hot = torch.zeros_like(logits)
    one_hot[torch.arange(len(targ)), targ] = 1
    return grad_out * (torch.softmax(logits, 1) - one_hot)


def mean_sq_forward(x):
    return (x**2).sum(1).mean()


def mean_sq_wrong_dim(grad_out, x):
    """Divides by x.shape[1] (features) where the mean is over x.shape[0] (batch):
    right whenever batch == features, as at the spec's own sizes."""
    return grad_out * 2 * x / x.shape[1]
