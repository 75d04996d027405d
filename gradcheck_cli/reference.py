"""The reference side: what the outputs and gradients should be.

:func:`run_reference` evaluates the spec's reference (an expression, or a
call into a reference file) on the case's tensors (:func:`_leaves`),
differentiates it with autograd, and returns an :class:`Expected`: the one
value object that every producer of expected results gives and that the
comparison reads. The other producers:

- :func:`written_reference`: the gradients a spec writes in ``reference_grads``
  (surrogates: a straight-through estimator, a gradient reversal), evaluated
  as expressions; the outputs, and any gradient not written, from the reference;
- :func:`double_reference`: the second order (``--double``): the expected
  gradients as a function of the tensors and the upstream gradients,
  differentiated once more (what ``torch.autograd.gradgradcheck`` checks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from .calls import bind
from .compare import differentiable
from .errors import SpecError
from .expressions import Expression, ExpressionError, evaluate
from .spec import Spec
from .tensors import normal
from .usercode import load_namespace, lookup, user_frame

if TYPE_CHECKING:
    from .runner import Case

UPSTREAM_SEED_OFFSET = 1_000_003  # the upstream gradients' stream, apart from the tensors'
SECOND_SEED_OFFSET = 2_000_029  # the second-order upstream gradients' stream (--double)


@dataclass
class Expected:
    """Expected outputs and gradients, and the upstream gradients they were computed with."""

    outputs: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor]
    grad_outs: dict[str, torch.Tensor]
    description: str  # where the expected values come from, for the report
    truth: Expected | None = None  # calibrated tolerance: the same in float64


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
        where = user_frame(exc) if ref.expr is None else None  # a reference file's line
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
    if not differentiable(value) or not value.numel():
        return
    parts = torch.view_as_real(value.detach()) if value.is_complex() else value.detach()
    low, high = torch.aminmax(parts)  # one pass, no temporary: NaN or +-inf when one element is
    if math.isfinite(float(low)) and math.isfinite(float(high)):
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
            g = normal(tuple(out.shape), gen, out.dtype)
        grad_outs[name] = g.to(out.dtype).to(out.device)
    return grad_outs


def run_reference(
    case: Case, values: Mapping[str, torch.Tensor], grad_outs: Mapping[str, torch.Tensor] | None = None
) -> Expected:
    """Differentiate the reference with autograd, on ``values`` (which it must not change).

    The upstream gradients are drawn from the case's seed, unless ``grad_outs`` gives them.
    """
    spec = case.spec
    leaves, versions = _leaves(spec, values), _versions(values)
    with torch.enable_grad():  # whatever grad mode the caller (or user code run earlier) left behind
        outputs = reference_outputs(spec, case.dims, leaves)
        grad_outs = dict(grad_outs) if grad_outs is not None else upstream_gradients(outputs, case.seed)
        grads = _vjp(spec, outputs, grad_outs, leaves, [t.name for t in spec.checked])
    _untouched(spec, values, versions)
    _all_finite(spec, outputs, grads)
    return Expected(
        outputs={n: o.detach() for n, o in outputs.items()},
        grads={n: g.detach() for n, g in grads.items()},
        grad_outs=grad_outs,
        description=spec.reference.describe(),
    )


def written_reference(
    case: Case, values: Mapping[str, torch.Tensor], grad_outs: Mapping[str, torch.Tensor] | None = None
) -> Expected:
    """The gradients ``reference_grads`` writes, evaluated; the rest as :func:`run_reference` does.

    The outputs (and so the upstream gradients) come from the reference, as always;
    a written gradient is an expression over the tensors, dims, options and upstream
    gradients, evaluated on clones of them. The reference need not be differentiable
    when every checked gradient is written.
    """
    spec = case.spec
    leaves, versions = _leaves(spec, values), _versions(values)
    by_autograd = [t.name for t in spec.checked if t.name not in spec.reference_grads]
    with torch.enable_grad():
        outputs = reference_outputs(spec, case.dims, leaves)
        grad_outs = dict(grad_outs) if grad_outs is not None else upstream_gradients(outputs, case.seed)
        grads = _vjp(spec, outputs, grad_outs, leaves, by_autograd) if by_autograd else {}
    _untouched(spec, values, versions)
    scope = _scope(spec, case.dims, {n: v.detach().clone() for n, v in values.items()}, grad_outs)
    for name, expr in spec.reference_grads.items():
        grads[name] = _written(spec, name, expr, scope, values[name])
    _all_finite(spec, outputs, grads)
    return Expected(
        outputs={n: o.detach() for n, o in outputs.items()},
        grads={t.name: grads[t.name].detach() for t in spec.checked},
        grad_outs=grad_outs,
        description=describe_written(spec),
    )


def expected_values(case: Case, values: Mapping[str, torch.Tensor]) -> Expected:
    """What the checked code should give, in the case's dtype: autograd of the reference, or the
    gradients ``reference_grads`` writes. With a calibrated tolerance, ``truth`` holds the same
    computed in float64 from the same (already rounded) tensors and upstream gradients."""
    produce = written_reference if case.spec.reference_grads else run_reference
    expected = produce(case, values)
    if case.tolerance.calibrated:
        expected.truth = produce(*in_float64(case, values), widened(expected.grad_outs))
    return expected


def in_float64(case: Case, values: Mapping[str, torch.Tensor]) -> tuple[Case, dict[str, torch.Tensor]]:
    """The case and its tensors in float64, the values already rounded to the case's dtype."""
    wide = {n: v.to(torch.float64) if v.is_floating_point() else v for n, v in values.items()}
    return replace(case, dtype="float64"), wide


