"""One :class:`~gradcheck_cli.result.Check` per tensor, built once from pure steps.

For each forward output and each checked gradient: :func:`measure` compares
the values (or says why they cannot be compared), :func:`dtype_and_device`
flags a value of the wrong kind (another dtype, complex included, is
``wrong_dtype``; a float keeps its comparison), :func:`diagnosed` names the
mistake of a failing gradient. An integer forward output (argmax indices) is
compared exactly, in the reference's dtype. Then, over all checks of a case,
:func:`forward_flagged` marks the gradients as not meaningful when the forward is wrong,
:func:`repeat_flagged` reports an autograd.Function's backward that gives
other values when run again, and :func:`modified_flagged` reports what the
checked code changed in place. :func:`precision_note` says when a passing
float64 value carries the errors of a lower precision. Each step returns a
new Check (or list) and never changes its argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from . import diagnose
from .compare import (
    NotATensor,
    as_tensor,
    compare,
    describe_dtype,
    differentiable,
    excerpt,
    judge,
    largest_abs,
)
from .handed import MISSING, Outcome
from .result import Check, format_pair
from .spec import Spec, TensorSpec
from .tolerance import Judge, Tolerance, judge_of

if TYPE_CHECKING:
    from .runner import Case


@dataclass(frozen=True)
class Subject:
    """What one check is about: a forward output or a gradient, expected and got."""

    name: str
    kind: str  # "input" | "param" | "output"
    expected: torch.Tensor
    got: Any  # a tensor, an array, MISSING, or whatever the checked code gave back
    tensor: TensorSpec | None = None  # the spec's tensor, for a gradient
    # Calibrated tolerance: ``expected`` is the float64 truth, this PyTorch's own result in the
    # checked dtype (what the checked code's dtype must be, and the measure of its error).
    reference: torch.Tensor | None = None
    checked_dtype: torch.dtype | None = None  # when neither is in it (finite differences are float64)
    # Each allowance asked for, by tolerance: a calibrated one is a full pass over both tensors.
    _judged: dict[Tolerance | Judge, Judge] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )
    _excess: dict[Judge, torch.Tensor] = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def what(self) -> str:
        return "output" if self.kind == "output" else "gradient"

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the checked code should have given back."""
        if self.checked_dtype is not None:
            return self.checked_dtype
        return (self.reference if self.reference is not None else self.expected).dtype

    @property
    def exact(self) -> bool:
        """An integer (or bool) forward output, such as argmax indices: compared exactly, in the
        reference's dtype (it has no gradient, and no rounding to allow for)."""
        return self.kind == "output" and not differentiable(self.expected)

    def judge(self, tol: Tolerance | Judge) -> Judge:
        """The allowance this tensor is judged by (one number in calibrated mode; none when exact),
        worked out once (the comparison, the error map and the diagnosis all ask)."""
        if self.exact:
            return Judge(0.0, 0.0)
        found = self._judged.get(tol)
        if found is None:
            found = self._judged[tol] = judge(tol, self.expected, self.reference)
        return found

    def excess(self, allowed: Judge) -> torch.Tensor:
        """:meth:`Judge.excess` of what was got, worked out once (the error map and the diagnosis
        of a failing tensor both read it)."""
        found = self._excess.get(allowed)
        if found is None:
            actual = as_tensor(self.got)
            found = self._excess[allowed] = allowed.excess(
                actual.real if actual.is_complex() else actual, self.expected
            )
        return found


def measure(subject: Subject, spec: Spec, case: Case, tol: Tolerance | Judge, verbose: bool) -> Check:
    """Compare the values; a missing value, a non-tensor or a meta tensor is said so."""
    want, name, kind = subject.expected, subject.name, subject.kind
    labels = spec.dim_labels(subject.tensor) if subject.tensor is not None else None  # outputs: sizes only

    def unmeasured(status: str, hint: str, got_shape: list[int] | None = None, **extra: Any) -> Check:
        return Check(
            name, kind, list(want.shape), got_shape, status, numel=want.numel(), hint=hint,
            expected_labels=labels, **extra,
        )  # fmt: skip

    if subject.got is MISSING:
        return unmeasured("missing", f"no {subject.what} was given for {name}", diagnosis="missing")
    try:
        if kind != "output" and isinstance(subject.got, (int, float)):  # a loss may be a Python float
            raise NotATensor(f"a Python {type(subject.got).__name__}")
        actual = as_tensor(subject.got)
    except NotATensor as exc:
        return unmeasured("error", f"the {subject.what} for {name} is {exc}, not a tensor")
    if actual.is_meta:  # a meta tensor holds no values to compare
        hint = f"the {subject.what} for {name} is on device meta, expected {case.device}"
        return unmeasured("error", hint, list(actual.shape))
    if subject.tensor is None:
        actual_labels = None
    elif tuple(actual.shape) == tuple(want.shape):
        actual_labels = labels
    else:
        actual_labels = diagnose.label_axes(actual.shape, case.dims)
    check = compare(name, kind, want, actual, subject.judge(tol), labels, actual_labels)
    if verbose and check.worst_index is not None:
        check = replace(check, excerpt=excerpt(want, actual, check.worst_index))
    return check


