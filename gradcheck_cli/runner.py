"""Run one case: seeded tensors, the reference under autograd, the hand-written
side on copies, then one :class:`~gradcheck_cli.result.Check` per tensor."""

from __future__ import annotations

import contextlib
import functools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

from . import diagnose
from .compare import DTYPES, NotATensor, Tolerance, as_tensor, compare, describe_dtype, excerpt, tolerance_for
from .conventions import MISSING, ConventionError, UserCodeError, load_namespace, run_implementation
from .errors import SpecError
from .reference import evaluate, parse_reference
from .result import CaseResult, Check
from .spec import Spec, TensorSpec


@dataclass(frozen=True)
class Case:
    """A spec with everything needed to run it once."""

    spec: Spec
    dims: dict[str, int] = field(default_factory=dict)
    dtype: str = "float64"
    device: str = "cpu"
    seed: int = 0
    atol: float | None = None
    rtol: float | None = None

    @property
    def tolerance(self) -> Tolerance:
        return tolerance_for(
            self.dtype,
            self.atol if self.atol is not None else self.spec.tolerance.atol,
            self.rtol if self.rtol is not None else self.spec.tolerance.rtol,
        )


def make_case(
    spec: Spec,
    dims: Mapping[str, int] | None = None,
    dtype: str = "float64",
    device: str = "cpu",
    seed: int = 0,
    atol: float | None = None,
    rtol: float | None = None,
    options: Mapping[str, Any] | None = None,
) -> Case:
    """Validate the run settings against the spec (raises SpecError).

    ``options`` override the spec's own options (``--option stride=1``).
    """
    if dtype not in DTYPES:
        raise SpecError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise SpecError(f"unknown device {device!r}; use cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SpecError("--device cuda: no CUDA device is available on this machine")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise SpecError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if options:
        spec = spec.with_options(options)
    if spec.implementation.backend == "numpy" and dtype in ("bfloat16",):
        raise SpecError(
            f"{spec.name}: numpy has no {dtype}: a numpy backend checks float64, float32 or float16",
            spec.path,
        )
    resolved = spec.resolve_dims(dims)
    return Case(spec, resolved, dtype, device, seed, atol, rtol)


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
        shape = spec.shape_of(t, case.dims)
        values[t.name] = _draw(spec, t, shape, case, gen).to(case.device)
    return values


def _draw(
    spec: Spec, t: TensorSpec, shape: tuple[int, ...], case: Case, gen: torch.Generator
) -> torch.Tensor:
    low, high = spec.bound(t.low, case.dims), spec.bound(t.high, case.dims)
    if t.dtype in ("int64", "int32"):
        assert low is not None and high is not None
        if int(high) <= int(low):
            raise spec.error(f"low {low} must be below high {high}", f"inputs.{t.name}")
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


# -- the reference side --------------------------------------------------------


@dataclass
class Expected:
    outputs: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor]
    grad_outs: dict[str, torch.Tensor]


