"""A case: one spec with everything one run of it needs (dims, dtype, device, seed, tolerances).

Built and validated without torch, so the CLI's own process can refuse a
wrong dim or option up front; whether a CUDA device is there is asked where
torch is (:func:`gradcheck_cli.runner.make_case`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import GradcheckError, SpecError
from .settings import DTYPE_NAMES, RunSettings, check_device_name
from .spec import Spec
from .tolerance import DEFAULT_TOLERANCES, Tolerance, ToleranceSettings, decide_tolerance


@dataclass(frozen=True)
class Case:
    """A spec with everything needed to run it once."""

    spec: Spec
    dims: dict[str, int] = field(default_factory=dict)
    dtype: str = "float64"
    device: str = "cpu"
    seed: int = 0
    tolerance: Tolerance = field(default_factory=Tolerance.default)  # decided once, by make_case
    double: bool = False  # also check the double backward (--double)
    numerical: bool = False  # with a reference: finite differences of it too (--numerical)
    samples: int | None = None  # numerical: --samples (None: the spec's or the default; 0: all)


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
    *,
    mode: str | None = None,
    ratio: float | None = None,
    config: ToleranceSettings | None = None,
    numerical: bool = False,
    samples: int | None = None,
) -> Case:
    """Validate the run settings against the spec (raises SpecError).

    ``options`` override the spec's own options (``--option stride=1``). The
    tolerance is decided here, once: ``atol``, ``rtol``, ``mode`` and ``ratio``
    (the command line's) over the spec's ``tolerance:`` over ``config``.
    """
    if dtype not in DTYPE_NAMES:
        raise SpecError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_NAMES)}")
    check_device_name(device)
    if options:
        spec = spec.with_options(options)
    if spec.implementation.backend == "numpy" and dtype in ("bfloat16",):
        raise SpecError(
            f"{spec.name}: numpy has no {dtype}: a numpy backend checks float64, float32 or float16",
            spec.path,
        )
    resolved = spec.resolve_dims(dims)
    spec.check_constraints(resolved)
    own = spec.tolerance
    where = f"{spec.path}:{spec.line_of('tolerance')}: " if spec.path and spec.line_of("tolerance") else ""
    try:
        tolerance = decide_tolerance(
            dtype,
            cli=ToleranceSettings(mode, atol, rtol, ratio),
            spec=ToleranceSettings(own.mode, own.atol, own.rtol, own.ratio, where),
            config=config,
        )
    except GradcheckError as exc:
        raise SpecError(str(exc)) from None
    if spec.reference.numerical and tolerance.calibrated:
        if tolerance.source != "default":
            raise SpecError(
                f"{spec.name} has no reference: a calibrated tolerance needs PyTorch's own result to"
                " measure by; finite differences are judged by atol/rtol (--tolerance absolute)",
                spec.path,
            )
        atol, rtol = DEFAULT_TOLERANCES[dtype]  # the dtype's absolute tolerance: still the default
        tolerance = Tolerance(atol, rtol, "absolute", None, "default")
    return Case(spec, resolved, dtype, device, seed, tolerance, double, numerical, samples)


def case_for(
    spec: Spec,
    settings: RunSettings,
    dims: Mapping[str, int] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Case:
    """The case a run's settings make of ``spec`` (raises SpecError)."""
    return make_case(
        spec,
        dims,
        dtype=settings.dtype,
        device=settings.device,
        seed=settings.seed,
        atol=settings.atol,
        rtol=settings.rtol,
        options=options,
        double=settings.double,
        mode=settings.tolerance,
        ratio=settings.ratio,
        config=settings.config_tolerance,
        numerical=settings.numerical,
        samples=settings.samples,
    )
