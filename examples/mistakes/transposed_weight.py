"""A fast.ai-style linear layer whose weight gradient is transposed."""


def lin(x, w, b):
    return x @ w + b


def lin_grad(x, out, w, b):
    x.g = out.g @ w.t()
    w.g = out.g.t() @ x  # the mistake: should be x.t() @ out.g, [in, out] like w
    b.g = out.g.sum(0)
