"""ReLU whose backward forgets the mask."""


def relu_forward(x):
    return x.clamp(min=0)


def relu_backward(grad_out, x):
    return grad_out  # the mistake: no gradient flows where x <= 0: grad_out * (x > 0)
