"""The numerical mode: expected gradients from central differences of the hand-written forward.

A spec with no reference (or ``reference: numerical``) is checked against the vector-Jacobian
product finite differences give (:mod:`.numerical`): the same rows, shapes, worst element and
diagnoses as a reference gives, elements at a kink reported as ``unstable`` and left out, big
tensors sampled (and said so). The differences run in float64 whatever the dtype; the backward
runs in the checked dtype, handed the same upstream gradients.

``--numerical`` on a spec with a reference adds a third opinion: finite differences of the
reference itself against its autograd gradients, a disagreement being a problem of the spec.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from . import checks, diagnose
from .compare import DTYPES, NotATensor, as_tensor, imaginary_hint
from .conventions import run_forward
from .errors import SpecError
from .handed import MISSING, Outcome
from .numerical import (
    DEFAULT_SAMPLES,
    Comparison,
    ForwardError,
    Numerical,
    NumericalError,
    TensorNumerical,
    comparison,
    numerical_vjp,
)
from .reference import Expected, reference_outputs, upstream_gradients
from .result import Check, format_pair
from .spec import Spec, TensorSpec
from .tolerance import Judge
from .usercode import UserCodeError, load_namespace

if TYPE_CHECKING:
    from .case import Case


class ForwardFailed(Exception):
    """The hand-written forward raised on (perturbed) inputs: the checked code's error."""


def samples_for(case: Case) -> int | None:
    """Elements per tensor above which a sample is checked (None: every element)."""
    given = case.samples if case.samples is not None else case.spec.reference.samples
    if given is None:
        return DEFAULT_SAMPLES
    return None if given == 0 else given


def in_float64(values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: v.detach().to(torch.float64) if v.is_floating_point() else v for n, v in values.items()}


def finite_differences(
    case: Case, values: Mapping[str, torch.Tensor]
) -> tuple[Numerical, dict[str, torch.Tensor]]:
    """The numerical gradients of the hand-written forward, and the upstream gradients (in the
    checked dtype) the backward is to be handed. Raises ForwardFailed or SpecError."""
    spec = case.spec
    namespace = load_namespace(spec.implementation.source, spec, "implementation")
    forward = functools.partial(_forward, spec, case.dims, namespace)
    wide = in_float64(values)
    outputs = {n: as_tensor(o) for n, o in forward(wide).items()}
    missing = [o for o in spec.outputs if o not in outputs]
    if missing:
        raise SpecError(f"the forward gives no {missing[0]!r}", spec.path)
    dtype = DTYPES[case.dtype]
    grad_outs = {n: g.to(dtype) for n, g in upstream_gradients(outputs, case.seed).items()}
    # The same, rounded ones; an integer output (argmax indices) has no gradient to difference.
    upstream = {n: g.to(torch.float64) for n, g in grad_outs.items() if outputs[n].is_floating_point()}
    try:
        checked = [t.name for t in spec.checked]
        found = numerical_vjp(forward, wide, upstream, checked, samples=samples_for(case), seed=case.seed)
    except ForwardError as exc:
        cause = exc.__cause__
        detail = str(cause) if isinstance(cause, UserCodeError) else exc.what
        raise ForwardFailed(f"{exc} ({detail})" if isinstance(cause, UserCodeError) else str(exc)) from cause
    except NumericalError as exc:
        raise ForwardFailed(f"finite differences of the forward cannot be taken: {exc}") from None
    return found, grad_outs


def _forward(
    spec: Spec, dims: Mapping[str, int], namespace: Mapping[str, Any], values: Mapping[str, torch.Tensor]
) -> dict[str, Any]:
    try:
        return run_forward(spec, values, dims, namespace)
    except UserCodeError as exc:
        raise ForwardFailed(str(exc)) from exc


def numerical_checks(
    case: Case,
    values: Mapping[str, torch.Tensor],
    found: Numerical,
    grad_outs: Mapping[str, torch.Tensor],
    outcome: Outcome,
) -> list[Check]:
    """One row per checked tensor: its backward against the finite differences."""
    spec, tol = case.spec, case.tolerance
    rows = []
    for t in spec.checked:
        got = outcome.grads.get(t.name, MISSING)
        rows.append(_row(spec, case, t, found[t.name], got, tol, values, found, grad_outs))
        if t.name in outcome.problems and rows[-1].status == "missing":
            rows[-1].hint = outcome.problems[t.name]
    return checks.modified_flagged(rows, outcome.modified)


