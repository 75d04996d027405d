"""A case: one spec with everything one run of it needs (dims, dtype, device, seed, tolerances).

Built and validated without torch, so the CLI's own process can refuse a
wrong dim or option up front; whether a CUDA device is there is asked where
torch is (:func:`gradcheck_cli.runner.make_case`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import SpecError
from .settings import DTYPE_NAMES, check_device_name
from .spec import Spec

if TYPE_CHECKING:
    from .compare import Tolerance


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
    double: bool = False  # also check the double backward (--double)

    @property
    def tolerance(self) -> Tolerance:
        from .compare import tolerance_for

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
    double: bool = False,
) -> Case:
    """Validate the run settings against the spec (raises SpecError).

    ``options`` override the spec's own options (``--option stride=1``).
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
    return Case(spec, resolved, dtype, device, seed, atol, rtol, double=double)
