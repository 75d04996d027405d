"""Run one case: seeded tensors, the reference under autograd, the hand-written
side on copies, then one :class:`~gradcheck_cli.result.Check` per tensor.

:func:`run` is the one path from a spec to a result (``spec, run settings,
dims, options -> CaseResult``, with a sweep on top), used by the Python
API, the CLI, suites and the pytest plugin alike.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from . import checks, diagnose
from .case import Case, case_for
from .case import make_case as prepare
from .compare import DTYPES, tolerance_for
from .conventions import MISSING, ConventionError, DoubleOutcome, Outcome, double_backward, run_implementation
from .errors import SpecError
from .reference import (
    Expected,
    double_reference,
    expected_values,
    in_float64,
    reference_outputs,
    run_reference,
    upstream_names,
    widened,
)
from .result import CaseResult, Check
from .settings import RunSettings
from .spec import Spec, TensorSpec
from .usercode import UserCodeError, guarded_streams

__all__ = ["Case", "generate", "make_case", "run", "run_case", "run_reference", "run_sweep", "sweep_cases"]


def make_case(
    spec: Spec,
    dims: Mapping[str, int] | None = None,
    dtype: str = "float64",
    device: str = "cpu",
    seed: int = 0,
    atol: float | None = None,
    rtol: float | None = None,
    options: Mapping[str, Any] | None = None,
    double: bool = False,
    **tolerance: Any,
) -> Case:
    """:func:`gradcheck_cli.case.make_case`, and the CUDA device must be there (raises SpecError)."""
    return _on_a_device(prepare(spec, dims, dtype, device, seed, atol, rtol, options, double, **tolerance))


def _on_a_device(case: Case) -> Case:
    problem = cuda_problem(case.device)
    if problem:
        raise SpecError(problem)
    return case


def cuda_problem(device: str) -> str | None:
    """Why ``device`` cannot be used here (no CUDA, too few GPUs), or None."""
    if not device.startswith("cuda"):
        return None
    if not torch.cuda.is_available():
        return "--device cuda: no CUDA device is available on this machine"
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        return f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
    return None


def run(
    spec: Spec,
    settings: RunSettings,
    dims: Mapping[str, int] | None = None,
    options: Mapping[str, Any] | None = None,
) -> CaseResult:
    """Spec and run settings -> one result (the worst of a sweep with ``settings.sweep``).

    Raises :class:`SpecError` when the spec cannot take these settings (an unknown
    dim or option, no CUDA device); any other problem of the spec or of the checked
    code is in the result.
    """
    skip = spec.skip
    if skip is not None and skip.applies(settings.dtype, settings.device):
        skipped = CaseResult(spec.name, spec.source, spec.resolve_dims(dims), settings.dtype, settings.device,
                             settings.seed, status="skip", reason=skip.reason)  # fmt: skip
        return skipped
    start = time.perf_counter()
    case = _on_a_device(case_for(spec, settings, dims, options))
    result = (
        run_sweep(case, settings.verbose, settings.pdb)
        if settings.sweep
        else run_case(case, settings.verbose, settings.pdb)
    )
    if options:
        result.notes.insert(0, "options set: " + ", ".join(f"{k}={v!r}" for k, v in options.items()))
    if spec.xfail is not None and spec.xfail.applies(settings.dtype, settings.device):
        result.expected_to_fail(spec.xfail.reason)
    result.duration = time.perf_counter() - start
    return result


# -- tensors -----------------------------------------------------------------


def generate(case: Case) -> dict[str, torch.Tensor]:
    """The seeded inputs and params, in spec order, on the case's device.

    Values are drawn on the CPU in float64 and then cast, so a seed gives the
    same numbers on every device and (up to rounding) every dtype.
    """
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
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
    if t.min_abs:
        sign = torch.where(x >= 0, 1.0, -1.0).to(torch.float64)
        x = sign * x.abs().clamp_min(t.min_abs)
    return x.to(DTYPES[case.dtype])


# -- one case ---------------------------------------------------------------


@contextlib.contextmanager
def _full_precision(device: str) -> Iterator[None]:
    """No TF32 on CUDA: cuDNN would use it for the reference's float32 convolutions
    (about 1e-3 relative error) while a hand-written matmul backward does not."""
    if not device.startswith("cuda"):
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def run_case(case: Case, verbose: bool = False, pdb: bool = False) -> CaseResult:
    """Run one case; never raises for problems in the spec or the checked code."""
    with _full_precision(case.device):
        return _run_case(case, verbose, pdb)


def _run_case(case: Case, verbose: bool, pdb: bool) -> CaseResult:
    spec = case.spec
    result = CaseResult(spec.name, spec.source, dict(case.dims), case.dtype, case.device, case.seed)
    try:
        values = generate(case)
        expected = expected_values(case, values)
    except SpecError as exc:
        return result.failed(str(exc), spec_error=True)
    except (RuntimeError, MemoryError, OverflowError) as exc:  # e.g. tensors too large to allocate
        message = f"cannot build this case's tensors: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        return result.failed(message)
    grad_mode = torch.is_grad_enabled()
    try:
        with guarded_streams():
            outcome = run_implementation(spec, values, expected.grad_outs, case.dims)
    except SpecError as exc:
        return result.failed(str(exc), spec_error=True)
    except UserCodeError as exc:
        if pdb:
            import pdb as pdb_module

            pdb_module.post_mortem(exc.exc.__traceback__)
        return result.failed(str(exc))
    except ConventionError as exc:
        return result.failed(str(exc))
    finally:
        torch.set_grad_enabled(grad_mode)  # user code may have switched autograd off
    result.reference = expected.description
    result.tolerance = case.tolerance.to_dict()
    result.checks = check_all(case, values, expected, outcome, verbose)
    blind_spots = diagnose.transpose_blind_spots(spec, case.dims)
    result.notes = [*spec.notes, *outcome.notes, *blind_spots]
    result.quiet_notes = blind_spots
    if spec.reference_grads:
        _quiet_note(result, f"expected values: {expected.description}")
    wanted = {
        c.name: (expected.outputs if c.kind == "output" else expected.grads).get(c.name)
        for c in result.checks
    }
    if case.double or spec.double:
        try:
            first_ok = all(c.ok for c in result.checks)
            second_wanted, second_rows, double_note = run_double(case, values, expected, verbose, first_ok)
        except SpecError as exc:
            return result.failed(str(exc), spec_error=True)
        finally:
            torch.set_grad_enabled(grad_mode)
        result.checks += second_rows
        if second_rows:  # what the rows are: said when they fail, or with --verbose
            _quiet_note(result, double_note)
        else:  # why there are none
            result.notes.append(double_note)
        wanted.update(second_wanted)
    result.notes += precision_notes(result.checks, wanted, case.dtype)
    return result.finish()


def _quiet_note(result: CaseResult, note: str) -> None:
    """A note shown when the result fails, or with --verbose."""
    result.notes.append(note)
    result.quiet_notes.append(note)


def precision_notes(
    found: Sequence[Check], wanted: Mapping[str, torch.Tensor | None], dtype: str
) -> list[str]:
    """A note for each passing float64 row whose errors look like a lower precision's."""
    notes = []
    for check in found:
        want = wanted.get(check.name)
        note = checks.precision_note(check, want, dtype) if want is not None else None
        if note:
            notes.append(note)
    return notes


