"""As in the fast.ai lesson (part 2, "backprop"): gradients live on a `.g` attribute."""


def lin(x, w, b):
    return x @ w + b


def lin_grad(inp, out, w, b):
    inp.g = out.g @ w.t()
    w.g = (inp.unsqueeze(-1) * out.g.unsqueeze(1)).sum(0)
    b.g = out.g  # BUG: b was broadcast over the rows: its gradient is out.g.sum(0)
