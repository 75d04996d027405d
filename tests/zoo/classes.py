"""Deliberately wrong backwards as classes, the way the fast.ai lesson builds its
modules: ``__call__`` remembers input and output, ``backward()`` reads
``self.out.g`` and sets ``.g`` on the input and the parameters."""

import torch


class Lin:
    def __init__(self, w, b):
        self.w, self.b = w, b

    def __call__(self, inp):
        self.inp = inp
        self.out = inp @ self.w + self.b
        return self.out

    def backward(self):
        self.inp.g = self.out.g @ self.w.t()
        self.w.g = self.inp.t() @ self.out.g
        self.b.g = self.out.g.sum(0)


class LinWTransposed(Lin):
    def backward(self):
        """w.g = out.g.T @ inp: [out, in] instead of [in, out]."""
        self.inp.g = self.out.g @ self.w.t()
        self.w.g = self.out.g.t() @ self.inp
        self.b.g = self.out.g.sum(0)


class LinLoopFromOne(Lin):
    def backward(self):
        """A loop over the output units that starts at 1: column 0 of w.g stays 0."""
        self.inp.g = self.out.g @ self.w.t()
        self.w.g = torch.zeros_like(self.w)
        for o in range(1, self.w.shape[1]):
            self.w.g[:, o] = self.inp.t() @ self.out.g[:, o]
        self.b.g = self.out.g.sum(0)


class Relu:
    def __call__(self, inp):
        self.inp = inp
        self.out = inp.clamp_min(0.0)
        return self.out

    def backward(self):
        """inp.g = out.g: the (inp > 0) mask is forgotten."""
        self.inp.g = self.out.g
