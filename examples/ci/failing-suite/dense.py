def dense_forward(x, w, b):
    return x @ w + b


def dense_backward(grad_out, x, w, b):
    grad_x = grad_out @ w.T
    grad_w = x.T @ grad_out
    grad_b = grad_out  # wrong: b was broadcast over the batch, so its gradient is grad_out.sum(0)
    return grad_x, grad_w, grad_b