def measured(subject: Subject, spec: Spec, case: Case, line: int | None, verbose: bool) -> Check:
    """:func:`measure`, :func:`dtype_and_device` and :func:`mapped`, with the spec line it is at."""
    tol = case.tolerance
    check = dtype_and_device(measure(subject, spec, case, tol, verbose), subject, spec, case)
    return replace(mapped(check, subject, tol), line=line)


def dtype_and_device(check: Check, subject: Subject, spec: Spec, case: Case) -> Check:
    """A value of another dtype does not pass (``wrong_dtype``): a float (or a complex value, for a
    real tensor: autograd refuses it) keeps its comparison; an integer one where a float is
    expected is an error. An integer output must have the reference's dtype. A value on another
    device is an error."""
    if check.status not in ("pass", "mismatch", "error"):  # compared values only
        return check
    try:
        actual = as_tensor(subject.got)
    except NotATensor:
        return check
    if actual.is_meta:
        return check
    if check.status == "error":  # compare's one error: an imaginary part, for a real tensor
        return replace(check, diagnosis="wrong_dtype") if actual.is_complex() else check
    problems = []
    integral = not actual.is_floating_point() and not actual.is_complex() and not subject.exact
    if integral:
        problems.append(f"dtype {describe_dtype(actual)}, expected a float tensor")
    got = subject.got
    if (
        isinstance(got, torch.Tensor)
        and got.device.type != torch.device(case.device).type
        and spec.implementation.backend == "torch"
    ):
        problems.append(f"on device {got.device}, expected {case.device}")
    if problems:
        hint = f"the {subject.what} for {check.name} has " + " and ".join(problems)
        return replace(check, status="error", diagnosis="wrong_dtype" if integral else None, hint=hint)
    if actual.dtype == subject.dtype:
        return check
    dtypes = f"dtype {describe_dtype(actual)}, expected {str(subject.dtype).replace('torch.', '')}"
    hint = f"the {subject.what} for {check.name} has {dtypes}"
    if check.status == "pass":
        return replace(check, status="error", diagnosis="wrong_dtype", hint=f"{hint}; its values match")
    return replace(check, diagnosis="wrong_dtype", hint=hint)


def diagnosed(check: Check, subject: Subject, ctx: diagnose.Context) -> Check:
    """A failing gradient with the mistake it looks like (a pass is never touched)."""
    if check.status not in ("mismatch", "shape_error") or subject.got is MISSING:
        return check
    actual = as_tensor(subject.got)
    real = actual.real if actual.is_complex() else actual
    excess = subject.excess(judge_of(ctx.tol)) if real.shape == subject.expected.shape else None
    diagnosis, hint = diagnose.explain(subject.expected, real, ctx, excess)
    if check.diagnosis == "wrong_dtype":  # the values are wrong too: say both, the values' mistake first
        return replace(check, diagnosis=diagnosis or "wrong_dtype", hint=f"{hint}; and {check.hint}")
    return replace(check, diagnosis=diagnosis, hint=hint)


def mapped(check: Check, subject: Subject, tol: Tolerance | Judge) -> Check:
    """A mismatching tensor with its error map: where it is wrong, relative to the tolerance."""
    if check.status != "mismatch" or not check.numel:
        return check
    from .errormap import build_error_map

    actual = as_tensor(subject.got)
    if actual.is_complex():
        actual = actual.real
    expected = subject.expected.detach()
    allowed = subject.judge(tol)
    try:
        ratio = subject.excess(allowed)  # shared with the diagnosis
        error_map = build_error_map(expected, actual, allowed.atol, check.expected_labels, ratio=ratio)
    except ValueError:  # nothing to draw (an empty tensor)
        return check
    return replace(check, error_map=error_map)


def forward_flagged(check: Check) -> Check:
    """A forward output that differs from the reference: say the gradients are not meaningful."""
    if check.ok or check.status == "error":
        return check
    return replace(
        check,
        diagnosis="forward_mismatch",
        hint=f"the hand-written forward's {check.name} differs from the reference"
        f" ({check.mismatched} of {check.numel} elements); fix it first:"
        " the gradients below are computed from it and are not meaningful",
    )