def check_all(
    case: Case, values: Mapping[str, torch.Tensor], expected: Expected, outcome: Outcome, verbose: bool
) -> list[Check]:
    """The forward's outputs, then each checked gradient, then what the code modified.

    With a calibrated tolerance each row is judged against the float64 truth, by PyTorch's own
    error in the checked dtype; else against the expected values themselves.
    """
    spec, tol = case.spec, case.tolerance
    truth = expected.truth or expected
    calibrated = expected.truth is not None
    found: list[Check] = []
    forward_bad = False
    if spec.implementation.forward_checked:
        line = spec.line_of("implementation.forward") or spec.line_of("reference")
        for name, want in truth.outputs.items():
            if name in outcome.outputs:
                own = expected.outputs[name] if calibrated else None
                subject = checks.Subject(name, "output", want, outcome.outputs[name], reference=own)
                flagged = checks.forward_flagged(_measured(subject, case, line, verbose))
                forward_bad = forward_bad or flagged.diagnosis == "forward_mismatch"
                found.append(flagged)
    for t in spec.checked:
        own = expected.grads[t.name] if calibrated else None
        got = outcome.grads.get(t.name, MISSING)
        subject = checks.Subject(t.name, t.kind, truth.grads[t.name], got, t, reference=own)
        check = _measured(subject, case, t.line, verbose)
        if t.name in outcome.problems and check.status == "missing":
            check = replace(check, hint=outcome.problems[t.name])
        ctx = diagnose.Context(
            spec, case.dims, t, subject.judge(tol), truth.grads, values, truth.grad_outs, _reference_of(case)
        )
        check = checks.diagnosed(check, subject, ctx)
        found.append(checks.not_meaningful(check) if forward_bad else check)
    if spec.implementation.autograd_function is not None:
        again = tolerance_for(case.dtype) if tol.calibrated else tol  # two runs of one code, one dtype
        found = checks.repeat_flagged(found, outcome, again, spec.implementation.autograd_function)
    return checks.modified_flagged(found, outcome.modified)


