"""The double backward (``--double``): a Function's backward, differentiated once more.

Its expected values are autograd's double backward of the reference
(:func:`gradcheck_cli.reference.double_reference`, as ``gradgradcheck`` computes
them), the checked code's those of autograd through the Function's backward
(:func:`double_backward`); the rows are named
``x (2nd order)`` and judged as first-order rows are.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from . import checks, diagnose
from .case import Case
from .compare import differentiable
from .conventions import apply_function
from .handed import MISSING, ConventionError, Handed
from .reference import (
    Expected,
    double_reference,
    in_float64,
    second_order,
    upstream_names,
    widened,
)
from .result import Check
from .spec import Spec, TensorSpec
from .usercode import UserCodeError, load_namespace, user_code

SECOND_ORDER = "{} (2nd order)"  # how a second-order row is named: "x (2nd order)", "grad_out (2nd order)"


def run_double(
    case: Case, values: Mapping[str, torch.Tensor], expected: Expected, verbose: bool, first_ok: bool = False
) -> tuple[dict[str, torch.Tensor], list[Check], str]:
    """The Function's backward differentiated once more, against autograd's double backward.

    Returns the expected value of each second-order row (by row name), the rows,
    and the note that says what they are. ``first_ok``: every first-order row
    passed (a wrong second order then has a likely cause). Raises SpecError for a
    spec error.
    """
    spec = case.spec
    function = spec.implementation.autograd_function
    if function is None:
        convention = spec.implementation.convention
        return {}, [], (
            "--double: only a torch.autograd.Function's backward is differentiated by autograd;"
            f" this implementation is {convention}, so there is no double backward to check"
        )  # fmt: skip
    second = double_reference(case, values)
    if case.tolerance.calibrated:  # the truth of the second order, from the same rounded values
        second.truth = double_reference(
            *in_float64(case, values), widened(expected.grad_outs), widened(second.grad_outs)
        )
    try:
        outcome = double_backward(spec, values, expected.grad_outs, second.grad_outs, case.dims)
    except (UserCodeError, ConventionError) as exc:
        name = SECOND_ORDER.format(f"{function}.backward")
        return {}, [Check(name, "backward", None, None, "error", hint=str(exc))], _double_note(spec, function)
    if outcome.once_differentiable:
        return {}, [], (
            f"{function}.backward is marked @once_differentiable: autograd cannot differentiate it,"
            " so there is no double backward to check (not a failure)"
        )  # fmt: skip
    rows = double_checks(case, values, second, outcome, verbose)
    if first_ok:
        rows = [_untracked(row, function) for row in rows]
    wanted = {SECOND_ORDER.format(key): want for key, want in second.grads.items()}
    return wanted, rows, _double_note(spec, function, second)


def double_checks(
    case: Case, values: Mapping[str, torch.Tensor], second: Expected, outcome: DoubleOutcome, verbose: bool
) -> list[Check]:
    """One row per second-order gradient: by each checked tensor, then by each upstream gradient."""
    spec, tol = case.spec, case.tolerance
    truth = second.truth or second
    wanted = {SECOND_ORDER.format(key): want for key, want in truth.grads.items()}
    upstream = set(upstream_names(spec).values())
    found = []
    for key, want in truth.grads.items():
        row = SECOND_ORDER.format(key)
        if key in upstream:
            tensor = TensorSpec(row, "upstream", tuple(int(s) for s in want.shape))
        else:
            tensor = replace(spec.tensors[key], name=row)
        own = second.grads[key] if second.truth is not None else None
        subject = checks.Subject(row, tensor.kind, want, outcome.grads.get(key, MISSING), tensor, own)
        check = checks.measured(subject, case.spec, case, tensor.line, verbose)
        ctx = diagnose.Context(spec, case.dims, tensor, subject.judge(tol), wanted, values)
        check = checks.diagnosed(check, subject, ctx)
        if outcome.problem and not check.ok:
            check = replace(check, hint=outcome.problem)
        found.append(check)
    return found


def _untracked(check: Check, function: str) -> Check:
    """A wrong second order under right first-order gradients: what autograd could not follow."""
    if check.ok or check.diagnosis is not None or check.status != "mismatch":
        return check
    hint = (
        "the first-order gradients are right but not their derivative: autograd cannot follow all of"
        f" {function}.backward (a tensor computed in the forward and saved is a constant to it: save the"
        " inputs and recompute it, or return it from the forward; or a .detach(), torch.no_grad() or"
        " numpy in the backward)"
    )
    return replace(check, hint=hint)


def _double_note(spec: Spec, function: str, second: Expected | None = None) -> str:
    names = upstream_names(spec).values()
    ups = ", ".join(n for n in names if second is None or n in second.grads)  # an integer output's: none
    return (
        f"2nd order: the gradients {function}.backward returns, differentiated once more by each tensor"
        f" and by {ups} (weighted by seeded random numbers), against autograd's double backward of the"
        " reference, as torch.autograd.gradgradcheck does"
    )


# -- the checked side: autograd through the Function's backward ----------------------------


@dataclass
class DoubleOutcome:
    """What the double backward of a Function's backward gave (``--double``)."""

    grads: dict[str, Any] = field(default_factory=dict)  # by tensor name and by upstream name
    once_differentiable: bool = False  # the backward is marked @once_differentiable
    problem: str | None = None  # why autograd cannot differentiate the backward's result


def double_backward(
    spec: Spec,
    values: Mapping[str, torch.Tensor],
    grad_outs: Mapping[str, torch.Tensor],
    second_grad_outs: Mapping[str, torch.Tensor],
    dims: Mapping[str, int],
) -> DoubleOutcome:
    """The Function's backward differentiated once more, as ``gradgradcheck`` does.

    ``Function.apply`` on copies, then its backward with ``create_graph=True`` and the
    upstream gradients as leaves too: the gradients ``g`` it returns are a function of
    the tensors and of ``grad_outs``, and ``d<g, second_grad_outs>`` by each of them is
    what :func:`~gradcheck_cli.reference.double_reference` expects.
    """
    impl = spec.implementation
    tensors: dict[str, Any] = {name: v.detach().clone() for name, v in values.items()}
    upstream = {o: g.detach().clone().requires_grad_(differentiable(g)) for o, g in grad_outs.items()}
    scope: dict[str, Any] = {**copy.deepcopy(spec.options), **dims, **tensors}
    h = Handed(spec, load_namespace(impl.source, spec, "implementation"), tensors, dict(upstream), scope)
    name, total = apply_function(h)
    leaves = {t.name: h.tensors[t.name] for t in spec.checked}
    with user_code(f"backward {name}.backward() (create_graph=True)"):
        grads = torch.autograd.grad(total, list(leaves.values()), create_graph=True, allow_unused=True)
    first = dict(zip(leaves, grads))
    if any(g is not None and g.grad_fn is not None and g.grad_fn.name() == _ONCE for g in first.values()):
        return DoubleOutcome(once_differentiable=True)
    problem = None
    if not any(g is not None and g.requires_grad for g in first.values()):
        problem = (
            f"the gradients {name}.backward returns do not require grad (computed under torch.no_grad(),"
            " detached, or outside torch): autograd cannot differentiate them, so their double backward is 0"
        )
    wrt = {**leaves, **{upstream_names(spec)[o]: g for o, g in upstream.items() if g.requires_grad}}
    with user_code(f"double backward of {name}.backward()"):
        second = second_order(first, second_grad_outs, wrt)
    return DoubleOutcome(grads=dict(second), problem=problem)


# What autograd puts behind the result of a backward marked @once_differentiable.
_ONCE = "torch::autograd::Error"
