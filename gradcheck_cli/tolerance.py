"""The tolerance a check is judged by: data, decided once per case.

Two modes:

- **absolute** (float64's default): elementwise ``|got - expected| <= atol + rtol * |expected|``,
  the rule of ``torch.testing.assert_close``.
- **calibrated** (the default for float32, bfloat16 and float16): the reference is differentiated
  twice from the same inputs (already rounded to the checked dtype), once in float64 (the *truth*)
  and once in the checked dtype (*PyTorch's own* result). With ``E = max|torch - truth|`` and
  ``T = max|truth|``, a tensor passes when::

      max|got - truth| <= ratio * E + floor,        floor = atol + rtol * T

  the checked code may be ``ratio`` (2) times as far from the truth as PyTorch itself is, plus
  the floor. In this mode ``atol`` and ``rtol`` *are the floor*: what exact or nearly exact cases
  need (a bias summed over a small batch, a ReLU mask: PyTorch's own error is 0 or nearly, and a
  correct kernel that rounds a few more times must still pass). The default floor is
  :data:`FLOOR_UNITS` units of the dtype's rounding at the tensor's scale, ``eps(dtype) * T``
  (plus as many of its smallest subnormals, for an all-zero truth). Where ``E >= T`` (PyTorch's
  own result has no correct digit: the exact gradient is 0 or lost in rounding) the ratio is
  :data:`NOISE_FACTOR` times larger. One allowance per tensor: an element is mismatched when
  ``|got - truth|`` exceeds it, and counts, the worst element and diagnoses work as in absolute
  mode (:class:`Judge`).

:func:`decide_tolerance` merges what the command line, the spec and ``[tool.gradcheck]`` say
(in that order of precedence) with the per-dtype defaults. Torch is not imported here (the CLI
parent process decides and validates tolerances without it); :meth:`Judge.allclose` works on
tensors it is handed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .errors import GradcheckError

if TYPE_CHECKING:
    import torch

MODES = ("absolute", "calibrated")
# Where a tolerance came from, lowest precedence first.
SOURCES = ("default", "config", "spec", "cli")

# Absolute mode: (atol, rtol) per dtype, in the spirit of torch.testing.assert_close. float32 is a
# little looser than assert_close's rtol (1.3e-6): a hand-written backward sums in a different order
# than autograd, and that is not a bug.
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-7, 1e-7),
    "float32": (1e-5, 1e-5),
    "float16": (1e-3, 1e-3),
    "bfloat16": (1e-2, 1.6e-2),
}
# The mode each dtype gets when nothing is said.
DEFAULT_MODES: dict[str, str] = {
    "float64": "absolute",
    "float32": "calibrated",
    "float16": "calibrated",
    "bfloat16": "calibrated",
}
# Calibrated mode: how many times PyTorch's own error the checked code may be off.
DEFAULT_RATIO = 2.0
# Machine epsilon (the gap between 1 and the next number) and the smallest subnormal, per dtype.
EPS: dict[str, float] = {"float64": 2.0**-52, "float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7}
SMALLEST: dict[str, float] = {
    "float64": 2.0**-1074,
    "float32": 2.0**-149,
    "float16": 2.0**-24,
    "bfloat16": 2.0**-133,
}
# The calibrated floor, in units of the dtype's rounding at the tensor's scale (eps * max|truth|).
# benchmarks/study_calibration.py: over the built-in layers, larger sizes, bias sums and kernels that
# add low-precision partial sums, a correct result needs at most 3.5 units beyond 2x PyTorch's own
# error (batch_norm's x in bfloat16, over 200 seeds); the subtlest wrong one there (an LSTM with
# 1 - g for 1 - g**2) would pass only with 16. 8 leaves a factor 2 on both sides.
FLOOR_UNITS = 8.0
# When PyTorch's own error is at least the truth itself (max|torch - truth| >= max|truth|: the
# exact gradient is 0 or lost in rounding, as for an attention's key bias), both results are
# rounding noise, and two noises' maxima over a few elements differ by up to 8.5x (200 seeds of
# multi_head_attention's bk in float16): the ratio is then NOISE_FACTOR times larger. A wrong
# gradient there is off by its own scale, far beyond.
NOISE_FACTOR = 8.0


def default_floor(dtype: str) -> tuple[float, float]:
    """The calibrated floor's (atol, rtol) for ``dtype``: FLOOR_UNITS units of its rounding."""
    return FLOOR_UNITS * SMALLEST[dtype], FLOOR_UNITS * EPS[dtype]


