"""The reference LSTM step in torch: autograd differentiates this."""

import torch


def lstm_step(x, prev_h, prev_c, Wx, Wh, b):
    a = x @ Wx + prev_h @ Wh + b
    ai, af, ao, ag = a.chunk(4, dim=1)
    i, f, o, g = torch.sigmoid(ai), torch.sigmoid(af), torch.sigmoid(ao), torch.tanh(ag)  # noqa: F841
    next_c = f * prev_c + g  # BUG: the input gate i is forgotten (a wrong reference)
    next_h = o * torch.tanh(next_c)
    return next_h, next_c