def _reference_of(case: Case) -> Any:
    """The reference as a function of the tensors (diagnose evaluates it for an element's contributions)."""
    return functools.partial(reference_outputs, case.spec, case.dims)


def _measured(subject: checks.Subject, case: Case, line: int | None, verbose: bool) -> Check:
    """Compared, its dtype and device checked, its error map drawn, its spec line known."""
    spec, tol = case.spec, case.tolerance
    check = checks.dtype_and_device(checks.measure(subject, spec, case, tol, verbose), subject, spec, case)
    return replace(checks.mapped(check, subject, tol), line=line)


# -- the double backward (--double) -------------------------------------------------

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
        check = _measured(subject, case, tensor.line, verbose)
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


# -- several cases --------------------------------------------------------------


def sweep_cases(case: Case, seeds: int = 3) -> list[Case]:
    """The case itself, other seeds, and sizes near the spec's own, all distinct.

    Distinct sizes make every axis tell apart from every other, so no
    transposed or mis-reduced gradient can have the right shape by chance.
    Size-1 dims stay 1 (they are usually structural). A spec's ``constraints``
    are met: when the distinct sizes break one, the sizes nearby that meet
    them all are used (as distinct as they allow).
    """
    spec = case.spec
    cases = [case]
    for shift in (1, 2):
        distinct: dict[str, int] = {}
        used: set[int] = set()
        for name, size in case.dims.items():
            new = size + shift if size > 1 else 1
            while new > 1 and new in used:
                new += 1
            used.add(new)
            distinct[name] = new
        dims: dict[str, int] | None = distinct
        if spec.constraints and spec.broken_constraint(distinct) is not None:
            dims = _constrained_sizes(spec, case.dims, shift)
        if dims is None or not _shapes_evaluate(spec, dims):
            continue
        cases.append(replace(case, dims=dims, seed=case.seed + shift))
    for s in range(1, seeds):
        cases.append(replace(case, seed=case.seed + 100 * s))
    return _unique(cases)


def _shapes_evaluate(spec: Spec, dims: Mapping[str, int]) -> bool:
    try:
        for t in spec.tensors.values():
            spec.shape_of(t, dims)
    except SpecError:
        return False
    return True


MAX_SIZE_CANDIDATES = 4096  # sizes tried for a sweep case of a constrained spec


def _constrained_sizes(spec: Spec, base: Mapping[str, int], shift: int) -> dict[str, int] | None:
    """Sizes from ``size + shift`` up, meeting every constraint: the most distinct, then the nearest."""
    free = [name for name, size in base.items() if size > 1]
    width = 4
    while width > 1 and width ** len(free) > MAX_SIZE_CANDIDATES:
        width -= 1
    best: tuple[tuple[int, int], dict[str, int]] | None = None
    for sizes in itertools.product(range(width), repeat=len(free)):
        dims = dict(base)
        dims.update({name: base[name] + shift + k for name, k in zip(free, sizes)})
        if spec.broken_constraint(dims) is not None:
            continue
        rank = (-len(set(dims[n] for n in free)), sum(sizes))
        if best is None or rank < best[0]:
            best = (rank, dims)
    return best[1] if best is not None else None


def _unique(cases: Sequence[Case]) -> list[Case]:
    seen, out = set(), []
    for c in cases:
        key = (tuple(sorted(c.dims.items())), c.seed)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def run_sweep(case: Case, verbose: bool = False, pdb: bool = False) -> CaseResult:
    """Run every sweep case; report the worst, with a line per case run."""
    results = []
    for i, c in enumerate(sweep_cases(case)):
        r = run_case(c, verbose=verbose, pdb=pdb)
        # Sizes the sweep chose may not suit the layer (a kernel larger than its input):
        # the reference rejects them, and that says nothing about the backward.
        if i > 0 and r.spec_error and c.dims != case.dims:
            continue
        results.append(r)
    rank = {"error": 2, "fail": 1, "pass": 0}

    def badness(r: CaseResult) -> tuple[int, float]:
        worst = max((c.max_abs_err or 0.0 for c in r.checks), default=0.0)
        return rank[r.status], worst

    worst = max(results, key=badness)
    worst.sweep = [
        {"dims": r.dims, "seed": r.seed, "status": r.status, "failing": [c.name for c in r.failing]}
        for r in results
    ]
    return worst
