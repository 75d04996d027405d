"""The settings of a run: what to check in (dtype, device, seed, tolerances) and how.

Merged once from the command line (or the Python API's keywords) over
``[tool.gradcheck]`` over the defaults, and validated here, without torch:
the CLI's process never imports it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .config import Config
from .errors import GradcheckError, SpecError
from .tolerance import ToleranceSettings, decide_tolerance

DTYPE_NAMES = ("float64", "float32", "bfloat16", "float16")
DEFAULT_TIMEOUT = 120.0  # seconds a spec may run before it is stopped (--timeout)
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
    atol: float | None = None  # given on the command line (or to check()); else the spec's, the config's
    rtol: float | None = None
    tolerance: str | None = None  # the mode: absolute or calibrated (--tolerance)
    ratio: float | None = None  # calibrated: the multiple of PyTorch's own error (--ratio)
    config_tolerance: ToleranceSettings = field(default_factory=ToleranceSettings)  # [tool.gradcheck]
    verbose: bool = False
    sweep: bool = False
    pdb: bool = False
    double: bool = False  # also check an autograd.Function's double backward
    numerical: bool = False  # with a reference: check it against finite differences too
    samples: int | None = None  # numerical mode: elements per tensor checked (0: all; None: default)
    timeout: float | None = None  # given on the command line (or to check()): wins over a spec's
    default_timeout: float = DEFAULT_TIMEOUT  # [tool.gradcheck] timeout, or the default

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_NAMES:
            raise SpecError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPE_NAMES)}")
        check_device_name(self.device)
        for name in ("atol", "rtol", "ratio"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise GradcheckError(f"{name} must be a number, got {value!r}")
            if name == "ratio" and not (math.isfinite(value) and value > 0):  # as [tool.gradcheck] says
                raise GradcheckError(
                    f"--ratio must be a positive number (a multiple of PyTorch's own error), got {value:g}"
                )
            if not math.isfinite(value) or value < 0:
                raise GradcheckError(f"--{name} must be a non-negative number, got {value}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise GradcheckError(f"--seed must be an integer from 0 to 2**63 - 1, got {self.seed!r}")
        for name in ("timeout", "default_timeout"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf
            ):
                raise GradcheckError(f"--timeout must be a positive number of seconds, got {value!r}")
        if self.samples is not None and (
            isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 0
        ):
            raise GradcheckError(f"--samples must be a number of elements (0 for all), got {self.samples!r}")
        # Every level's tolerance settings are checked now, before anything runs.
        decide_tolerance(self.dtype, cli=self.cli_tolerance, config=self.config_tolerance)

    @property
    def cli_tolerance(self) -> ToleranceSettings:
        """What the command line (or check()'s keywords) says of the tolerance."""
        return ToleranceSettings(self.tolerance, self.atol, self.rtol, self.ratio)

    def timeout_for(self, spec_timeout: float | None) -> float:
        """Seconds a spec may run: --timeout, else its ``timeout:``, else the config's or the default."""
        return float(self.timeout or spec_timeout or self.default_timeout)

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
            atol=flags.get("atol"),
            rtol=flags.get("rtol"),
            tolerance=flags.get("tolerance"),
            ratio=flags.get("ratio"),
            config_tolerance=ToleranceSettings(config.tolerance, config.atol, config.rtol, config.ratio),
            verbose=bool(flags.get("verbose")),
            sweep=bool(flags.get("sweep")),
            pdb=bool(flags.get("pdb")),
            double=bool(flags.get("double")),
            numerical=bool(flags.get("numerical")),
            samples=flags.get("samples"),
            timeout=flags.get("timeout"),
            default_timeout=config.timeout if config.timeout is not None else DEFAULT_TIMEOUT,
        )