def _row(
    spec: Spec,
    case: Case,
    t: TensorSpec,
    numerical: TensorNumerical,
    got: Any,
    tol: Any,
    values: Mapping[str, torch.Tensor],
    found: Numerical,
    grad_outs: Mapping[str, torch.Tensor],
) -> Check:
    labels = spec.dim_labels(t)
    shape = list(numerical.grad.shape)
    all_grads = {n: tn.grad for n, tn in found.tensors.items() if not tn.sampled}
    reference = _forward_as_reference(spec, case)
    base: dict[str, Any] = {"numel": numerical.numel, "expected_labels": labels, "line": t.line,
            "unstable": numerical.n_unstable or None,
            "sampled": numerical.sampling() if numerical.sampled else None}  # fmt: skip
    if got is MISSING:
        return Check(t.name, t.kind, shape, None, "missing", diagnosis="missing",
                     hint=f"no gradient was given for {t.name}", **base)  # fmt: skip
    try:
        actual = as_tensor(got, gradient=True)
    except NotATensor as exc:
        return Check(
            t.name,
            t.kind,
            shape,
            None,
            "error",
            hint=f"the gradient for {t.name} is {exc}, not a tensor",
            **base,
        )
    real = actual.real if actual.is_complex() else actual  # compared; the imaginary part said below
    full = _full_expected(numerical, real)
    expected = full if full is not None else numerical.grad
    subject = checks.Subject(t.name, t.kind, expected, got, t, checked_dtype=DTYPES[case.dtype])
    if list(actual.shape) != shape:
        check = Check(t.name, t.kind, shape, list(actual.shape), "shape_error",
                      actual_labels=diagnose.label_axes(actual.shape, case.dims), **base)  # fmt: skip
    else:
        compared = comparison(real, numerical)
        if numerical.numel and not compared.index.numel():
            hint = _nothing_compared(numerical)
            return Check(t.name, t.kind, shape, shape, "error", hint=hint, actual_labels=labels, **base)
        check = _imaginary(_compared(t, compared, tol, shape, base), actual)
        check = checks.dtype_and_device(check, subject, spec, case)
        if check.status == "mismatch" and full is not None:
            check = checks.mapped(check, subject, tol)
    if check.status in ("mismatch", "shape_error") and full is not None:
        ctx = diagnose.Context(spec, case.dims, t, tol, all_grads, values, grad_outs, reference)
        check = checks.diagnosed(check, subject, ctx)
    elif check.status in ("mismatch", "shape_error"):
        check.hint = _sampled_hint(check, numerical)
    if full is not None and check.hint is not None:
        counted = _counted(check, numerical, ", taken as right below")
        check = replace(check, hint=f"{counted}; {check.hint}") if counted else check
    elif full is not None:
        check = replace(check, hint=_counted(check, numerical))
    return check


def _imaginary(check: Check, actual: torch.Tensor) -> Check:
    """A complex gradient with a nonzero imaginary part is an error, whatever its real part (as
    :func:`~gradcheck_cli.compare.compare` says with a reference)."""
    if not actual.is_complex():
        return check
    imag = actual.imag
    count = int((imag != 0).sum())
    if not count:
        return check
    hint = imaginary_hint(check.name, check.kind, count, actual.numel(), float(imag.abs().max()))
    return replace(check, status="error", hint=hint)