def not_meaningful(check: Check) -> Check:
    """A gradient row computed from a wrong forward."""
    if check.ok:
        return check
    return replace(check, hint=((check.hint or "") + " (forward differs: not meaningful)").strip())


def modified_flagged(checks: list[Check], modified: list[str]) -> list[Check]:
    """Each tensor the checked code changed in place: its row says so, and does not pass."""
    result = list(checks)
    for name in modified:
        hint = f"the checked code modified {name} in place; it must not change what it is handed"
        for i, check in enumerate(result):
            if check.name == name and check.kind != "output":
                result[i] = replace(
                    check,
                    diagnosis="modified_input",
                    hint=hint if check.ok else f"{hint} ({check.hint or check.status})",
                    status="error" if check.ok else check.status,
                )
                break
        else:  # not a checked tensor (an integer target, an upstream gradient): its own row
            result.append(Check(name, "input", None, None, "error", diagnosis="modified_input", hint=hint))
    return result


def repeat_flagged(checks: list[Check], outcome: Outcome, tol: Tolerance, function: str) -> list[Check]:
    """A Function's backward run a second time on the same graph: each gradient it gave
    differently is ``not_repeatable``; a second run that raised is a row of its own."""
    result = list(checks)
    again = "torch.autograd.gradcheck and backward(retain_graph=True) run it again"
    if outcome.repeat_error is not None:
        hint = f"{outcome.repeat_error}: the backward changes a tensor it saved, in place; {again}"
        row = Check(
            f"{function}.backward", "backward", None, None, "error", diagnosis="not_repeatable", hint=hint
        )
        return [*result, row]
    if outcome.repeated is None:
        return result
    for i, check in enumerate(result):
        if check.kind == "output" or check.name not in outcome.repeated:
            continue
        difference = _difference(outcome.grads.get(check.name, MISSING), outcome.repeated[check.name], tol)
        if difference is None:
            continue
        hint = (
            f"a second backward on the same graph gives another {check.name} gradient ({difference}):"
            f" {function}.backward changes what it saved, or depends on how often it runs; {again}"
        )
        result[i] = replace(
            check,
            diagnosis="not_repeatable",
            hint=hint if check.ok else f"{hint} (first run: {check.hint or check.status})",
            status="error" if check.ok else check.status,
        )
    return result


def _difference(first: Any, again: Any, tol: Tolerance) -> str | None:
    """How a second run's gradient differs from the first's, or None when it agrees (within ``tol``)."""
    if first is MISSING or again is MISSING:
        return None if first is again else ("None the first time" if first is MISSING else "None this time")
    try:
        a, b = as_tensor(first), as_tensor(again)
    except NotATensor:
        return None
    if tuple(a.shape) != tuple(b.shape):
        return f"shape {list(b.shape)}, the first time {list(a.shape)}"
    check = compare("again", "input", a, b, tol)
    if check.ok:
        return None
    assert check.worst_index is not None and check.expected_value is not None
    first_value, second_value = format_pair(check.expected_value, check.actual_value)
    text = (
        f"{check.mismatched} of {check.numel} elements differ; at {check.worst_index}:"
        f" {first_value}, then {second_value}"
    )
    if compare("twice", "input", 2 * a.to(torch.float64), b.to(torch.float64), tol).ok:
        text += "; the second is twice the first: a saved tensor's .grad accumulating?"
    return text


# Lower precisions a float64 value's errors may betray, with their unit roundoff.
PRECISIONS = (("float32", 2.0**-23), ("float16", 2.0**-10), ("bfloat16", 2.0**-7))


def precision_note(check: Check, expected: torch.Tensor, dtype: str) -> str | None:
    """A passing float64 value whose errors are far above float64 rounding at its scale:
    the precision they look like (``errors ~1e-7 relative: ... in float32``)."""
    if dtype != "float64" or not check.ok or not check.max_abs_err or not expected.numel():
        return None
    scale = float(expected.detach().abs().max()) if expected.is_complex() else largest_abs(expected)
    if not scale > 0 or not math.isfinite(scale):
        return None
    relative = check.max_abs_err / scale
    if relative < PRECISIONS[0][1] / 16:  # a float64 sum of many terms stays far below this
        return None
    name = min(PRECISIONS, key=lambda p: abs(math.log10(relative) - math.log10(p[1])))[0]
    side = "forward" if check.kind == "output" else "backward"
    magnitude = round(math.log10(relative))
    return (
        f"{check.name}: errors ~1e{magnitude} relative (max abs err {check.max_abs_err:.1e},"
        f" largest value {scale:.2g}), far above float64 rounding (~1e-16): this {side} appears to compute"
        f" in {name}"
    )
