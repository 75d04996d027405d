"""The comparison of one tensor against its expected value (tolerances: see tolerance.py)."""

from __future__ import annotations

import math
from typing import Any

import torch

from .result import Check
from .tolerance import DEFAULT_TOLERANCES, Judge, Tolerance, tolerance_for

__all__ = [
    "DEFAULT_TOLERANCES",
    "DTYPES",
    "Judge",
    "NotATensor",
    "Tolerance",
    "as_tensor",
    "compare",
    "describe_dtype",
    "excerpt",
    "tolerance_for",
]

DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


class NotATensor(TypeError):
    """The checked code handed back something that is not a tensor or array."""


def as_tensor(value: Any) -> torch.Tensor:
    """A torch tensor from a tensor, a numpy array or a Python number."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        np = None  # type: ignore[assignment]
    if np is not None and isinstance(value, (np.ndarray, np.generic)):
        if value.dtype == object:
            raise NotATensor("a numpy array of Python objects")
        return torch.from_numpy(np.array(value, copy=True))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(value, dtype=torch.float64)
    raise NotATensor(f"a {type(value).__name__}")


def describe_dtype(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def compare(
    name: str,
    kind: str,
    expected: torch.Tensor,
    actual: torch.Tensor,
    tol: Tolerance,
    expected_labels: list[str | None] | None = None,
    actual_labels: list[str | None] | None = None,
) -> Check:
    """Compare values elementwise (in float64 on the CPU) and fill a :class:`Check`."""
    check = Check(
        name=name,
        kind=kind,
        expected_shape=list(expected.shape),
        actual_shape=list(actual.shape),
        status="pass",
        numel=expected.numel(),
        expected_labels=expected_labels,
        actual_labels=actual_labels,
    )
    if tuple(expected.shape) != tuple(actual.shape):
        check.status = "shape_error"
        return check
    e = expected.detach().to("cpu", torch.float64)
    a = actual.detach().to("cpu", torch.float64)
    close = tol.allclose(a, e)
    finite = torch.isfinite(a) & torch.isfinite(e)
    diff = torch.where(finite, (a - e).abs(), torch.zeros_like(e))
    # Relative to |expected|; an error where zero was expected is infinitely relative
    # (JSON shows it as null), never hidden as 0.
    rel = torch.where(e != 0, diff / e.abs().clamp_min(1e-300), torch.where(diff > 0, math.inf, 0.0))
    check.max_abs_err = float(diff.max()) if diff.numel() else 0.0
    check.max_rel_err = float(rel.max()) if rel.numel() else 0.0
    check.mismatched = int((~close).sum())
    if check.mismatched:
        check.status = "mismatch"
        # The worst element, among the mismatched ones: a non-finite one first,
        # else the largest excess over the tolerance.
        excess = diff - (tol.atol + tol.rtol * e.abs())
        excess = torch.where(finite, excess, torch.full_like(e, float("inf")))
        excess = torch.where(close, torch.full_like(e, float("-inf")), excess)
        flat = int(excess.reshape(-1).argmax())
        index = torch.unravel_index(torch.tensor(flat), e.shape) if e.dim() else ()
        check.worst_index = [int(i) for i in index]
        check.expected_value = float(e.reshape(-1)[flat])
        check.actual_value = float(a.reshape(-1)[flat])
    return check


def excerpt(expected: torch.Tensor, actual: torch.Tensor, index: list[int], radius: int = 2) -> str:
    """Expected beside actual around ``index`` (for --verbose).

    The window is up to three rows (the second-to-last axis) by ``2 * radius
    + 1`` columns (the last axis) of the slice that holds ``index``; other
    axes stay at ``index``. The element at ``index`` is marked with ``<``.
    """
    e = expected.detach().to("cpu", torch.float64)
    a = actual.detach().to("cpu")
    a = (a.real if a.is_complex() else a).to(torch.float64)
    if e.shape != a.shape or len(index) != e.dim() or e.dim() == 0:
        return (
            f"expected {float(e.flatten()[0]):.6g}  got {float(a.flatten()[0]):.6g}"
            if e.numel() and a.numel()
            else ""
        )
    lead = tuple(index[:-2])
    if e.dim() == 1:
        e2, a2, row, col = e[None], a[None], 0, index[0]
    else:
        e2, a2, row, col = e[lead], a[lead], index[-2], index[-1]
    r0, r1 = max(0, row - 1), min(e2.shape[0], row + 2)
    c0, c1 = max(0, col - radius), min(e2.shape[1], col + radius + 1)

    def label(r: int) -> str:
        head = [str(i) for i in lead] + ([str(r)] if e.dim() > 1 else [])
        return "[" + ", ".join(head + [f"{c0}:{c1}"]) + "]"

    def cells(t: torch.Tensor, r: int) -> str:
        return "".join(
            f"{float(t[r, c]):>10.4g}" + ("<" if (r, c) == (row, col) else " ") for c in range(c0, c1)
        )

    labels = [label(r) for r in range(r0, r1)]
    width = max(len(s) for s in labels)
    block = 11 * (c1 - c0)
    lines = [" " * width + "expected".rjust(block) + " |" + "got".rjust(block)]
    for r, text in zip(range(r0, r1), labels):
        lines.append(f"{text.ljust(width)}{cells(e2, r)} |{cells(a2, r)}".rstrip())
    return "\n".join(lines)
