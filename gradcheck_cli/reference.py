"""The reference side: what the outputs and gradients should be.

:func:`run_reference` evaluates the spec's reference (an expression, or a
call into a reference file) on its own clones of the case's tensors,
differentiates it with autograd, and returns an :class:`Expected`: the one
value object that every producer of expected results gives and that the
comparison reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .calls import bind
from .errors import SpecError
from .expressions import ExpressionError, evaluate
from .spec import Spec
from .usercode import load_namespace, lookup, user_frame

if TYPE_CHECKING:
    from .runner import Case

UPSTREAM_SEED_OFFSET = 1_000_003  # the upstream gradients' stream, apart from the tensors'


@dataclass
class Expected:
    """Expected outputs and gradients, and the upstream gradients they were computed with."""

    outputs: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor]
    grad_outs: dict[str, torch.Tensor]
    description: str  # where the expected values come from, for the report


def reference_outputs(
    spec: Spec, dims: Mapping[str, int], tensors: Mapping[str, torch.Tensor]
) -> dict[str, Any]:
    """The reference evaluated on ``tensors``: its outputs by name (a SpecError if it fails)."""
    scope: dict[str, Any] = {**spec.options, **dims, **tensors}
    ref = spec.reference
    try:
        if ref.expr is not None:
            produced = evaluate(ref.expr, scope)
        else:
            assert ref.call is not None and ref.source is not None
            namespace = load_namespace(ref.source, spec, "reference")
            func = lookup(namespace, ref.call.func, spec, "reference.call")
            args, kwargs = bind(ref.call, scope)
            produced = func(*args, **kwargs)
    except SpecError:
        raise
    except ExpressionError as exc:
        raise spec.error(f"the reference cannot be evaluated: {exc}", "reference") from None
    except Exception as exc:
        where = user_frame(exc.__traceback__, exc) if ref.expr is None else None  # a reference file's line
        at = f" at {where}" if where else ""
        raise spec.error(f"the reference raised {type(exc).__name__}: {exc}{at}", "reference") from None
    produced_list = list(produced) if isinstance(produced, (tuple, list)) else [produced]
    if len(produced_list) != len(spec.outputs):
        raise spec.error(
            f"the reference returned {len(produced_list)} values but outputs lists"
            f" {len(spec.outputs)} ({', '.join(spec.outputs)})",
            "outputs",
        )
    outputs: dict[str, Any] = {}
    for name, value in zip(spec.outputs, produced_list):
        if not isinstance(value, torch.Tensor):
            raise spec.error(
                f"the reference's output {name!r} is a {type(value).__name__}, not a tensor", "reference"
            )
        outputs[name] = value
    return outputs


def _require_finite(spec: Spec, what: str, value: torch.Tensor) -> None:
    """A reference that gives NaN or Inf is the spec's problem, not the checked code's."""
    if not (value.is_floating_point() or value.is_complex()):
        return
    bad = int((~torch.isfinite(value.detach())).sum())
    if bad:
        raise spec.error(
            f"the reference's {what} is NaN or Inf at {bad} of {value.numel()} elements with these inputs:"
            " fix the reference, or keep the inputs in its domain (low/high, min_abs)",
            "reference",
        )


def upstream_gradients(outputs: Mapping[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Seeded random normal in each output's shape; 1 for a scalar output (a loss)."""
    gen = torch.Generator().manual_seed(seed + UPSTREAM_SEED_OFFSET)
    grad_outs: dict[str, torch.Tensor] = {}
    for name, out in outputs.items():
        if out.dim() == 0:
            g = torch.ones((), dtype=torch.float64)
        else:
            g = torch.randn(tuple(out.shape), generator=gen, dtype=torch.float64)
        grad_outs[name] = g.to(out.dtype).to(out.device)
    return grad_outs


def run_reference(case: Case, values: Mapping[str, torch.Tensor]) -> Expected:
    """Differentiate the reference with autograd, on its own clones of ``values``."""
    spec = case.spec
    leaves = {name: v.detach().clone().requires_grad_(spec.tensors[name].grad) for name, v in values.items()}
    with torch.enable_grad():  # whatever grad mode the caller (or user code run earlier) left behind
        outputs = reference_outputs(spec, case.dims, leaves)
        grad_outs = upstream_gradients(outputs, case.seed)
        checked = [leaves[t.name] for t in spec.checked]
        differentiable = [(o, grad_outs[n]) for n, o in outputs.items() if o.requires_grad]
        if not differentiable:
            raise spec.error(
                "the reference's output does not depend on any checked tensor through autograd"
                " (a .detach(), an integer cast or a comparison cuts the graph)",
                "reference",
            )
        # sum(out * grad_out) has exactly grad_out as its gradient w.r.t. out, so this
        # is the same vector-Jacobian product as grad(outs, grad_outputs=...) without
        # the sympy import torch makes to check grad_outputs' shapes (~0.3 s).
        total = sum((o * g).sum() for o, g in differentiable)
        assert isinstance(total, torch.Tensor)
        grads = torch.autograd.grad(total, checked, allow_unused=True)
    expected_grads = {
        t.name: (g.detach() if g is not None else torch.zeros_like(leaves[t.name]).detach())
        for t, g in zip(spec.checked, grads)
    }
    for what, values_by_name in (("output", outputs), ("gradient of", expected_grads)):
        for name, value in values_by_name.items():
            _require_finite(spec, f"{what} {name!r}", value)
    return Expected(
        outputs={n: o.detach() for n, o in outputs.items()},
        grads=expected_grads,
        grad_outs=grad_outs,
        description=spec.reference.describe(),
    )
