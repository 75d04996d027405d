"""Recurrent cells: one time step, in torch.nn.RNNCell / torch.nn.LSTMCell layout.

``rnn_cell`` (``w_ih`` is ``[hidden, input_size]``, ``w_hh`` is ``[hidden, hidden]``)::

    h_next = tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)

``lstm_cell`` (``w_ih`` is ``[4 * hidden, input_size]``, ``w_hh`` is
``[4 * hidden, hidden]``; the four row blocks are the gates i, f, g, o)::

    gates      = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of the four hidden-wide slices
    c_next     = f * c + i * g
    h_next     = o * tanh(c_next)
"""

from typing import NamedTuple

import torch
from torch import Tensor


def rnn_cell_forward(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
    """h_next = tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)      [batch, hidden]"""
    return torch.tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)


def rnn_cell_backward(
    grad_h_next: Tensor,
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    h_next: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of ``h_next = tanh(a)``, ``a = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh``.

    Returned as x, h, w_ih, w_hh, b_ih, b_hh.

    Through the tanh: tanh'(a) = 1 - tanh(a)^2 = 1 - h_next^2, elementwise, so
    da = grad_h_next * (1 - h_next^2)                    [batch, hidden]

    Then ``a`` is two linear layers added together, each gets all of da
    (input is short for input_size):
    dL/dx    = da @ w_ih      [batch, hidden] @ [hidden, input]  -> [batch, input]
    dL/dh    = da @ w_hh      [batch, hidden] @ [hidden, hidden] -> [batch, hidden]
    dL/dw_ih = da.T @ x       [hidden, batch] @ [batch, input]   -> [hidden, input]
    dL/dw_hh = da.T @ h       [hidden, batch] @ [batch, hidden]  -> [hidden, hidden]
    dL/db_ih = dL/db_hh = da.sum(0): both biases were broadcast over the batch.
    """
    grad_a = grad_h_next * (1 - h_next**2)
    grad_x = grad_a @ w_ih
    grad_h = grad_a @ w_hh
    grad_w_ih = grad_a.T @ x
    grad_w_hh = grad_a.T @ h
    grad_bias = grad_a.sum(dim=0)
    return grad_x, grad_h, grad_w_ih, grad_w_hh, grad_bias, grad_bias


class LstmCache(NamedTuple):
    """What lstm_cell_backward needs from the forward (gates after activation)."""

    x: Tensor  # [batch, input_size]
    h: Tensor  # [batch, hidden]
    c: Tensor  # [batch, hidden]
    w_ih: Tensor  # [4 * hidden, input_size]
    w_hh: Tensor  # [4 * hidden, hidden]
    i: Tensor  # input gate, sigmoid          [batch, hidden]
    f: Tensor  # forget gate, sigmoid
    g: Tensor  # candidate cell, tanh
    o: Tensor  # output gate, sigmoid
    tanh_c_next: Tensor  # tanh(c_next)


def lstm_cell_forward(
    x: Tensor,
    h: Tensor,
    c: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
) -> tuple[Tensor, Tensor, LstmCache]:
    """h_next = o * tanh(c_next), c_next = f * c + i * g       both [batch, hidden]

    with [i | f | g | o] = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh split in four
    along the feature dim, then sigmoid, sigmoid, tanh, sigmoid.
    """
    gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    a_i, a_f, a_g, a_o = gates.chunk(4, dim=1)
    i = torch.sigmoid(a_i)
    f = torch.sigmoid(a_f)
    g = torch.tanh(a_g)
    o = torch.sigmoid(a_o)
    c_next = f * c + i * g
    tanh_c_next = torch.tanh(c_next)
    h_next = o * tanh_c_next
    return h_next, c_next, LstmCache(x, h, c, w_ih, w_hh, i, f, g, o, tanh_c_next)


def lstm_cell_backward(
    grad_h_next: Tensor, grad_c_next: Tensor, cache: LstmCache
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of one LSTM step, returned as x, h, c, w_ih, w_hh, b_ih, b_hh.

    c_next reaches the loss two ways: directly (grad_c_next) and through
    h_next = o * tanh(c_next). Add both:
    dc_total = grad_c_next + grad_h_next * o * (1 - tanh(c_next)^2)

    Products, elementwise:
    do = grad_h_next * tanh(c_next)
    di = dc_total * g,   dg = dc_total * i,   df = dc_total * c
    dL/dc = dc_total * f

    Through the activations (sigmoid' = s * (1 - s), tanh' = 1 - t^2):
    da_i = di * i * (1 - i),  da_f = df * f * (1 - f),
    da_g = dg * (1 - g^2),    da_o = do * o * (1 - o)

    The forward split the gates with chunk, so the backward concatenates:
    dgates = [da_i | da_f | da_g | da_o]                 [batch, 4 * hidden]
    and gates is two linear layers added together, each gets all of dgates:
    dL/dx    = dgates @ w_ih       [batch, 4h] @ [4h, input_size] -> [batch, input_size]
    dL/dh    = dgates @ w_hh       [batch, 4h] @ [4h, hidden]     -> [batch, hidden]
    dL/dw_ih = dgates.T @ x        [4h, batch] @ [batch, input_size]
    dL/dw_hh = dgates.T @ h        [4h, batch] @ [batch, hidden]
    dL/db_ih = dL/db_hh = dgates.sum(0): the biases were broadcast over the batch.
    """
    x, h, c, w_ih, w_hh, i, f, g, o, tanh_c_next = cache
    grad_c_total = grad_c_next + grad_h_next * o * (1 - tanh_c_next**2)
    grad_o = grad_h_next * tanh_c_next
    grad_i = grad_c_total * g
    grad_g = grad_c_total * i
    grad_f = grad_c_total * c
    grad_c = grad_c_total * f
    grad_gates = torch.cat(
        [
            grad_i * i * (1 - i),
            grad_f * f * (1 - f),
            grad_g * (1 - g**2),
            grad_o * o * (1 - o),
        ],
        dim=1,
    )
    grad_x = grad_gates @ w_ih
    grad_h = grad_gates @ w_hh
    grad_w_ih = grad_gates.T @ x
    grad_w_hh = grad_gates.T @ h
    grad_bias = grad_gates.sum(dim=0)
    return grad_x, grad_h, grad_c, grad_w_ih, grad_w_hh, grad_bias, grad_bias
