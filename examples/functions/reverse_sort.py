"""Reformer's ``ReverseSort`` (LSH attention): undo a sort of the sequence.

The forward gathers along the sequence by ``undo_sorted_idx``, the inverse of
the sort ``sorted_idx``; so the backward, which must scatter the gradients back,
can gather them by ``sorted_idx`` instead. That holds only because the indices
are permutations: the spec draws ``sorted_idx`` as one and derives its inverse.
"""

import torch
from torch.autograd import Function


class ReverseSort(Function):
    @staticmethod
    def forward(ctx, out_vectors, logits, sorted_idx, undo_sorted_idx):
        with torch.no_grad():
            ctx.sorted_idx = sorted_idx
            expanded_undo_sort_indices = undo_sorted_idx.unsqueeze(-1).expand(out_vectors.shape)
            out_vectors = torch.gather(out_vectors, 2, expanded_undo_sort_indices)
            logits = torch.gather(logits, 2, undo_sorted_idx)
        return out_vectors, logits

    @staticmethod
    def backward(ctx, grad_out_vectors, grad_logits):
        sorted_idx = ctx.sorted_idx
        expanded_sort_indices = sorted_idx.unsqueeze(-1).expand(grad_out_vectors.shape)
        grad_out_vectors = torch.gather(grad_out_vectors, 2, expanded_sort_indices)
        grad_logits = torch.gather(grad_logits, 2, sorted_idx)
        return grad_out_vectors, grad_logits, None, None
