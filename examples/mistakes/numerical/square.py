"""out = x * x, with its correct backward: the spec that checks it has the mistake."""


def square_forward(x):
    return x * x


def square_backward(grad_out, x):
    return 2 * x * grad_out
