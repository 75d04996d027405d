"""The settings of a run: what to check in (dtype, device, seed, tolerances) and how.

Merged once from the command line (or the Python API's keywords) over
``[tool.gradcheck]`` over the defaults, and validated here, without torch:
the CLI's process never imports it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .config import Config
from .errors import GradcheckError, SpecError

DTYPE_NAMES = ("float64", "float32", "bfloat16", "float16")
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit integer


def check_device_name(device: str) -> None:
    """``cpu``, ``cuda`` or ``cuda:N``: anything else is a usage error."""
    if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise SpecError(f"unknown device {device!r}; use cpu, cuda or cuda:N")


@dataclass(frozen=True)
class RunSettings:
    """How every case of a run is checked."""

    dtype: str = "float64"
    device: str = "cpu"
    seed: int = 0
    atol: float | None = None
    rtol: float | None = None
    verbose: bool = False
    sweep: bool = False
    pdb: bool = False
    double: bool = False  # also check an autograd.Function's double backward

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_NAMES:
            raise SpecError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPE_NAMES)}")
        check_device_name(self.device)
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise GradcheckError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise GradcheckError(f"--{name} must be a non-negative number, got {value}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise GradcheckError(f"--seed must be an integer from 0 to 2**63 - 1, got {self.seed!r}")

    @classmethod
    def merged(cls, config: Config, **flags: Any) -> RunSettings:
        """Flags (None: not given) over ``[tool.gradcheck]`` over the defaults."""

        def pick(name: str, default: Any) -> Any:
            if flags.get(name) is not None:
                return flags[name]
            value = getattr(config, name, None)
            return default if value is None else value

        return cls(
            dtype=pick("dtype", "float64"),
            device=pick("device", "cpu"),
            seed=pick("seed", 0),
            atol=pick("atol", None),
            rtol=pick("rtol", None),
            verbose=bool(flags.get("verbose")),
            sweep=bool(flags.get("sweep")),
            pdb=bool(flags.get("pdb")),
            double=bool(flags.get("double")),
        )