def widened(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: t.detach().to(torch.float64) for n, t in tensors.items()}


def describe_written(spec: Spec) -> str:
    """Where each expected value comes from, when a spec writes some gradients."""
    outs = ", ".join(spec.outputs)
    parts = [f"{outs} = {spec.reference.describe()} (reference)"]
    parts += [f"{name} = {expr.text} (reference_grads)" for name, expr in spec.reference_grads.items()]
    rest = [t.name for t in spec.checked if t.name not in spec.reference_grads]
    if rest:
        parts.append(f"{', '.join(rest)} by autograd of the reference")
    return "; ".join(parts)


def upstream_names(spec: Spec) -> dict[str, str]:
    """The name of each output's upstream gradient: ``grad_out`` (one output), ``grad_<output>``."""
    if len(spec.outputs) == 1:
        return {spec.outputs[0]: "grad_out"}
    return {o: f"grad_{o}" for o in spec.outputs}


def double_reference(
    case: Case,
    values: Mapping[str, torch.Tensor],
    upstream: Mapping[str, torch.Tensor] | None = None,
    second: Mapping[str, torch.Tensor] | None = None,
) -> Expected:
    """The second order: autograd's double backward of the expected gradients.

    The backward is a function of the checked tensors and of the upstream gradients
    ``v``: its outputs are the first-order gradients ``g`` (from autograd, or written in
    ``reference_grads``). With a second seeded upstream gradient ``u`` per tensor, the
    expected values are ``d<g, u>/d tensor`` (by tensor name) and ``d<g, u>/d v`` (by
    upstream name, :func:`upstream_names`), as ``torch.autograd.gradgradcheck`` computes
    them. ``outputs`` are ``g``, ``grad_outs`` are ``u``. ``upstream`` and ``second`` give
    ``v`` and ``u`` instead of drawing them (a float64 truth from the same rounded ones).
    """
    spec = case.spec
    leaves, versions = _leaves(spec, values), _versions(values)
    checked = [t.name for t in spec.checked]
    with torch.enable_grad():
        outputs = reference_outputs(spec, case.dims, leaves)
        drawn = dict(upstream) if upstream is not None else upstream_gradients(outputs, case.seed)
        v = {o: g.detach().clone().requires_grad_(differentiable(g)) for o, g in drawn.items()}
        by_autograd = [n for n in checked if n not in spec.reference_grads]
        first = _vjp(spec, outputs, v, leaves, by_autograd, create_graph=True) if by_autograd else {}
        scope = _scope(spec, case.dims, leaves, v)
        for name, expr in spec.reference_grads.items():
            first[name] = _written(spec, name, expr, scope, values[name])
        first = {n: first[n] for n in checked}
        u = (
            dict(second)
            if second is not None
            else upstream_gradients({n: g.detach() for n, g in first.items()}, case.seed + SECOND_SEED_OFFSET)
        )
        # An integer output's upstream gradient (argmax indices) is no variable: no 2nd-order row.
        wrt = {n: leaves[n] for n in checked}
        wrt.update({upstream_names(spec)[o]: g for o, g in v.items() if g.requires_grad})
        second = second_order(first, u, wrt)
    _untouched(spec, values, versions)
    described = describe_written(spec) if spec.reference_grads else spec.reference.describe()
    return Expected(
        outputs={n: g.detach() for n, g in first.items()},
        grads=second,
        grad_outs=u,
        description=f"double backward of {described}",
    )


