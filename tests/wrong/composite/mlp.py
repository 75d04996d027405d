"""lin -> relu -> lin -> mse, each layer with its own backward, chained by hand."""


def lin(x, w, b):
    return x @ w + b


def lin_backward(dout, x, w):
    return dout @ w.T, x.T @ dout, dout.sum(0)  # dx, dw, db


def relu(x):
    return x.clamp_min(0.0)


def relu_backward(dout, x):
    return dout * (x > 0)


def mse(pred, targ):
    return (pred.squeeze(-1) - targ).pow(2).mean()


def mse_backward(dloss, pred, targ):
    return dloss * 2 * (pred.squeeze(-1) - targ).unsqueeze(-1)  # BUG: mse is a mean: divide by n


def model_forward(x, targ, w1, b1, w2, b2):
    l1 = lin(x, w1, b1)
    l2 = relu(l1)
    pred = lin(l2, w2, b2)
    loss = mse(pred, targ)
    return loss, (x, l1, l2, pred, targ)


def model_backward(dloss, acts, w1, w2):
    x, l1, l2, pred, targ = acts
    dpred = mse_backward(dloss, pred, targ)
    dl2, dw2, db2 = lin_backward(dpred, l2, w2)
    dl1 = relu_backward(dl2, l1)
    dx, dw1, db1 = lin_backward(dl1, x, w1)
    return dx, dw1, db1, dw2, db2
