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


def embedding_forward(indices, weight):
    return weight[indices]


def embedding_backward(grad_out, indices, weight):
    rows = grad_out.reshape(-1, weight.shape[1])
    return torch.zeros_like(weight).index_add_(0, indices.reshape(-1), rows)


def embedding_assign(grad_out, indices, weight):
    """grad[indices] = grad_out: a token that appears twice keeps one of its gradients, not their sum."""
    grad = torch.zeros_like(weight)
    grad[indices.reshape(-1)] = grad_out.reshape(-1, weight.shape[1])
    return grad


# -- recurrent cells, torch.nn layout: gates stacked along dim 0 of w_ih, w_hh, b_ih, b_hh --


def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """torch.lstm_cell: gates i, f, g, o."""
    a_i, a_f, a_g, a_o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, 1)
    i, f, g, o = a_i.sigmoid(), a_f.sigmoid(), a_g.tanh(), a_o.sigmoid()
    c_next = f * c + i * g
    h_next = o * c_next.tanh()
    return h_next, c_next, (x, h, c, w_ih, w_hh, i, f, g, o, c_next)


def _lstm_backward(grad_h_next, grad_c_next, cache, order="ifgo", sigmoid_if=True):
    x, h, c, w_ih, w_hh, i, f, g, o, c_next = cache
    t = c_next.tanh()
    dc = grad_c_next + grad_h_next * o * (1 - t**2)
    di, df = dc * g, dc * c
    if sigmoid_if:
        di, df = di * i * (1 - i), df * f * (1 - f)
    gates = {"i": di, "f": df, "g": dc * i * (1 - g**2), "o": grad_h_next * t * o * (1 - o)}
    dgates = torch.cat([gates[k] for k in order], 1)
    db = dgates.sum(0)
    return dgates @ w_ih, dgates @ w_hh, dc * f, dgates.T @ x, dgates.T @ h, db, db


def lstm_cell_backward(grad_h_next, grad_c_next, cache):
    return _lstm_backward(grad_h_next, grad_c_next, cache)


def lstm_cell_gates_reordered(grad_h_next, grad_c_next, cache):
    """The gate gradients concatenated f, i, g, o: the forward splits them i, f, g, o."""
    return _lstm_backward(grad_h_next, grad_c_next, cache, order="figo")


def lstm_cell_no_sigmoid_derivative(grad_h_next, grad_c_next, cache):
    """The input and forget gates' sigmoid derivative i * (1 - i), f * (1 - f) forgotten."""
    return _lstm_backward(grad_h_next, grad_c_next, cache, sigmoid_if=False)


def gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh):
    """torch.gru_cell: gates r, z, n; n = tanh(i_n + r * h_n), h' = (1 - z) * n + z * h."""
    i_r, i_z, i_n = (x @ w_ih.T + b_ih).chunk(3, 1)
    h_r, h_z, h_n = (h @ w_hh.T + b_hh).chunk(3, 1)
    r, z = (i_r + h_r).sigmoid(), (i_z + h_z).sigmoid()
    n = (i_n + r * h_n).tanh()
    return (1 - z) * n + z * h, (x, h, w_ih, w_hh, r, z, n, h_n)


def _gru_backward(grad_out, cache, order):
    x, h, w_ih, w_hh, r, z, n, h_n = cache
    da_n = grad_out * (1 - z) * (1 - n**2)
    da_r = da_n * h_n * r * (1 - r)
    da_z = grad_out * (h - n) * z * (1 - z)
    inputs = {"r": da_r, "z": da_z, "n": da_n}
    hidden = {"r": da_r, "z": da_z, "n": da_n * r}
    dgi = torch.cat([inputs[k] for k in order], 1)
    dgh = torch.cat([hidden[k] for k in order], 1)
    return dgi @ w_ih, dgh @ w_hh + grad_out * z, dgi.T @ x, dgh.T @ h, dgi.sum(0), dgh.sum(0)


def gru_cell_backward(grad_out, cache):
    return _gru_backward(grad_out, cache, "rzn")


def gru_cell_gates_reordered(grad_out, cache):
    """Gates concatenated z, r, n (the order of the GRU paper's equations): torch stacks r, z, n."""
    return _gru_backward(grad_out, cache, "zrn")


def rnn_forward(x, h, w_ih, w_hh, b_ih, b_hh):
    return torch.tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)


def rnn_backward(grad_out, x, h, w_ih, w_hh, out):
    da = grad_out * (1 - out**2)
    return da @ w_ih, da @ w_hh, da.T @ x, da.T @ h, da.sum(0), da.sum(0)


def rnn_tanh_derivative(grad_out, x, h, w_ih, w_hh, out):
    """tanh's derivative written 1 - h where it is 1 - h**2."""
    da = grad_out * (1 - out)
    return da @ w_ih, da @ w_hh, da.T @ x, da.T @ h, da.sum(0), da.sum(0)


# -- multi-head self-attention, heads concatenated along the embedding -------------------


def mha_forward(x, wq, wk, wv, wo, heads):
    seq, embed = x.shape
    d = embed // heads

    def split(t):  # [seq, embed] -> [heads, seq, d]
        return t.view(seq, heads, d).transpose(0, 1)

    q, k, v = split(x @ wq.T), split(x @ wk.T), split(x @ wv.T)
    p = torch.softmax(q @ k.transpose(1, 2) / d**0.5, -1)
    o = (p @ v).transpose(0, 1).reshape(seq, embed)
    return o @ wo.T, (x, wq, wk, wv, wo, q, k, v, p, o)


def _mha_backward(grad_out, cache, merge):
    x, wq, wk, wv, wo, q, k, v, p, o = cache
    heads, seq, d = q.shape
    do = (grad_out @ wo).view(seq, heads, d).transpose(0, 1)
    dp = do @ v.transpose(1, 2)
    ds = p * (dp - (dp * p).sum(-1, keepdim=True)) / d**0.5
    dq, dk, dv = merge(ds @ k), merge(ds.transpose(1, 2) @ q), merge(p.transpose(1, 2) @ do)
    return dq @ wq + dk @ wk + dv @ wv, dq.T @ x, dk.T @ x, dv.T @ x, grad_out.T @ o


def mha_backward(grad_out, cache):
    return _mha_backward(grad_out, cache, lambda t: torch.cat(list(t), dim=1))


def mha_heads_reversed(grad_out, cache):
    """The per-head gradients concatenated last head first."""
    return _mha_backward(grad_out, cache, lambda t: torch.cat(list(t)[::-1], dim=1))


def softmax_forward(x):
    return torch.softmax(x, -1)


def softmax_no_sum_term(grad_out, out):
    """out * grad_out: the - out * sum(grad_out * out) term of the softmax Jacobian is missing."""
    return out * grad_out
