"""Embedding: a lookup table, indexed by integer tokens.

``weight`` is ``[vocab, dim]``; each index picks one row::

    out[b, s, :] = weight[indices[b, s], :]           out [batch, seq, dim]

Looking a row up is the same as multiplying a one-hot vector by ``weight``,
so the backward is that matmul's transpose: a scatter-add of ``grad_out``
rows into the table. The indices are integers and get no gradient.
"""

from torch import Tensor


def embedding_forward(indices: Tensor, weight: Tensor) -> Tensor:
    """out[..., :] = weight[indices[...], :]           [batch, seq] -> [batch, seq, dim]"""
    return weight[indices]


def embedding_backward(grad_out: Tensor, indices: Tensor, weight: Tensor) -> Tensor:
    """Gradient of the table lookup.

    d out[b, s, :] / d weight[v, :] = 1 if indices[b, s] == v else 0, so
    dL/dweight[v] = sum of grad_out[b, s] over every (b, s) with indices[b, s] == v.

    A token that occurs several times collects the sum of its rows' gradients;
    a token that never occurs gets zeros. ``index_add`` does exactly this:
    it adds row k of ``grad_rows`` into row ``token_ids[k]`` of a zero table.

    grad_rows [batch * seq, dim], token_ids [batch * seq] -> dL/dweight [vocab, dim]
    """
    dim = weight.shape[1]
    token_ids = indices.reshape(-1)
    grad_rows = grad_out.reshape(-1, dim)
    return weight.new_zeros(weight.shape).index_add(0, token_ids, grad_rows)
