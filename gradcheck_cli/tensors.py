"""A case's tensors: seeded inputs and params, drawn once, the same on every device.

Values are drawn on the CPU and then cast, so a seed gives the same numbers on
every device. Normal values are drawn in float64 for a float64 check and in
float32 for a float32, bfloat16 or float16 one (torch's vectorised float32
sampler is some 4x faster than float64's; a calibrated check's float64 truth is
computed from the rounded values, so nothing is lost): the three low dtypes see
the same numbers up to their rounding. float64 draws are the same on every
machine; the vectorised float32 sampler can differ in the last bits between
CPUs that take different vector paths (AVX2 against ARM's). Uniform values are
drawn in float64.
Integer inputs take ``low``/``high``, a ``permutation`` is a seeded permutation
along an axis, and an input written as an expression is derived from the
tensors above it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .case import Case
from .compare import DTYPES
from .spec import Spec, TensorSpec


def generate(case: Case) -> dict[str, torch.Tensor]:
    """The seeded inputs and params, in spec order, on the case's device (drawn as the module
    docstring says)."""
    spec = case.spec
    gen = torch.Generator().manual_seed(case.seed)
    values: dict[str, torch.Tensor] = {}
    for t in spec.tensors.values():
        if t.derived is not None:
            values[t.name] = _derive(spec, t, case, values)
            continue
        shape = spec.shape_of(t, case.dims)
        values[t.name] = _draw(spec, t, shape, case, gen).to(case.device)
    return values


def _derive(spec: Spec, t: TensorSpec, case: Case, earlier: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """An input computed from the tensors above it (``inverse: "perm.argsort(-1)"``)."""
    from .expressions import ExpressionError, evaluate

    assert t.derived is not None
    scope = {**spec.options, **case.dims, **{n: v.detach().clone() for n, v in earlier.items()}}
    try:
        value = evaluate(t.derived, scope)
    except ExpressionError as exc:
        raise spec.error(f"{t.derived.text!r} cannot be evaluated: {exc}", t.key) from None
    except Exception as exc:
        raise spec.error(f"{t.derived.text!r} raised {type(exc).__name__}: {exc}", t.key) from None
    if not isinstance(value, torch.Tensor):
        raise spec.error(f"{t.derived.text!r} is a {type(value).__name__}, not a tensor", t.key)
    if value.is_floating_point():
        value = value.to(DTYPES[case.dtype])
    return value.detach().clone().to(case.device)


def _draw(
    spec: Spec, t: TensorSpec, shape: tuple[int, ...], case: Case, gen: torch.Generator
) -> torch.Tensor:
    low, high = spec.bound(t.low, case.dims), spec.bound(t.high, case.dims)
    if t.permutation is not None:  # each slice along the axis: a permutation of 0..size-1
        order = torch.rand(shape, generator=gen, dtype=torch.float64).argsort(dim=t.permutation)
        return order.to(torch.int64 if t.dtype == "int64" else torch.int32)
    if t.dtype in ("int64", "int32"):
        assert low is not None and high is not None
        if int(high) <= int(low):
            raise spec.error(f"low {low} must be below high {high}", t.key)
        dtype = torch.int64 if t.dtype == "int64" else torch.int32
        return torch.randint(int(low), int(high), shape, generator=gen, dtype=dtype)
    if t.dtype == "bool":
        return torch.rand(shape, generator=gen, dtype=torch.float64) < 0.5
    if low is not None or high is not None:
        lo = 0.0 if low is None else float(low)
        hi = lo + 1.0 if high is None else float(high)
        x = lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)
    else:
        x = normal(shape, gen, DTYPES[case.dtype])
    if t.min_abs:
        x = x.to(torch.float64)
        x = torch.where(x >= 0, 1.0, -1.0) * x.abs().clamp_min(t.min_abs)
    return x.to(DTYPES[case.dtype])


NARROW = (torch.float32, torch.bfloat16, torch.float16, torch.complex64)


def normal(shape: tuple[int, ...], gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Seeded standard normal values in ``shape``, for ``dtype``: float32 for the narrow dtypes,
    float64 for the others (cast them to ``dtype``)."""
    return torch.randn(shape, generator=gen, dtype=torch.float32 if dtype in NARROW else torch.float64)
