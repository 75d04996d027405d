"""A linear layer (torch.nn.Linear's layout) whose bias gradient is not summed over the batch."""


def linear_forward(x, weight, bias):
    return x @ weight.T + bias


def linear_backward(grad_out, x, weight, bias):
    grad_x = grad_out @ weight
    grad_weight = grad_out.T @ x
    grad_bias = grad_out  # the mistake: bias is broadcast over the batch, so sum: grad_out.sum(0)
    return grad_x, grad_weight, grad_bias