@dataclass(frozen=True)
class Tolerance:
    """How a case's tensors are judged, and where that was decided.

    ``atol``/``rtol`` are the elementwise tolerance in absolute mode and the floor in calibrated
    mode (see the module docstring); ``ratio`` is set in calibrated mode only. ``Tolerance(1e-5,
    1e-5)`` is an absolute tolerance.
    """

    atol: float
    rtol: float
    mode: str = "absolute"
    ratio: float | None = None
    source: str = "default"  # one of SOURCES: the highest level that said anything

    @classmethod
    def default(cls, dtype: str = "float64") -> Tolerance:
        """What a case in ``dtype`` is judged by when nothing is said."""
        return decide_tolerance(dtype)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise GradcheckError(f"unknown tolerance mode {self.mode!r}; choose {' or '.join(MODES)}")
        if self.source not in SOURCES:
            raise ValueError(f"unknown tolerance source {self.source!r}")
        if (self.ratio is not None) != (self.mode == "calibrated"):
            raise ValueError("a ratio is given with, and only with, the calibrated mode")

    @property
    def calibrated(self) -> bool:
        return self.mode == "calibrated"

    def allclose(self, actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        """Elementwise closeness in absolute mode (see :meth:`Judge.allclose`).

        A calibrated tolerance judges a tensor only together with PyTorch's own error: build its
        :class:`Judge` with :func:`gradcheck_cli.compare.judge` and ask that.
        """
        if self.calibrated:
            raise TypeError("a calibrated tolerance needs PyTorch's own error: use compare.judge()")
        return Judge(self.atol, self.rtol).allclose(actual, expected)

    def loosened(self, factor: float) -> Tolerance:
        """The same tolerance with atol and rtol times ``factor``."""
        return replace(self, atol=self.atol * factor, rtol=self.rtol * factor)

    def to_dict(self) -> dict[str, Any]:
        """``{mode, atol, rtol, ratio, source}`` for the JSON report (calibrated: atol/rtol are the floor)."""
        return {
            "mode": self.mode,
            "atol": self.atol,
            "rtol": self.rtol,
            "ratio": self.ratio,
            "source": self.source,
        }


@dataclass(frozen=True)
class Judge:
    """The absolute allowance one tensor is judged by: ``|got - expected| <= atol + rtol * |expected|``.

    In absolute mode it is the tolerance's own atol and rtol. In calibrated mode ``rtol`` is 0 and
    ``atol`` the tensor's allowance, ``ratio * reference_error + floor``, with the parts kept for
    the report. Diagnoses and error maps judge candidate fixes with it as with any tolerance;
    :meth:`loosened` gives them slack.
    """

    atol: float
    rtol: float
    reference_error: float | None = None  # calibrated: max|torch - truth| (finite elements)
    ratio: float | None = None
    floor: float | None = None  # calibrated: atol + rtol * scale of the Tolerance
    scale: float | None = None  # calibrated: max|truth| (finite elements)
    noise: bool = False  # calibrated: PyTorch's own result has no correct digit (see NOISE_FACTOR)

    @property
    def calibrated(self) -> bool:
        return self.reference_error is not None

    def allclose(self, actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        """Elementwise: |actual - expected| <= atol + rtol * |expected|, both finite.

        NaN is never close to anything; an infinity only to the same infinity (a finite value is
        not "within rtol * inf" of an infinite one, and an infinite one is not within an infinite
        atol of a finite one).
        """
        diff = (actual - expected).abs()
        within = diff <= self.atol + self.rtol * expected.abs()
        return (within & diff.isfinite()) | (actual == expected)

    def excess(self, actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        """Elementwise ``|actual - expected| / (atol + rtol * |expected|)``: how many allowances
        each element is off (above 1: not close, the elements :meth:`allclose` rejects); see
        :func:`excess`. The error map and the diagnosis of a failing tensor both read it."""
        import torch

        allowance: torch.Tensor | float = self.atol
        if self.rtol:  # atol + rtol * |expected|, in float64 (bools too)
            allowance = expected.detach().to(torch.float64).abs().mul_(self.rtol).add_(self.atol)
        return excess(actual, expected, allowance)

    def loosened(self, factor: float) -> Judge:
        """The same allowance times ``factor`` (a diagnosis's slack for its own rounding)."""
        return replace(self, atol=self.atol * factor, rtol=self.rtol * factor)

    def near_zero(self) -> float:
        """Expected values at or below this are ~0: a relative error means nothing there."""
        return self.atol


def excess(actual: torch.Tensor, expected: torch.Tensor, allowance: torch.Tensor | float) -> torch.Tensor:
    """Elementwise ``|actual - expected| / allowance``, float64, on ``expected``'s device, a new
    tensor: 0 where the two are equal (the same infinity too), inf where the difference is not
    finite or the allowance is 0. Bools count as 0 and 1."""
    import torch

    actual, expected = actual.detach().to(expected.device), expected.detach()
    if actual.dtype == torch.bool or expected.dtype == torch.bool:  # no subtraction for bools
        actual, expected = actual.to(torch.float64), expected.to(torch.float64)
    if torch.float64 in (actual.dtype, expected.dtype):
        ratio = torch.sub(actual, expected)  # the cast to float64 inside the one pass
    else:
        ratio = actual.to(torch.float64).sub_(expected)
    ratio.abs_()
    ratio.div_(allowance.detach().to(ratio.device) if isinstance(allowance, torch.Tensor) else allowance)
    if ratio.numel():
        low, high = torch.aminmax(ratio)  # one pass: NaN or inf when an element is
        if math.isfinite(float(low)) and math.isfinite(float(high)):
            return ratio
    ratio.masked_fill_(actual == expected, 0.0)
    return ratio.nan_to_num_(nan=math.inf, posinf=math.inf)  # nan_to_num's default posinf is finite


def judge_of(tol: Tolerance | Judge) -> Judge:
    """An absolute tolerance as the :class:`Judge` of its atol and rtol; a Judge as it is."""
    if isinstance(tol, Judge):
        return tol
    if tol.calibrated:
        raise TypeError("a calibrated tolerance needs PyTorch's own error: use compare.judge()")
    return Judge(tol.atol, tol.rtol)


@dataclass(frozen=True)
class ToleranceSettings:
    """What one level (the command line, a spec, ``[tool.gradcheck]``) says; None says nothing.

    ``where`` prefixes error messages (``"lin.yaml:7: "``).
    """

    mode: str | None = None
    atol: float | None = None
    rtol: float | None = None
    ratio: float | None = None
    where: str = ""

    @property
    def empty(self) -> bool:
        return self.mode is None and self.atol is None and self.rtol is None and self.ratio is None


# How each level spells each setting in an error message.
_NAMES: dict[str, dict[str, str]] = {
    "cli": {"mode": "--tolerance", "atol": "--atol", "rtol": "--rtol", "ratio": "--ratio"},
    "spec": {
        "mode": "tolerance.mode",
        "atol": "tolerance.atol",
        "rtol": "tolerance.rtol",
        "ratio": "tolerance.ratio",
    },
    "config": {
        "mode": "[tool.gradcheck] tolerance",
        "atol": "[tool.gradcheck] atol",
        "rtol": "[tool.gradcheck] rtol",
        "ratio": "[tool.gradcheck] ratio",
    },
}


def _fail(settings: ToleranceSettings, source: str, key: str, message: str) -> GradcheckError:
    return GradcheckError(f"{settings.where}{_NAMES[source][key]}: {message}")


def _validated(settings: ToleranceSettings, source: str) -> str | None:
    """Check one level's settings; return the mode they imply (None: they say nothing)."""
    for key in ("atol", "rtol", "ratio"):
        value = getattr(settings, key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(settings, source, key, f"expected a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise _fail(settings, source, key, f"expected a finite number >= 0, got {value!r}")
    if settings.mode is not None:
        if settings.mode not in MODES:
            raise _fail(
                settings,
                source,
                "mode",
                f"unknown tolerance mode {settings.mode!r}; choose {' or '.join(MODES)}",
            )
        if settings.mode == "absolute" and settings.ratio is not None:
            raise _fail(
                settings, source, "ratio", "a ratio applies only to the calibrated mode, not to absolute"
            )
        return settings.mode
    if settings.ratio is not None:
        return "calibrated"  # atol/rtol beside it set the floor
    if settings.atol is not None or settings.rtol is not None:
        return "absolute"
    return None


def decide_tolerance(
    dtype: str,
    *,
    cli: ToleranceSettings | None = None,
    spec: ToleranceSettings | None = None,
    config: ToleranceSettings | None = None,
) -> Tolerance:
    """The tolerance for a case in ``dtype``, from what each level says (raises GradcheckError).

    - Precedence: ``cli`` > ``spec`` > ``config`` > the dtype's default.
    - The highest level that says anything decides the mode: its ``mode`` if given; else
      ``ratio`` implies calibrated, and ``atol``/``rtol`` imply absolute. At one level,
      ``atol``/``rtol`` beside ``mode: calibrated`` or a ``ratio`` set the calibrated floor;
      a ``ratio`` beside ``mode: absolute`` is an error.
    - Each value is then taken from the highest level that gives it *for that mode* (an atol
      meant as an absolute tolerance never becomes a floor, nor the reverse), else the default:
      float64 absolute with atol = rtol = 1e-7 (:data:`DEFAULT_TOLERANCES`), float32, bfloat16 and
      float16 calibrated with ratio 2 and the floor of :func:`default_floor`.
    - ``source`` names the level that decided the mode ("default" when none said anything);
      lower levels may fill the values it left open.
    - Negative or non-finite numbers, non-numbers and unknown modes are one-line errors naming
      the setting, whichever level they come from.
    """
    if dtype not in DEFAULT_MODES:
        raise GradcheckError(f"unknown dtype {dtype!r}; choose one of {', '.join(DEFAULT_MODES)}")
    levels = [(src, s) for src, s in (("cli", cli), ("spec", spec), ("config", config)) if s is not None]
    implied = [(src, s, _validated(s, src)) for src, s in levels]
    said = [(src, s, m) for src, s, m in implied if m is not None]
    mode, source = (said[0][2], said[0][0]) if said else (DEFAULT_MODES[dtype], "default")
    agreeing = [s for _, s, m in said if m == mode]

    def pick(key: str, default: float) -> float:
        for s in agreeing:
            value = getattr(s, key)
            if value is not None:
                return float(value)
        return default

    if mode == "absolute":
        atol, rtol = DEFAULT_TOLERANCES[dtype]
        return Tolerance(pick("atol", atol), pick("rtol", rtol), "absolute", None, source)
    atol, rtol = default_floor(dtype)
    return Tolerance(
        pick("atol", atol), pick("rtol", rtol), "calibrated", pick("ratio", DEFAULT_RATIO), source
    )


def tolerance_for(dtype: str, atol: float | None = None, rtol: float | None = None) -> Tolerance:
    """The absolute tolerance for ``dtype`` with atol/rtol overridden (today's rule, kept for callers
    that compare two results of the same dtype; a case's tolerance comes from :func:`decide_tolerance`).
    """
    default_atol, default_rtol = DEFAULT_TOLERANCES[dtype]
    return Tolerance(
        atol=default_atol if atol is None else atol,
        rtol=default_rtol if rtol is None else rtol,
    )
