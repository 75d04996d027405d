"""What a check produces: a :class:`Check` per tensor, a :class:`CaseResult` per
spec case, a :class:`Report` for a run. Plain data, no torch: reporters and the
pytest plugin work from these alone.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

CHECK_STATUSES = ("pass", "mismatch", "shape_error", "missing", "error")
# skip: not run (a spec's skip:); xfail: failed as a spec's xfail: says it does; xpass: an
# xfail spec that passed (strict: it counts as a failure); interrupted: Ctrl-C or SIGTERM came first.
RESULT_STATUSES = ("pass", "fail", "error", "skip", "xfail", "xpass", "interrupted")
OK_STATUSES = ("pass", "skip", "xfail")  # what a run may end with and still exit 0
# The version of the JSON report's layout (not the tool's version): bumped when a field changes meaning.
SCHEMA_VERSION = 2


def format_shape(shape: list[int] | None, labels: list[str | None] | None = None) -> str:
    """``[batch=5, out=4]`` when the axes have dim names, ``[5, 4]`` otherwise."""
    if shape is None:
        return "-"
    labels = labels or [None] * len(shape)
    parts = [f"{name}={size}" if name else str(size) for size, name in zip(shape, labels)]
    return "[" + ", ".join(parts) + "]"


def format_pair(expected: float | None, actual: float | None) -> tuple[str, str]:
    """Two numbers with just enough digits to tell them apart (6 at least)."""
    if expected is None or actual is None:
        return str(expected), str(actual)
    for digits in range(6, 18):
        e, a = f"{expected:.{digits}g}", f"{actual:.{digits}g}"
        if e != a:
            break
    return e, a


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


@dataclass
class Check:
    """The comparison of one tensor: a gradient (input/param) or a forward output."""

    name: str
    kind: str  # "input" | "param" | "output"
    expected_shape: list[int] | None
    actual_shape: list[int] | None
    status: str  # one of CHECK_STATUSES
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    mismatched: int | None = None
    numel: int | None = None
    diagnosis: str | None = None
    hint: str | None = None
    worst_index: list[int] | None = None
    expected_value: float | None = None
    actual_value: float | None = None
    expected_labels: list[str | None] | None = None
    actual_labels: list[str | None] | None = None
    excerpt: str | None = None  # side-by-side values around the worst element (--verbose)
    # Calibrated tolerance (float32/bf16/fp16): errors measured against a float64 truth.
    truth_error: float | None = None  # max |got - truth|
    reference_error: float | None = None  # max |torch's own result in the checked dtype - truth|
    error_ratio: float | None = None  # truth_error / reference_error
    # Numerical mode: elements at a kink (excluded from the verdict), and sampling.
    unstable: int | None = None
    sampled: dict[str, int] | None = None  # {"elements": checked, "numel": all, "directions": n}
    line: int | None = None  # the spec's line for this tensor (GitHub annotations)
    error_map: Any = None  # an errormap.ErrorMap for a failing tensor (not in the JSON)

    @property
    def ok(self) -> bool:
        return self.status == "pass"

    @property
    def compared(self) -> int | None:
        """How many elements ``mismatched`` counts over: all of them, or the sampled ones
        (numerical mode with ``--samples``)."""
        return self.sampled["elements"] if self.sampled else self.numel

    def shapes_text(self) -> tuple[str, str]:
        return (
            format_shape(self.expected_shape, self.expected_labels),
            format_shape(self.actual_shape, self.actual_labels),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for internal in ("expected_labels", "actual_labels", "excerpt", "error_map", "line"):
            data.pop(internal)
        return data


@dataclass
class CaseResult:
    """One spec run on one case (dims, dtype, device, seed)."""

    spec: str
    source: str
    dims: dict[str, int]
    dtype: str
    device: str
    seed: int
    status: str = "pass"  # one of RESULT_STATUSES
    error: str | None = None
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    spec_error: bool = False  # the spec itself is wrong (exit 2), not the checked code
    sweep: list[dict[str, Any]] | None = None  # --sweep: one line per case run
    duration: float | None = None  # seconds the run took (JSON duration_s, JUnit time)
    reason: str | None = None  # why it was skipped or is expected to fail (skip, xfail, xpass)
    reference: str | None = None  # where the expected values came from
    tolerance: dict[str, Any] | None = None  # {mode, atol, rtol, ratio, source}
    quiet_notes: list[str] = field(default_factory=list)  # notes shown only when failing or verbose

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES

    def notes_to_show(self, verbose: bool = False) -> list[str]:
        """The notes a report shows: all of them when failing or verbose, else the ones that matter
        on a pass (not, say, that equal dims could hide a transpose)."""
        if verbose or not self.ok:
            return list(self.notes)
        return [n for n in self.notes if n not in self.quiet_notes]

    @property
    def failing(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def headline(self) -> str:
        dims = " ".join(f"{k}={v}" for k, v in self.dims.items())
        if not dims:
            return f"{self.spec} dtype={self.dtype} device={self.device} seed={self.seed}"
        return f"{self.spec} [{dims}] dtype={self.dtype} device={self.device} seed={self.seed}"

    @classmethod
    def not_run(
        cls,
        spec: str,
        source: str,
        dims: dict[str, int],
        dtype: str,
        device: str,
        seed: int,
        message: str,
        spec_error: bool,
    ) -> CaseResult:
        """An ``error`` result for a spec that did not get as far as a check."""
        return cls(spec, source, dims, dtype, device, seed).failed(message, spec_error)

    def failed(self, message: str, spec_error: bool = False) -> CaseResult:
        """This result as an ``error``: the spec (``spec_error``) or the checked code stopped it."""
        self.error, self.spec_error = message, spec_error
        return self.finish()

    def expected_to_fail(self, reason: str) -> CaseResult:
        """A spec marked ``xfail:``: a failure is ``xfail``, a pass is ``xpass`` (strict); a spec
        error stays an error (the spec is broken, which no reason covers)."""
        if not self.spec_error:
            self.status = "xpass" if self.status == "pass" else "xfail"
            self.reason = reason
        return self

    def finish(self) -> CaseResult:
        """Set ``status`` from the checks (an error already set stays)."""
        if self.error is not None:
            self.status = "error"
        elif any(not c.ok for c in self.checks):
            self.status = "fail"
        else:
            self.status = "pass"
        return self

    def to_dict(self) -> dict[str, Any]:
        data = {
            "spec": self.spec,
            "source": self.source,
            "dims": self.dims,
            "dtype": self.dtype,
            "device": self.device,
            "seed": self.seed,
            "status": self.status,
            "error": self.error,
            "checks": [c.to_dict() for c in self.checks],
            "notes": self.notes,
            "reason": self.reason,
            "reference": self.reference,
            "tolerance": self.tolerance,
            "duration_s": self.duration,
        }
        if self.sweep is not None:
            data["sweep"] = self.sweep
        return data


@dataclass
class Report:
    """A run's results, in order. Shown as the table in a terminal and in Jupyter (the display
    methods, ``render``, ``str``, ``repr``, are set by :mod:`gradcheck_cli.report`)."""

    results: list[CaseResult] = field(default_factory=list)
    version: str = ""
    torch: str = ""
    interrupted: int | None = None  # the signal (SIGINT 2, SIGTERM 15) that stopped the run

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def summary(self) -> dict[str, int]:
        counts = {status: sum(r.status == status for r in self.results) for status in RESULT_STATUSES}
        return {
            "passed": counts["pass"],
            "failed": counts["fail"],
            "errors": counts["error"],
            "skipped": counts["skip"],
            "xfailed": counts["xfail"],
            "xpassed": counts["xpass"],
            "interrupted": counts["interrupted"],
        }

    def __getitem__(self, name: str) -> Check:
        """``report["bias"]``: the check of that tensor (first result that has one)."""
        for result in self.results:
            for check in result.checks:
                if check.name == name:
                    return check
        raise KeyError(name)

    @property
    def exit_code(self) -> int:
        """128 + the signal that interrupted the run (130, 143), else 2 for a spec error, 1 for any
        other failure, 0 when everything passed."""
        if self.interrupted:
            return 128 + self.interrupted
        if any(r.spec_error for r in self.results):
            return 2
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "version": self.version,
            "torch": self.torch,
            "results": [r.to_dict() for r in self.results],
            "summary": self.summary,
        }

    def to_json(self) -> str:
        """Strict JSON: a NaN or infinite number (a NaN gradient's value) becomes null;
        the check's hint still says where the non-finite values are."""
        return json.dumps(_finite(self.to_dict()), indent=2, allow_nan=False)

    if TYPE_CHECKING:
        # The display (text, rich, Jupyter's HTML) is attached by gradcheck_cli.report when it is
        # imported (gradcheck_cli imports it): results are data and do not import their renderer.
        def render(self, verbose: bool = False) -> str: ...
        def __rich__(self) -> Any: ...
        def _repr_html_(self) -> str: ...
