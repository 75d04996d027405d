"""Loss functions: a scalar (0-d) ``loss`` from predictions and targets.

Every loss here uses mean reduction, so every gradient carries a ``1 / N``.
The upstream gradient ``grad_out`` of a loss is a 0-d tensor (1 when the
loss is the end of the graph); each backward still multiplies by it, so the
same function works when the loss is part of a bigger expression.

``mse``: the fast.ai lesson's loss, a ``[n, 1]`` prediction against ``[n]``::

    loss = mean_n (inp[n, 0] - targ[n])^2

The classification losses, all of whose gradients come out as "prediction
minus target" (or the target's share of it)::

    cross_entropy   loss = mean_b (logsumexp(logits[b]) - logits[b, targ[b]])
    nll_loss        loss = -mean_b logp[b, targ[b]]
    binary_cross_entropy_with_logits
                    loss = mean(-(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))))
"""

import torch
from torch import Tensor

from gradcheck_cli.layers.activations import (
    logsumexp_forward,
    sigmoid_forward,
    softmax_forward,
)


def mse_forward(inp: Tensor, targ: Tensor) -> Tensor:
    """loss = mean_n (inp[n, 0] - targ[n])^2            [n, 1], [n] -> []"""
    return (inp.squeeze(-1) - targ).pow(2).mean()


def mse_backward(grad_out: Tensor, inp: Tensor, targ: Tensor) -> Tensor:
    """Gradient of ``loss = mean_n (inp[n, 0] - targ[n])^2`` with respect to ``inp``.

    d loss / d inp[n, 0] = 2 * (inp[n, 0] - targ[n]) / n
        the square gives 2 * diff, the mean gives 1 / n.
    dL/dinp = grad_out * 2 * (inp.squeeze(-1) - targ).unsqueeze(-1) / n
    Shapes: the diff is [n]; unsqueeze(-1) gives back inp's [n, 1].
    (targ is data, not learned: no gradient for it.)
    """
    n = inp.shape[0]
    diff = inp.squeeze(-1) - targ
    return grad_out * 2.0 * diff.unsqueeze(-1) / n


def cross_entropy_forward(logits: Tensor, targ: Tensor) -> Tensor:
    """loss = mean_b (logsumexp_c logits[b, c] - logits[b, targ[b]])

    [batch, classes], [batch] -> [] (a scalar). The same as the mean of
    -log_softmax(logits)[b, targ[b]].
    """
    rows = torch.arange(logits.shape[0], device=logits.device)
    return (logsumexp_forward(logits) - logits[rows, targ]).mean()


def cross_entropy_backward(grad_out: Tensor, logits: Tensor, targ: Tensor) -> Tensor:
    """Gradient of mean cross-entropy with respect to the logits.

    Per row: d/d logits[c] of (logsumexp(logits) - logits[targ])
             = softmax(logits)[c] - [c == targ]
    so the gradient is "predicted probabilities minus the one-hot target",
    divided by batch for the mean.
    dL/dlogits = grad_out * (softmax(logits) - one_hot(targ)) / batch     [batch, classes]
    (targ is integer class indices: no gradient for it.)
    """
    batch = logits.shape[0]
    rows = torch.arange(batch, device=logits.device)
    probs = softmax_forward(logits)
    one_hot = torch.zeros_like(logits)
    one_hot[rows, targ] = 1.0
    return grad_out * (probs - one_hot) / batch


def nll_loss_forward(logp: Tensor, targ: Tensor) -> Tensor:
    """loss = -mean_b logp[b, targ[b]]                  [batch, classes], [batch] -> []

    Picks each row's log-probability of its target class; logp is used as
    given (normally the output of log_softmax).
    """
    rows = torch.arange(logp.shape[0], device=logp.device)
    return -logp[rows, targ].mean()


def nll_loss_backward(grad_out: Tensor, logp: Tensor, targ: Tensor) -> Tensor:
    """Gradient of ``loss = -mean_b logp[b, targ[b]]`` with respect to ``logp``.

    d loss / d logp[b, c] = -1 / batch where c == targ[b], else 0: only the
    picked entry of each row was used by the forward.
    dL/dlogp = -grad_out / batch at [b, targ[b]], zero elsewhere    [batch, classes]
    (Indexing in the forward is a scatter in the backward.)
    """
    batch = logp.shape[0]
    rows = torch.arange(batch, device=logp.device)
    grad_logp = torch.zeros_like(logp)
    grad_logp[rows, targ] = -grad_out / batch
    return grad_logp


def binary_cross_entropy_with_logits_forward(logits: Tensor, targ: Tensor) -> Tensor:
    """loss = mean over all elements of -(t * log(p) + (1 - t) * log(1 - p)), p = sigmoid(logits)

    Written without p, in the form that cannot overflow:
        loss = mean(max(x, 0) - x * t + log(1 + exp(-|x|)))      x = logits, t = targ
    """
    x, t = logits, targ
    return (x.clamp(min=0) - x * t + torch.log1p(torch.exp(-x.abs()))).mean()


def binary_cross_entropy_with_logits_backward(grad_out: Tensor, logits: Tensor, targ: Tensor) -> Tensor:
    """Gradient of mean binary cross-entropy with respect to the logits.

    With p = sigmoid(x) and dp/dx = p * (1 - p):
        d/dx of -(t * log(p) + (1 - t) * log(1 - p))
            = -(t * (1 - p) - (1 - t) * p) = p - t
    Prediction minus target, as for softmax cross-entropy; the mean over all
    N = logits.numel() elements adds 1 / N.
    dL/dlogits = grad_out * (sigmoid(logits) - targ) / N       [same shape as logits]
    (targ is data, not learned: no gradient for it.)
    """
    p = sigmoid_forward(logits)
    return grad_out * (p - targ) / logits.numel()
