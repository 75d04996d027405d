"""Tolerances and the comparison of one tensor against its expected value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .result import Check

# (atol, rtol) per dtype, in the spirit of torch.testing.assert_close. float32
# is a little looser than assert_close's rtol (1.3e-6): a hand-written backward
# sums in a different order than autograd, and that is not a bug.
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-7, 1e-7),
    "float32": (1e-5, 1e-5),
    "float16": (1e-3, 1e-3),
    "bfloat16": (1e-2, 1.6e-2),
}
DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float

    def allclose(self, actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        """Elementwise: |actual - expected| <= atol + rtol * |expected| (NaN never close)."""
        return (actual - expected).abs() <= self.atol + self.rtol * expected.abs()


def tolerance_for(dtype: str, atol: float | None = None, rtol: float | None = None) -> Tolerance:
    default_atol, default_rtol = DEFAULT_TOLERANCES[dtype]
    return Tolerance(
        atol=default_atol if atol is None else atol,
        rtol=default_rtol if rtol is None else rtol,
    )


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
    rel = torch.where(finite & (e != 0), diff / e.abs().clamp_min(1e-300), torch.zeros_like(e))
    check.max_abs_err = float(diff.max()) if diff.numel() else 0.0
    check.max_rel_err = float(rel.max()) if rel.numel() else 0.0
    check.mismatched = int((~close).sum())
    if check.mismatched:
        check.status = "mismatch"
        # The worst element: a non-finite one first, else the largest excess over tolerance.
        excess = diff - (tol.atol + tol.rtol * e.abs())
        excess = torch.where(finite, excess, torch.full_like(e, float("inf")))
        flat = int(excess.reshape(-1).argmax())
        index = list(torch.unravel_index(torch.tensor(flat), e.shape)) if e.dim() else []
        check.worst_index = [int(i) for i in index]
        check.expected_value = float(e.reshape(-1)[flat])
        check.actual_value = float(a.reshape(-1)[flat])
    return check


def excerpt(expected: torch.Tensor, actual: torch.Tensor, index: list[int], radius: int = 2) -> str:
    """A few values around ``index``, expected beside actual (for --verbose)."""
    e = expected.detach().to("cpu", torch.float64)
    a = actual.detach().to("cpu", torch.float64)
    if e.dim() == 0:
        return f"expected {float(e):.6g}  got {float(a):.6g}"
    # Keep the last axis as columns and the worst element's row; flatten the rest.
    lead = tuple(index[:-1])
    col = index[-1]
    lo, hi = max(0, col - radius), min(e.shape[-1], col + radius + 1)
    erow, arow = e[lead][lo:hi], a[lead][lo:hi]
    where = ", ".join(str(i) for i in lead)
    header = f"[{where}{', ' if where else ''}{lo}:{hi}]"
    fmt = lambda row: "  ".join(f"{float(v):>10.4g}" for v in row)  # noqa: E731
    marks = "  ".join(("^" if lo + i == col else " ").rjust(10) for i in range(hi - lo))
    return f"{header}\n  expected {fmt(erow)}\n  got      {fmt(arow)}\n           {marks}"