def _forward_as_reference(spec: Spec, case: Case) -> Any:
    """The hand-written forward as the diagnosis's reference (for the contributions an element
    receives: by autograd through a torch forward, by finite differences through a numpy one)."""
    namespace = load_namespace(spec.implementation.source, spec, "implementation")

    def forward(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        outputs = run_forward(spec, tensors, case.dims, namespace, copy_inputs=False)
        return {n: o if isinstance(o, torch.Tensor) else as_tensor(o) for n, o in outputs.items()}

    return forward


def _full_expected(numerical: TensorNumerical, actual: torch.Tensor) -> torch.Tensor | None:
    """The numerical gradient of every element, unstable ones taken as right (None when sampled)."""
    if numerical.sampled:
        return None
    full = numerical.grad.clone()
    skip = numerical.unstable | numerical.nonfinite
    if skip.any() and tuple(actual.shape) == tuple(full.shape):
        full[skip] = actual.detach().to("cpu", torch.float64)[skip]
    return full


def _compared(t: TensorSpec, c: Comparison, tol: Any, shape: list[int], base: dict[str, Any]) -> Check:
    elem, dirs = c.close(tol.atol, tol.rtol)
    diff = (c.actual - c.expected).abs()
    nonzero = c.expected.abs() > tol.atol
    check = Check(
        t.name,
        t.kind,
        shape,
        shape,
        "pass",
        actual_labels=base["expected_labels"],
        max_abs_err=float(diff.max()) if diff.numel() else 0.0,
        max_rel_err=float((diff[nonzero] / c.expected.abs()[nonzero]).max()) if bool(nonzero.any()) else None,
        mismatched=int((~elem).sum()),
        **base,
    )
    worst = c.worst(tol.atol, tol.rtol)
    if worst is not None:
        check.worst_index, check.expected_value, check.actual_value = list(worst[0]), worst[1], worst[2]
    wrong_directions = int((~dirs).sum())
    if check.mismatched or wrong_directions:
        check.status = "mismatch"
    if wrong_directions and not check.mismatched:
        check.hint = (
            f"{wrong_directions} of {len(dirs)} random directions over all of {t.name} disagree with the"
            f" finite differences, though the {c.index.numel()} sampled elements agree: an element"
            " outside the sample is wrong (--samples all checks every one)"
        )
    return check


def _left_out(numerical: TensorNumerical) -> tuple[int, str]:
    """How many computed elements were left out of the comparison, and why (``4 at a kink``)."""
    why = []
    if numerical.n_unstable:
        why.append(f"{numerical.n_unstable} at a kink")
    if numerical.n_nonfinite:
        why.append(f"{numerical.n_nonfinite} whose perturbed forward is not finite")
    return int((numerical.unstable | numerical.nonfinite).sum()), ", ".join(why)


def _counted(check: Check, numerical: TensorNumerical, then: str = "") -> str | None:
    """A mismatch's count over the elements really compared, when some were left out (a kink, a
    non-finite forward): ``4 of 8 compared elements mismatch (4 left out: 4 at a kink)``. The
    pattern a diagnosis describes takes the left-out elements as right."""
    left, why = _left_out(numerical)
    if check.status != "mismatch" or not left or check.mismatched is None:
        return None
    compared = numerical.elements - left
    return f"{check.mismatched} of {compared} compared elements mismatch ({left} left out: {why}{then})"


def _nothing_compared(numerical: TensorNumerical) -> str:
    """Why a tensor got no verdict: finite differences could judge none of its elements."""
    _, why = _left_out(numerical)
    return (
        f"no element of {numerical.name} could be compared ({why}): finite differences"
        " cannot judge it here; try another --seed, or give the spec a reference"
    )


def _sampled_hint(check: Check, numerical: TensorNumerical) -> str:
    if check.status == "shape_error":
        return f"shape {check.actual_shape} where {check.expected_shape} is expected"
    elements, numel = numerical.elements, numerical.numel
    left, why = _left_out(numerical)
    of = f"{elements} sampled of {numel}" + (f"; {left} left out: {why}" if left else "")
    counted = f"{check.mismatched} of the {elements - left} compared elements are wrong ({of})"
    text = check.hint or counted
    return f"{text}; the pattern is not searched on a sample (--samples all checks every element)"


def describe(found: Numerical) -> str:
    return f"numerical ({found.describe()})"


DOUBLE_NOT_CHECKED = (
    "{}: the double backward is not checked in numerical mode (finite differences of the forward"
    " give first-order gradients only); the rows above are first order: give the spec a reference to"
    " check the double backward"
)


def notes(case: Case, found: Numerical) -> list[str]:
    """What the report says of the finite differences: their dtype, samples, kinks, warnings, and
    that ``--double`` (or the spec's ``double: true``) is not checked in this mode."""
    asked = "--double" if case.double else "double: true" if case.spec.double else None
    said = [DOUBLE_NOT_CHECKED.format(asked)] if asked else []
    if case.dtype != "float64":
        said.append(f"finite differences in float64; the backward ran in {case.dtype}")
    for tensor in found.tensors.values():
        if tensor.sampled or tensor.n_unstable or tensor.n_nonfinite:
            said.append(
                f"finite differences of {tensor.summary()}" + (": left out" if tensor.n_unstable else "")
            )
    return said + list(found.warnings)


# -- a third opinion on a reference (--numerical) ------------------------------------------


def reference_opinion(case: Case, values: Mapping[str, torch.Tensor], expected: Expected) -> str | None:
    """Finite differences of the reference against its autograd gradients (in float64): a problem
    of the spec's reference when they disagree, or None."""
    spec = case.spec
    truth = expected.truth or expected
    wide = in_float64(values)
    upstream = {n: g.to(torch.float64) for n, g in expected.grad_outs.items()}
    wanted = {n: g.to(torch.float64) for n, g in truth.grads.items()}
    if truth is expected and case.dtype != "float64":
        from .reference import run_reference

        wanted = run_reference(_widened(case), wide, upstream).grads
    forward = functools.partial(reference_outputs, spec, case.dims)
    try:
        checked = [t.name for t in spec.checked]
        found = numerical_vjp(forward, wide, upstream, checked, samples=samples_for(case), seed=case.seed)
    except (ForwardError, NumericalError) as exc:
        return f"--numerical: finite differences of the reference cannot be taken: {exc}"
    problems = []
    judge = Judge(1e-6, 1e-5)  # float64 on both sides: only a wrong formula differs by more
    for name, got in wanted.items():
        c = comparison(got, found[name])
        elem, dirs = c.close(judge.atol, judge.rtol)
        if bool(elem.all()) and bool(dirs.all()):
            continue
        worst = c.worst(judge.atol, judge.rtol)
        at = ""
        if worst is not None:
            numerical_value, autograd_value = format_pair(worst[1], worst[2])
            at = (
                f"; at {list(worst[0])} autograd gives {autograd_value}, finite differences {numerical_value}"
            )
        problems.append(f"{name} at {int((~elem).sum())} of {c.index.numel()} elements{at}")
    if not problems:
        return None
    return (
        "--numerical: the reference's autograd gradients disagree with finite differences of the"
        f" reference itself ({'; '.join(problems)}): the reference is not what its gradients say"
        " (a .detach(), an in-place op, or a custom Function inside it)"
    )


def _widened(case: Case) -> Case:
    return replace(case, dtype="float64")
