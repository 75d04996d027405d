"""What kind of mistake a wrong gradient looks like.

Each rule tries one everyday backprop mistake (a transpose, a sum over the
batch never done, a missing 1/n, a ReLU mask forgotten...) and, when the
numbers fit it exactly, names it in ``Check.diagnosis`` and explains it in
``Check.hint``. When nothing fits, the diagnosis stays None and the hint says
so: never guess. Only failing checks are diagnosed, so a diagnosis can never
turn a pass into a failure.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import torch

from .compare import Tolerance
from .result import Check, format_shape
from .spec import Spec, TensorSpec

# Candidate explanations are matched with this much slack over the check's own
# tolerance: summing or rescaling adds rounding of its own.
SLACK = 8.0


@dataclass
class Context:
    spec: Spec
    dims: Mapping[str, int]
    tensor: TensorSpec
    tol: Tolerance
    expected_grads: Mapping[str, torch.Tensor]
    values: Mapping[str, torch.Tensor]


def label_axes(shape: torch.Size | tuple[int, ...] | list[int], dims: Mapping[str, int]) -> list[str | None]:
    """Name each axis after the dim of that size, when exactly one dim has it."""
    labels: list[str | None] = []
    for size in shape:
        names = [n for n, v in dims.items() if v == size]
        labels.append(names[0] if len(names) == 1 else None)
    return labels


def transpose_blind_spots(spec: Spec, dims: Mapping[str, int]) -> list[str]:
    """Notes for tensors whose shape cannot reveal a transpose (two equal axes)."""
    notes = []
    for t in spec.checked:
        shape = spec.shape_of(t, dims)
        for i, j in itertools.combinations(range(len(shape)), 2):
            if shape[i] == shape[j] and shape[i] > 1:
                labels = spec.dim_labels(t)
                notes.append(
                    f"{t.name} is {format_shape(list(shape), labels)}: a transposed gradient has the"
                    " right shape here, so shapes alone cannot catch a transpose (values still do;"
                    " --sweep tries non-square sizes)"
                )
                break
    return notes


def _close(actual: torch.Tensor, expected: torch.Tensor, tol: Tolerance) -> bool:
    if actual.shape != expected.shape:
        return False
    loose = Tolerance(tol.atol * SLACK, tol.rtol * SLACK)
    return bool(loose.allclose(actual, expected).all())


def _axis(i: int, shape: list[int], dims: Mapping[str, int]) -> str:
    label = label_axes([shape[i]], dims)[0]
    return f"dim {i} ({label}={shape[i]})" if label else f"dim {i} (size {shape[i]})"


def explain(check: Check, expected: torch.Tensor, actual: torch.Tensor, ctx: Context) -> None:
    """Fill ``check.diagnosis`` and ``check.hint`` for a failing check."""
    e = expected.detach().to("cpu", torch.float64)
    a = actual.detach().to("cpu", torch.float64)
    rules = _SHAPE_RULES if e.shape != a.shape else _VALUE_RULES
    for rule in rules:
        found = rule(e, a, ctx)
        if found is not None:
            check.diagnosis, check.hint = found
            return
    check.diagnosis = None
    if e.shape != a.shape:
        exp, got = check.shapes_text()
        check.hint = f"shape {got} where {exp} is expected; no known mistake explains the values"
    else:
        check.hint = "no known mistake explains these values (not a transpose, scale, swap or mask)"


# -- rules when the shapes differ ------------------------------------------------


def _nonfinite(e: torch.Tensor, a: torch.Tensor, ctx: Context) -> tuple[str, str] | None:
    bad = ~torch.isfinite(a)
    if not bad.any():
        return None
    count = int(bad.sum())
    first = [int(i) for i in bad.nonzero()[0]] if a.dim() else []
    kinds = []
    if torch.isnan(a).any():
        kinds.append("NaN")
    if torch.isinf(a).any():
        kinds.append("Inf")
    where = f", first at {first}" if first else ""
    return "nonfinite", (
        f"{count} of {a.numel()} elements are {'/'.join(kinds)}{where}:"
        " a division by zero, a log of 0, or an exp that overflowed?"
    )


def _transposed(e: torch.Tensor, a: torch.Tensor, ctx: Context) -> tuple[str, str] | None:
    if a.dim() < 2 or a.dim() != e.dim():
        return None
    for i, j in itertools.combinations(range(a.dim()), 2):
        swapped = a.transpose(i, j)
        if swapped.shape == e.shape and _close(swapped, e, ctx.tol):
            shape = list(e.shape)
            square = e.shape == a.shape
            why = (
                "the shapes agree here only because those dims are equal"
                if square
                else f"shape {format_shape(list(a.shape), label_axes(a.shape, ctx.dims))} instead of "
                f"{format_shape(shape, ctx.spec.dim_labels(ctx.tensor))}"
            )
            return "transposed", (
                f"{ctx.tensor.name} gradient is the expected one with {_axis(i, shape, ctx.dims)} and"
                f" {_axis(j, shape, ctx.dims)} swapped ({why}): transpose it, or swap the matmul's operands"
            )
    return None


def _missing_reduction(e: torch.Tensor, a: torch.Tensor, ctx: Context) -> tuple[str, str] | None:
    if a.numel() <= e.numel() or a.dim() > 6:
        return None
    target = [s for s in e.shape if s != 1]
    for r in range(1, a.dim() + 1):
        for axes in itertools.combinations(range(a.dim()), r):
            rest = [s for k, s in enumerate(a.shape) if k not in axes and s != 1]
            if rest != target:
                continue
            summed = a.sum(dim=axes).reshape(e.shape)
            if _close(summed, e, ctx.tol):
                shape = list(a.shape)
                names = ", ".join(_axis(k, shape, ctx.dims) for k in axes)
                dims_arg = axes[0] if len(axes) == 1 else axes
                got = format_shape(shape, label_axes(a.shape, ctx.dims))
                return "missing_reduction", (
                    f"{ctx.tensor.name} gradient has shape {got}: sum over {names}, the dim"
                    f"{'s' if len(axes) > 1 else ''} {ctx.tensor.name} was broadcast over"
                    f" (grad.sum({dims_arg}))"
                )
    return None


def _reshaped(e: torch.Tensor, a: torch.Tensor, ctx: Context) -> tuple[str, str] | None:
    if a.numel() != e.numel() or a.shape == e.shape:
        return None
    if not _close(a.reshape(e.shape), e, ctx.tol):
        return None
    got = format_shape(list(a.shape), label_axes(a.shape, ctx.dims))
    exp = format_shape(list(e.shape), ctx.spec.dim_labels(ctx.tensor))
    return "reshaped", (
        f"{ctx.tensor.name} gradient has the right values in shape {got} instead of {exp}:"
        " a keepdim=True, a column vector or a flatten? reshape it to the tensor's shape"
    )


# -- rules when the shapes agree ---------------------------------------------------


def _zero(e: torch.Tensor, a: torch.Tensor, ctx: Context) -> tuple[str, str] | None:
    if bool((a == 0).all()) and not _close(torch.zeros_like(e), e, ctx.tol):
        return "zero", f"{ctx.tensor.name} gradient is all zeros: was it computed, or overwritten by a fresh zeros()?"
    return None


def _swapped(e: torch.Tensor, a: torch.Tensor, ctx: Context) -> tuple[str, str] | None:
    for other, grad in ctx.expected_grads.items():
        if other == ctx.tensor.name or grad.shape != a.shape:
            continue
        if _close(a, grad.detach().to("cpu", torch.float64), ctx.tol):
            return "swapped", (
                f"{ctx.tensor.name} holds the gradient of {other}: two return slots (or .g targets) are swapped"
            )
    return None


def _scaled(e: torch.Tensor, a: torch.Tensor, ctx: Context) -> tuple[str, str] | None:
    denom = float((e * e).sum())
    if denom == 0.0:
        return None
    c = float((a * e).sum()) / denom
    if abs(c) < 1e-12 or not _close(a, c * e, ctx.tol):
        return None
    if abs(c + 1) < 1e-6:
        return "sign_flipped", f"{ctx.tensor.name} gradient is minus the expected one: a sign is flipped"
    return "scaled", f"{ctx.tensor.name} gradient is {_describe_factor(c, ctx.dims)}"


def _describe_factor(c: float, dims: Mapping[str, int]) -> str:
    frac = Fraction(c).limit_denominator(64)
    exact = abs(float(frac) - c) < 1e-6 * max(1.0, abs(c))
    shown = f"{c:.4g}" if not exact or frac.denominator == 1 else f"{frac.numerator}/{frac.denominator}"
    text = f"{shown} x the expected"
    if not exact:
        return text + " (one constant factor off)"
    for n, (name, size) in itertools.product((frac.numerator, frac.denominator), dims.items()):
        if size == abs(n) and size > 1:
            if abs(frac.denominator) == size:
                return text + f": divided by {name}={size} once too often (a mean where a sum belongs?)"
            return text + f": a missing 1/{name} (1/{size}, the mean over {name})"
    if abs(c) == 2:
        return text + ": a factor 2 too many"
    if abs(c) == 0.5:
        return text + ": a missing factor 2 (d/dx x^2 = 2x)"
    return text + " (one constant factor off)"


def _partial(e: torch.Tensor, a: torch.Tensor, ctx: Context) -> tuple[str, str] | None:
    loose = Tolerance(ctx.tol.atol * SLACK, ctx.tol.rtol * SLACK)
    wrong = ~loose.allclose(a, e)
    count, total = int(wrong.sum()), wrong.numel()
    if count == 0 or count == total:
        return None
    fraction = f"{count} of {total} elements ({100 * count / total:.0f}%) are wrong"
    pattern = _mask_pattern(wrong, ctx)
    return "partial", f"{ctx.tensor.name}: {fraction}{'; ' + pattern if pattern else ''}"


def _mask_pattern(wrong: torch.Tensor, ctx: Context) -> str | None:
    # Exactly where some float input is <= 0 (or > 0): a forgotten ReLU-style mask.
    for name, value in ctx.values.items():
        if not value.is_floating_point() or value.shape != wrong.shape:
            continue
        v = value.detach().cpu()
        if torch.equal(wrong, v <= 0):
            return f"exactly where {name} <= 0: a mask (like ReLU's) is missing or inverted"
        if torch.equal(wrong, v > 0):
            return f"exactly where {name} > 0: the mask (like ReLU's) is inverted"
    # Exactly at the target class of each row (integer targets).
    if wrong.dim() >= 2:
        for name, value in ctx.values.items():
            if value.dtype not in (torch.int64, torch.int32) or tuple(value.shape) != tuple(wrong.shape[:-1]):
                continue
            classes = wrong.shape[-1]
            v = value.detach().cpu().long()
            if bool(((v >= 0) & (v < classes)).all()):
                at_target = torch.nn.functional.one_hot(v, classes).bool()
                if torch.equal(wrong, at_target):
                    return f"exactly at the {name} class of each row: the -1 at the target is missing or wrong"
    # Confined to some indices along one axis (a row, a column, a class).
    for axis in range(wrong.dim()):
        other = tuple(k for k in range(wrong.dim()) if k != axis)
        hit = wrong.any(dim=other) if other else wrong
        full = wrong.all(dim=other) if other else wrong
        if bool(hit.sum() < wrong.shape[axis]) and torch.equal(hit, full):
            idx = [int(i) for i in hit.nonzero().flatten()]
            shown = ", ".join(map(str, idx[:6])) + (", ..." if len(idx) > 6 else "")
            return f"all of index {shown} along {_axis(axis, list(wrong.shape), ctx.dims)}, and nothing else"
    return None


_SHAPE_RULES = (_nonfinite, _transposed, _missing_reduction, _reshaped)
_VALUE_RULES = (_nonfinite, _zero, _transposed, _swapped, _scaled, _partial)
