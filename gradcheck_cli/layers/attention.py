"""Attention: the scaled dot-product core, and multi-head attention around it.

``scaled_dot_product_attention`` (``q`` is ``[..., seq_q, d_k]``, ``k`` is
``[..., seq_k, d_k]``, ``v`` is ``[..., seq_k, d_v]``)::

    scores = q @ k.T / sqrt(d_k)          (causal: scores[i, j] = -inf where j > i)
    probs  = softmax(scores, dim=-1)
    out    = probs @ v

The causal mask is top-left aligned, as in
``F.scaled_dot_product_attention(..., is_causal=True)``: query ``i`` sees keys
``0 .. i`` even when ``seq_q != seq_k``.

``multi_head_attention`` (self-attention, torch.nn.Linear layout for the four
projections, ``embed = heads * head_dim``)::

    q, k, v = x @ wq.T + bq, x @ wk.T + bk, x @ wv.T + bv     split into heads
    attn    = scaled_dot_product_attention(q, k, v)         one per head
    out     = concat_heads(attn) @ wo.T + bo
"""

import math
from typing import NamedTuple

import torch
from torch import Tensor

from gradcheck_cli.layers.linear import linear_backward


def sdpa_forward(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> tuple[Tensor, Tensor]:
    """out = softmax(q @ k.T / sqrt(d_k)) @ v; also returns ``probs`` for the backward.

    Shapes: q [..., seq_q, d_k], k [..., seq_k, d_k], v [..., seq_k, d_v]
            probs [..., seq_q, seq_k], out [..., seq_q, d_v]
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = q @ k.transpose(-2, -1) * scale
    if causal:
        seq_q, seq_k = scores.shape[-2], scores.shape[-1]
        allowed = torch.ones(seq_q, seq_k, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~allowed, float("-inf"))
    probs = scores.softmax(dim=-1)
    return probs @ v, probs


def sdpa_backward(
    grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, probs: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of ``out = P @ v``, ``P = softmax(S)``, ``S = q @ k.T / sqrt(d_k)``.

    Walk the forward backwards, one matmul at a time (call the grads dO, dP, dS):

    dL/dv = P.T @ dO                    [seq_k, seq_q] @ [seq_q, d_v] -> [seq_k, d_v]
    dP    = dO @ v.T                    [seq_q, d_v] @ [d_v, seq_k]   -> [seq_q, seq_k]

    Softmax, row by row: dP[i, j] / dS[i, m] = P[i, j] * (1[j == m] - P[i, m]), so
    dS    = P * (dP - sum(dP * P, -1, keepdim=True))
    A masked score had P = 0, so its dS is 0: the mask needs no backward of its own.

    dL/dq = dS @ k / sqrt(d_k)          [seq_q, seq_k] @ [seq_k, d_k] -> [seq_q, d_k]
    dL/dk = dS.T @ q / sqrt(d_k)        [seq_k, seq_q] @ [seq_q, d_k] -> [seq_k, d_k]

    (``.T`` swaps the last two dims; any leading batch/head dims just ride along.)
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    grad_v = probs.transpose(-2, -1) @ grad_out
    grad_probs = grad_out @ v.transpose(-2, -1)
    grad_scores = probs * (grad_probs - (grad_probs * probs).sum(dim=-1, keepdim=True))
    grad_q = grad_scores @ k * scale
    grad_k = grad_scores.transpose(-2, -1) @ q * scale
    return grad_q, grad_k, grad_v


def split_heads(t: Tensor, heads: int) -> Tensor:
    """[batch, seq, heads * head_dim] -> [batch, heads, seq, head_dim]"""
    batch, seq, embed = t.shape
    return t.reshape(batch, seq, heads, embed // heads).transpose(1, 2)


def merge_heads(t: Tensor) -> Tensor:
    """[batch, heads, seq, head_dim] -> [batch, seq, heads * head_dim]

    The inverse of split_heads. Both only move entries around, so each
    one's backward is the other.
    """
    batch, heads, seq, head_dim = t.shape
    return t.transpose(1, 2).reshape(batch, seq, heads * head_dim)


class MhaCache(NamedTuple):
    """What mha_backward needs from the forward."""

    x: Tensor  # [batch, seq, embed]
    wq: Tensor
    bq: Tensor
    wk: Tensor
    bk: Tensor
    wv: Tensor
    bv: Tensor
    wo: Tensor
    bo: Tensor
    q: Tensor  # [batch, heads, seq, head_dim], after split_heads
    k: Tensor
    v: Tensor
    probs: Tensor  # [batch, heads, seq, seq]
    concat: Tensor  # [batch, seq, embed], the heads' outputs side by side


def mha_forward(
    x: Tensor,
    wq: Tensor,
    bq: Tensor,
    wk: Tensor,
    bk: Tensor,
    wv: Tensor,
    bv: Tensor,
    wo: Tensor,
    bo: Tensor,
    heads: int,
) -> tuple[Tensor, MhaCache]:
    """out = concat_h(softmax(q_h @ k_h.T / sqrt(head_dim)) @ v_h) @ wo.T + bo

    with q = x @ wq.T + bq (same for k, v), each split into ``heads`` slices of
    ``head_dim`` features. Shapes: x and out [batch, seq, embed].
    """
    q = split_heads(x @ wq.T + bq, heads)
    k = split_heads(x @ wk.T + bk, heads)
    v = split_heads(x @ wv.T + bv, heads)
    attn, probs = sdpa_forward(q, k, v, causal=False)
    concat = merge_heads(attn)
    out = concat @ wo.T + bo
    return out, MhaCache(x, wq, bq, wk, bk, wv, bv, wo, bo, q, k, v, probs, concat)


def rows_linear_backward(
    grad_out: Tensor, x: Tensor, weight: Tensor, bias: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """linear_backward for ``x`` of shape [batch, seq, in].

    A projection treats every (batch, seq) position as one row, so flatten the
    leading dims into rows and use the 2-D formulas: the sums over the batch
    in dL/dweight and dL/dbias become sums over all batch * seq rows.
    """
    rows_grad = grad_out.reshape(-1, grad_out.shape[-1])
    rows_x = x.reshape(-1, x.shape[-1])
    grad_x, grad_weight, grad_bias = linear_backward(rows_grad, rows_x, weight, bias)
    return grad_x.reshape(x.shape), grad_weight, grad_bias


def mha_backward(
    grad_out: Tensor, cache: MhaCache
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of multi-head self-attention.

    Returned as x, wq, bq, wk, bk, wv, bv, wo, bo.

    Undo the forward step by step, reusing the pieces' backwards:
    1. out = concat @ wo.T + bo          linear backward -> d concat, d wo, d bo
    2. concat = merge_heads(attn)        d attn = split_heads(d concat)
    3. attn = sdpa(q, k, v)              sdpa_backward   -> d q, d k, d v (all heads)
    4. q = split_heads(x @ wq.T + bq)    merge_heads, then linear backward -> d wq, d bq
       (same for k and v)
    5. x fed all three projections, so its gradient is the sum of the three:
       dL/dx = dq_rows @ wq + dk_rows @ wk + dv_rows @ wv

    dL/dbk comes out 0 up to rounding: bk adds the same q_i . bk to every score
    in query i's row, and softmax ignores a constant added to a whole row.
    """
    c = cache
    heads = c.q.shape[1]
    grad_concat, grad_wo, grad_bo = rows_linear_backward(grad_out, c.concat, c.wo, c.bo)
    grad_attn = split_heads(grad_concat, heads)
    grad_q, grad_k, grad_v = sdpa_backward(grad_attn, c.q, c.k, c.v, c.probs)
    grad_x_q, grad_wq, grad_bq = rows_linear_backward(merge_heads(grad_q), c.x, c.wq, c.bq)
    grad_x_k, grad_wk, grad_bk = rows_linear_backward(merge_heads(grad_k), c.x, c.wk, c.bk)
    grad_x_v, grad_wv, grad_bv = rows_linear_backward(merge_heads(grad_v), c.x, c.wv, c.bv)
    grad_x = grad_x_q + grad_x_k + grad_x_v
    return (
        grad_x,
        grad_wq,
        grad_bq,
        grad_wk,
        grad_bk,
        grad_wv,
        grad_bv,
        grad_wo,
        grad_bo,
    )
