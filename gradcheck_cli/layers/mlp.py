"""The fast.ai lesson's whole model, its backward chained by hand.

Forward, one layer at a time::

    l1   = x @ w1 + b1          lin      [n, in]     -> [n, hidden]
    l2   = relu(l1)             relu     [n, hidden] -> [n, hidden]
    pred = l2 @ w2 + b2         lin      [n, hidden] -> [n, 1]
    loss = mse(pred, targ)      mse      [n, 1], [n] -> []

The backward is the chain rule as composition: walk the layers in reverse,
each layer's backward turning the gradient of its output into the gradients
of its inputs (and of its parameters). No layer needs to know about the
others.
"""

from torch import Tensor

from gradcheck_cli.layers.activations import relu_backward, relu_forward
from gradcheck_cli.layers.linear import lin_backward, lin_forward
from gradcheck_cli.layers.losses import mse_backward, mse_forward


def mlp_activations(
    x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Run lin -> relu -> lin, keeping every intermediate: (l1, l2, pred).

    l1 = x @ w1 + b1 [n, hidden];  l2 = relu(l1) [n, hidden];  pred = l2 @ w2 + b2 [n, 1]
    """
    l1 = lin_forward(x, w1, b1)
    l2 = relu_forward(l1)
    pred = lin_forward(l2, w2, b2)
    return l1, l2, pred


def mlp_forward(x: Tensor, targ: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    """loss = mse(relu(x @ w1 + b1) @ w2 + b2, targ)        a scalar"""
    _, _, pred = mlp_activations(x, w1, b1, w2, b2)
    return mse_forward(pred, targ)


def mlp_backward(
    grad_out: Tensor, x: Tensor, targ: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of the loss for x, w1, b1, w2, b2: the layers' backwards in reverse order.

    The forward is re-run to get the intermediates l1, l2, pred, then:
        dL/dpred               = mse_backward(grad_out, pred, targ)    [n, 1]
        dL/dl2, dL/dw2, dL/db2 = lin_backward(dL/dpred, l2, w2, b2)
                                      [n, hidden], [hidden, 1], [1]
        dL/dl1                 = relu_backward(dL/dl2, l1)             [n, hidden]
        dL/dx, dL/dw1, dL/db1  = lin_backward(dL/dl1, x, w1, b1)
                                      [n, in], [in, hidden], [hidden]
    Each step is dL/d(input) = dL/d(output) * d(output)/d(input): the chain rule,
    one layer at a time.
    """
    l1, l2, pred = mlp_activations(x, w1, b1, w2, b2)
    grad_pred = mse_backward(grad_out, pred, targ)
    grad_l2, grad_w2, grad_b2 = lin_backward(grad_pred, l2, w2, b2)
    grad_l1 = relu_backward(grad_l2, l1)
    grad_x, grad_w1, grad_b1 = lin_backward(grad_l1, x, w1, b1)
    return grad_x, grad_w1, grad_b1, grad_w2, grad_b2