def reference_outputs(case: Case, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference's outputs by name, on ``tensors`` (every input and param by name).

    run_reference differentiates them; diagnose evaluates them again on the same values
    (and differentiates twice, or in forward mode) for the contributions one gradient
    element receives. Raises SpecError.
    """
    spec = case.spec
    scope: dict[str, Any] = {**spec.options, **case.dims, **tensors, "torch": torch, "F": F, "math": math}
    ref = spec.reference
    try:
        if ref.expr is not None:
            tree = parse_reference(ref.expr, list(spec.tensors) + list(spec.dims) + list(spec.options))
            produced = evaluate(tree, scope)
        else:
            assert ref.call is not None and ref.source is not None
            namespace = load_namespace(ref.source, spec, "reference")
            from .conventions import lookup

            func = lookup(namespace, ref.call.func, spec, "reference.call")
            args = [
                scope[a.name] if a.name is not None else a.literal for a in ref.call.args if not a.keyword
            ]
            kwargs = {
                a.keyword: scope[a.name] if a.name is not None else a.literal
                for a in ref.call.args
                if a.keyword
            }
            produced = func(*args, **kwargs)
    except SpecError:
        raise
    except Exception as exc:
        from .conventions import user_frame

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
    outputs: dict[str, torch.Tensor] = {}
    for name, value in zip(spec.outputs, produced_list):
        if not isinstance(value, torch.Tensor):
            raise spec.error(
                f"the reference's output {name!r} is a {type(value).__name__}, not a tensor", "reference"
            )
        outputs[name] = value
    return outputs


def run_reference(case: Case, values: Mapping[str, torch.Tensor]) -> Expected:
    """Differentiate the reference with autograd, on its own clones of ``values``."""
    spec = case.spec
    leaves = {name: v.detach().clone().requires_grad_(spec.tensors[name].grad) for name, v in values.items()}
    outputs = reference_outputs(case, leaves)

    # Upstream gradients: the same generator stream continues after the tensors.
    gen = torch.Generator().manual_seed(case.seed + 1_000_003)
    grad_outs: dict[str, torch.Tensor] = {}
    for name, out in outputs.items():
        if out.dim() == 0:
            g = torch.ones((), dtype=torch.float64)
        else:
            g = torch.randn(tuple(out.shape), generator=gen, dtype=torch.float64)
        grad_outs[name] = g.to(out.dtype).to(out.device)

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
    grads: tuple[torch.Tensor | None, ...] = torch.autograd.grad(total, checked, allow_unused=True)
    expected_grads = {
        t.name: (g.detach() if g is not None else torch.zeros_like(leaves[t.name]).detach())
        for t, g in zip(spec.checked, grads)
    }
    return Expected(
        outputs={n: o.detach() for n, o in outputs.items()},
        grads=expected_grads,
        grad_outs=grad_outs,
    )


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
    result = CaseResult(
        spec=spec.name,
        source=spec.source,
        dims=dict(case.dims),
        dtype=case.dtype,
        device=case.device,
        seed=case.seed,
    )
    try:
        values = generate(case)
        # Whatever grad mode the caller (or user code run earlier) left behind.
        with torch.enable_grad():
            expected = run_reference(case, values)
    except SpecError as exc:
        result.error, result.spec_error = str(exc), True
        return result.finish()
    except (RuntimeError, MemoryError) as exc:  # e.g. tensors too large to allocate
        result.error = f"cannot build this case's tensors: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        return result.finish()
    grad_mode = torch.is_grad_enabled()
    try:
        outcome = run_implementation(spec, values, expected.grad_outs, case.dims)
    except SpecError as exc:
        result.error, result.spec_error = str(exc), True
        return result.finish()
    except UserCodeError as exc:
        result.error = str(exc)
        if pdb:
            import pdb as pdb_module

            pdb_module.post_mortem(exc.exc.__traceback__)
        return result.finish()
    except ConventionError as exc:
        result.error = str(exc)
        return result.finish()
    finally:
        torch.set_grad_enabled(grad_mode)  # user code may have switched autograd off

    tol = case.tolerance
    forward_bad = False
    for name, want in expected.outputs.items():
        if name not in outcome.outputs or not spec.implementation.forward_checked:
            continue
        check = _check_one(spec, name, "output", want, outcome.outputs[name], tol, case, None, verbose)
        if not check.ok and check.status != "error":
            check.diagnosis = "forward_mismatch"
            check.hint = (
                f"the hand-written forward's {name} differs from the reference"
                f" ({check.mismatched} of {check.numel} elements); fix it first:"
                " the gradients below are computed from it and are not meaningful"
            )
            forward_bad = True
        result.checks.append(check)

    for t in spec.checked:
        got = outcome.grads.get(t.name, MISSING)
        check = _check_one(spec, t.name, t.kind, expected.grads[t.name], got, tol, case, t, verbose)
        if t.name in outcome.problems and check.status == "missing":
            check.hint = outcome.problems[t.name]
        if check.status in ("mismatch", "shape_error") and got is not MISSING:
            diagnose.explain(
                check,
                expected.grads[t.name],
                as_tensor(got),
                diagnose.Context(
                    spec,
                    case.dims,
                    t,
                    tol,
                    expected.grads,
                    values,
                    grad_outs=expected.grad_outs,
                    reference=functools.partial(reference_outputs, case),
                ),
            )
        if forward_bad and check.status != "pass":
            check.hint = ((check.hint or "") + " (forward differs: not meaningful)").strip()
        result.checks.append(check)

    for name in outcome.modified:
        _flag_modified(result, name)
    result.notes.extend(spec.notes)
    result.notes.extend(diagnose.transpose_blind_spots(spec, case.dims))
    return result.finish()


def _check_one(
    spec: Spec,
    name: str,
    kind: str,
    want: torch.Tensor,
    got: Any,
    tol: Tolerance,
    case: Case,
    tensor: TensorSpec | None,
    verbose: bool,
) -> Check:
    labels = spec.dim_labels(tensor) if tensor is not None else None  # outputs: sizes only
    what = "output" if kind == "output" else "gradient"
    if got is MISSING:
        return Check(
            name,
            kind,
            list(want.shape),
            None,
            "missing",
            numel=want.numel(),
            diagnosis="missing",
            hint=f"no {what} was given for {name}",
            expected_labels=labels,
        )
    try:
        if kind != "output" and isinstance(got, (int, float)):  # a loss may be a Python float
            raise NotATensor(f"a Python {type(got).__name__}")
        actual = as_tensor(got)
    except NotATensor as exc:
        return Check(
            name,
            kind,
            list(want.shape),
            None,
            "error",
            numel=want.numel(),
            hint=f"the {what} for {name} is {exc}, not a tensor",
            expected_labels=labels,
        )
    if actual.is_meta:  # a meta tensor holds no values to compare
        return Check(
            name,
            kind,
            list(want.shape),
            list(actual.shape),
            "error",
            numel=want.numel(),
            hint=f"the {what} for {name} is on device meta, expected {case.device}",
            expected_labels=labels,
        )
    if tensor is None:
        actual_labels = None
    elif tuple(actual.shape) == tuple(want.shape):
        actual_labels = labels
    else:
        actual_labels = diagnose.label_axes(actual.shape, case.dims)
    check = compare(name, kind, want, actual, tol, labels, actual_labels)
    problems = []
    if actual.dtype != want.dtype and actual.is_floating_point():
        problems.append(f"dtype {describe_dtype(actual)}, expected {describe_dtype(want)}")
    elif not actual.is_floating_point() and not actual.is_complex():
        problems.append(f"dtype {describe_dtype(actual)}, expected a float tensor")
    if (
        isinstance(got, torch.Tensor)
        and got.device.type != torch.device(case.device).type
        and spec.implementation.backend == "torch"
    ):
        problems.append(f"on device {got.device}, expected {case.device}")
    if problems and check.status != "shape_error":
        check.status = "error"
        check.hint = f"the {what} for {name} has " + " and ".join(problems)
    if verbose and check.worst_index is not None:
        check.excerpt = excerpt(want, actual, check.worst_index)
    return check


def _flag_modified(result: CaseResult, name: str) -> None:
    hint = f"the checked code modified {name} in place; it must not change what it is handed"
    for check in result.checks:
        if check.name == name and check.kind != "output":
            check.diagnosis = "modified_input"
            check.hint = hint if check.ok else f"{hint} ({check.hint or check.status})"
            if check.ok:
                check.status = "error"
            return
    # Not a checked tensor (an integer target, an upstream gradient): its own row.
    result.checks.append(Check(name, "input", None, None, "error", diagnosis="modified_input", hint=hint))


# -- several cases --------------------------------------------------------------


def sweep_cases(case: Case, seeds: int = 3) -> list[Case]:
    """The case itself, other seeds, and sizes near the spec's own, all distinct.

    Distinct sizes make every axis tell apart from every other, so no
    transposed or mis-reduced gradient can have the right shape by chance.
    Size-1 dims stay 1 (they are usually structural).
    """
    spec = case.spec
    cases = [case]
    for shift in (1, 2):
        dims: dict[str, int] = {}
        used: set[int] = set()
        for name, size in case.dims.items():
            new = size + shift if size > 1 else 1
            while new > 1 and new in used:
                new += 1
            used.add(new)
            dims[name] = new
        try:
            for t in spec.tensors.values():
                spec.shape_of(t, dims)
        except SpecError:
            continue
        cases.append(replace(case, dims=dims, seed=case.seed + shift))
    for s in range(1, seeds):
        cases.append(replace(case, seed=case.seed + 100 * s))
    return _unique(cases)


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
