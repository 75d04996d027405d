"""Loss gradients, fast.ai style: the end of the chain sets inp.g and reads no out.g."""

import torch


def mse(output, targ):
    return (output.squeeze(-1) - targ).pow(2).mean()


def mse_grad(inp, targ):
    # grad of the loss with respect to the output of the previous layer
    inp.g = 2.0 * (inp.squeeze(-1) - targ).unsqueeze(-1) / inp.shape[0]


def cross_entropy_grad(inp, targ):
    # softmax minus the one-hot target, averaged over the batch
    probs = inp.softmax(-1)
    probs[torch.arange(inp.shape[0]), targ] -= 1
    inp.g = probs / inp.shape[0]