def second_order(
    first: Mapping[str, torch.Tensor | None], u: Mapping[str, torch.Tensor], wrt: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``d<first, u>/d w`` for each ``w`` of ``wrt``: zeros where nothing depends on it."""
    connected = [(g, u[n]) for n, g in first.items() if g is not None and g.requires_grad]
    found: tuple[torch.Tensor | None, ...] = (None,) * len(wrt)
    if connected:
        total = sum((g * w).sum() for g, w in connected)
        assert isinstance(total, torch.Tensor)
        found = torch.autograd.grad(total, list(wrt.values()), allow_unused=True)
    return {
        name: (g if g is not None else torch.zeros_like(leaf)).detach()
        for (name, leaf), g in zip(wrt.items(), found)
    }


def _all_finite(spec: Spec, outputs: Mapping[str, torch.Tensor], grads: Mapping[str, torch.Tensor]) -> None:
    for what, values_by_name in (("output", outputs), ("gradient of", grads)):
        for name, value in values_by_name.items():
            _require_finite(spec, f"{what} {name!r}", value)


def _leaves(spec: Spec, values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors as the reference's leaves: each checked one a new leaf that requires grad and
    shares the value's memory (no copy: autograd refuses an in-place change to a leaf that
    requires grad, and :func:`_untouched` catches one made under ``torch.no_grad()``); the others
    the reference's own clones (it may change an integer target in place)."""
    return {
        name: v.detach().requires_grad_(True) if spec.tensors[name].grad else v.detach().clone()
        for name, v in values.items()
    }


def _versions(values: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Each tensor's version counter (an in-place change adds to it; a detached leaf shares it)."""
    return {name: v._version for name, v in values.items()}


def _untouched(spec: Spec, values: Mapping[str, torch.Tensor], versions: Mapping[str, int]) -> None:
    """A SpecError when the reference changed a tensor it shares with the checked code."""
    changed = [name for name, v in values.items() if v._version != versions[name]]
    if changed:
        raise spec.error(
            f"the reference changed {', '.join(changed)} in place (under torch.no_grad()?):"
            " a reference must leave the tensors it is given as they are",
            "reference",
        )


def _vjp(
    spec: Spec,
    outputs: Mapping[str, torch.Tensor],
    grad_outs: Mapping[str, torch.Tensor],
    leaves: Mapping[str, torch.Tensor],
    names: list[str],
    create_graph: bool = False,
) -> dict[str, torch.Tensor]:
    """The gradients of ``names``: autograd's vector-Jacobian product with ``grad_outs``."""
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
    grads = torch.autograd.grad(
        total, [leaves[n] for n in names], allow_unused=True, create_graph=create_graph
    )
    return {n: (g if g is not None else torch.zeros_like(leaves[n])) for n, g in zip(names, grads)}


def _scope(
    spec: Spec, dims: Mapping[str, int], tensors: Mapping[str, Any], grad_outs: Mapping[str, Any]
) -> dict[str, Any]:
    """What a written gradient reads: options, dims, tensors and the upstream gradients' names."""
    scope: dict[str, Any] = {**spec.options, **dims, **tensors}
    for alias, out in spec.grad_names().items():
        scope[alias] = grad_outs[out]
    return scope


def _written(
    spec: Spec, name: str, expr: Expression, scope: Mapping[str, Any], like: torch.Tensor
) -> torch.Tensor:
    """One written gradient, in the tensor's shape and dtype (a number fills it)."""
    key = f"reference_grads.{name}"
    try:
        with torch.enable_grad():
            value = evaluate(expr, scope)
    except ExpressionError as exc:
        raise spec.error(f"{name}'s gradient cannot be evaluated: {exc}", key) from None
    except Exception as exc:
        raise spec.error(f"{name}'s gradient raised {type(exc).__name__}: {exc}", key) from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.full_like(like, float(value))
    if not isinstance(value, torch.Tensor):
        raise spec.error(f"{name}'s gradient is a {type(value).__name__}, not a tensor", key)
    if tuple(value.shape) != tuple(like.shape):
        raise spec.error(
            f"{name}'s gradient has shape {list(value.shape)}, but {name} has shape {list(like.shape)}", key
        )
    return value.to(like.dtype)
