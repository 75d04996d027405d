"""The double backward (``--double``): a Function's backward, differentiated once more.

Its expected values are autograd's double backward of the reference
(:func:`gradcheck_cli.reference.double_reference`, as ``gradgradcheck`` computes
them), the checked code's those of autograd through the Function's backward
(:func:`gradcheck_cli.conventions.double_backward`); the rows are named
``x (2nd order)`` and judged as first-order rows are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch

from . import checks, diagnose
from .case import Case
from .conventions import MISSING, ConventionError, DoubleOutcome, double_backward
from .reference import Expected, double_reference, in_float64, upstream_names, widened
from .result import Check
from .spec import Spec, TensorSpec
from .usercode import UserCodeError

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
    return wanted, rows, _double_note(spec, function)


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


def _double_note(spec: Spec, function: str) -> str:
    ups = ", ".join(upstream_names(spec).values())
    return (
        f"2nd order: the gradients {function}.backward returns, differentiated once more by each tensor"
        f" and by {ups} (weighted by seeded random numbers), against autograd's double backward of the"
        " reference, as torch.autograd.gradgradcheck does"
    )
