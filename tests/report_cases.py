"""Results built by hand, one of each status, for the report formats' tests.

The dense layer of ci_suites (``out = x @ w + b``, x [batch=6, in=3], w [in=3, out=2],
b [out=2]) as a renderer receives it: a pass, the bias never summed over the
batch, an exception in the backward, and the statuses a spec's ``skip:`` and
``xfail:`` and an interrupted run give.
"""

from __future__ import annotations

from pathlib import Path

from gradcheck_cli.result import CaseResult, Check, Report

from .ci_suites import write_spec

DIMS = {"batch": 6, "in": 3, "out": 2}
LABELS = {"x": ["batch", "in"], "w": ["in", "out"], "b": ["out"]}
SHAPES = {"x": [6, 3], "w": [3, 2], "b": [2]}
LINES = {"x": 5, "w": 7, "b": 8}  # where ci_suites.SPEC says each tensor
MISSING_REDUCTION = (
    "b gradient has shape [batch=6, out=2] instead of [out=2]: sum over dim 0 (batch=6),"
    " the dim b was broadcast over in the forward (grad.sum(0))"
)


def passing(name: str) -> Check:
    kind = "input" if name == "x" else "param"
    shape = SHAPES[name]
    numel = 1
    for size in shape:
        numel *= size
    return Check(
        name=name,
        kind=kind,
        expected_shape=shape,
        actual_shape=shape,
        status="pass",
        max_abs_err=0.0,
        max_rel_err=0.0,
        mismatched=0,
        numel=numel,
        expected_labels=list(LABELS[name]),
        actual_labels=list(LABELS[name]),
        line=LINES[name],
    )


def bias_not_summed() -> Check:
    return Check(
        name="b",
        kind="param",
        expected_shape=[2],
        actual_shape=[6, 2],
        status="shape_error",
        numel=2,
        diagnosis="missing_reduction",
        hint=MISSING_REDUCTION,
        expected_labels=["out"],
        actual_labels=["batch", "out"],
        line=LINES["b"],
    )


def result(spec: str, status: str, checks: list[Check], **fields: object) -> CaseResult:
    made = CaseResult(
        spec=spec,
        source=f"specs/{spec}.yaml",
        dims=dict(DIMS),
        dtype="float64",
        device="cpu",
        seed=0,
        status=status,
        checks=checks,
        duration=0.25,
    )
    for key, value in fields.items():
        setattr(made, key, value)
    return made


def right() -> list[Check]:
    return [passing("x"), passing("w"), passing("b")]


def wrong() -> list[Check]:
    return [passing("x"), passing("w"), bias_not_summed()]


def every_status() -> Report:
    """One result of each status, in RESULT_STATUSES order."""
    raised = "ZeroDivisionError: division by zero in my backward"
    return Report(
        results=[
            result("dense", "pass", right()),
            result("bias_not_summed", "fail", wrong()),
            result("raises", "error", [], error=raised),
            result("not_on_cpu", "skip", [], reason="needs cuda"),
            result("known_bad", "xfail", wrong(), reason="bias not summed yet (#12)"),
            result("fixed_now", "xpass", right(), reason="bias not summed yet (#12)"),
            result("cut_short", "interrupted", []),
        ],
        version="0.1.0",
        torch="2.13.0+cpu",
    )


def write_marked(folder: Path, name: str, mark: str, like: str | None = None) -> Path:
    """``write_spec`` with one more top-level line, e.g. ``xfail: "bias not summed yet (#12)"``."""
    path = write_spec(folder, name, like=like)
    path.write_text(path.read_text() + mark + "\n")
    return path


def write_expectations(folder: Path) -> Path:
    """A suite of a pass, an xfail, an xpass and a skip, as a spec's ``xfail:``/``skip:`` make them."""
    write_spec(folder, "dense")
    write_marked(folder, "known_bad", 'xfail: "bias not summed yet (#12)"', like="bias_not_summed")
    write_marked(folder, "fixed_now", 'xfail: "bias not summed yet (#12)"', like="dense")
    write_marked(folder, "not_on_cpu", "skip: {reason: needs cuda, device: [cpu]}", like="weight_doubled")
    return folder
