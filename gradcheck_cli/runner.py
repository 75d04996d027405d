"""Run one case: seeded tensors, the reference under autograd, the hand-written
side on copies, then one :class:`~gradcheck_cli.result.Check` per tensor.

:func:`run` is the one path from a spec to a result (``spec, run settings,
dims, options -> CaseResult``, with a sweep on top), used by the Python
API, the CLI, suites and the pytest plugin alike.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from . import checks, diagnose, numerical_mode
from .case import Case, case_for
from .case import make_case as prepare
from .compare import tolerance_for
from .conventions import run_implementation
from .double import run_double
from .errors import SpecError
from .handed import MISSING, ConventionError, Outcome
from .numerical import Numerical
from .numerical_mode import ForwardFailed, finite_differences
from .reference import (
    Expected,
    expected_values,
    reference_outputs,
    run_reference,
)
from .result import CaseResult, Check
from .settings import RunSettings
from .spec import Spec
from .sweep import sweep_cases
from .tensors import generate
from .usercode import UserCodeError, guarded_streams

__all__ = ["Case", "generate", "make_case", "run", "run_case", "run_reference", "run_sweep", "sweep_cases"]


def make_case(spec: Spec, *args: Any, **kwargs: Any) -> Case:
    """:func:`gradcheck_cli.case.make_case` (the same arguments), and the CUDA device must be there
    (raises SpecError): the case as a worker, which has torch, validates it."""
    return _on_a_device(prepare(spec, *args, **kwargs))


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


TF32_NOTE = "TF32 off while this ran (torch.backends.cuda.matmul and cudnn allow_tf32 = False)"


def device_notes(device: str) -> list[str]:
    """What the report says of the device's settings: TF32, switched off on CUDA."""
    return [TF32_NOTE] if device.startswith("cuda") else []


def run_case(case: Case, verbose: bool = False, pdb: bool = False) -> CaseResult:
    """Run one case; never raises for problems in the spec or the checked code."""
    with _full_precision(case.device):
        result = _run_case(case, verbose, pdb)
    result.notes += device_notes(case.device)
    return result


def _run_case(case: Case, verbose: bool, pdb: bool) -> CaseResult:
    spec = case.spec
    result = CaseResult(spec.name, spec.source, dict(case.dims), case.dtype, case.device, case.seed)
    result.tolerance = case.tolerance.to_dict()
    found: Numerical | None = None
    expected: Expected | None = None
    try:
        values = generate(case)
        if spec.reference.numerical:
            found, grad_outs = finite_differences(case, values)
        else:
            expected = expected_values(case, values)
            grad_outs = expected.grad_outs
    except SpecError as exc:
        return result.failed(str(exc), spec_error=True)
    except ForwardFailed as exc:  # the hand-written forward, differentiated numerically, raised
        return result.failed(str(exc))
    except (RuntimeError, MemoryError, OverflowError) as exc:  # e.g. tensors too large to allocate
        message = f"cannot build this case's tensors: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        return result.failed(message)
    grad_mode = torch.is_grad_enabled()
    try:
        with guarded_streams():
            outcome = run_implementation(spec, values, grad_outs, case.dims)
    except SpecError as exc:
        return result.failed(str(exc), spec_error=True)
    except UserCodeError as exc:
        if pdb:
            _post_mortem(exc.exc.__traceback__)
        return result.failed(str(exc))
    except ConventionError as exc:
        return result.failed(str(exc))
    finally:
        torch.set_grad_enabled(grad_mode)  # user code may have switched autograd off
    blind_spots = diagnose.transpose_blind_spots(spec, case.dims)
    result.notes = [*spec.notes, *outcome.notes, *blind_spots]
    result.quiet_notes = blind_spots
    if found is not None:  # no reference: the finite differences are the expected values
        result.reference = numerical_mode.describe(found)
        result.checks = numerical_mode.numerical_checks(case, values, found, grad_outs, outcome)
        result.notes += numerical_mode.notes(case, found)
        return result.finish()
    assert expected is not None
    result.reference = expected.description
    result.checks = check_all(case, values, expected, outcome, verbose)
    if spec.reference_grads:
        _quiet_note(result, f"expected values: {expected.description}")
    try:
        _second_opinions(case, values, expected, outcome, result, verbose)
    except SpecError as exc:
        return result.failed(str(exc), spec_error=True)
    finally:
        torch.set_grad_enabled(grad_mode)
    return result.finish()


def _second_opinions(
    case: Case,
    values: Mapping[str, torch.Tensor],
    expected: Expected,
    outcome: Outcome,
    result: CaseResult,
    verbose: bool,
) -> None:
    """--double's second-order rows, --numerical's finite differences of the reference, and the
    note on precision lost inside a float64 check."""
    wanted = {
        c.name: (expected.outputs if c.kind == "output" else expected.grads).get(c.name)
        for c in result.checks
    }
    if case.double or case.spec.double:
        first_ok = all(c.ok for c in result.checks)
        second_wanted, second_rows, double_note = run_double(case, values, expected, verbose, first_ok)
        result.checks += second_rows
        if second_rows:  # what the rows are: said when they fail, or with --verbose
            _quiet_note(result, double_note)
        else:  # why there are none
            result.notes.append(double_note)
        wanted.update(second_wanted)
    result.notes += precision_notes(result.checks, wanted, case.dtype)
    if case.numerical:
        problem = numerical_mode.reference_opinion(case, values, expected)
        if problem:
            raise SpecError(problem, case.spec.path)
        result.notes.append("--numerical: the reference's gradients agree with its finite differences")


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
                flagged = checks.forward_flagged(checks.measured(subject, spec, case, line, verbose))
                forward_bad = forward_bad or flagged.diagnosis == "forward_mismatch"
                found.append(flagged)
    for t in spec.checked:
        own = expected.grads[t.name] if calibrated else None
        got = outcome.grads.get(t.name, MISSING)
        subject = checks.Subject(t.name, t.kind, truth.grads[t.name], got, t, reference=own)
        check = checks.measured(subject, spec, case, t.line, verbose)
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


def _post_mortem(traceback: Any) -> None:
    """pdb where the checked code raised, talking on stderr: stdout is the report's (-f json)."""
    import pdb
    import sys

    debugger = pdb.Pdb(stdout=sys.stderr)
    debugger.reset()
    debugger.interaction(None, traceback)


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
