"""``[tool.gradcheck]`` from the nearest pyproject.toml that has the table.

The rule black and ruff use: walk up from the current directory; the first
pyproject.toml with a ``[tool.gradcheck]`` table wins. Explicit flags win
over it.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import GradcheckError
from .names import did_you_mean
from .spec.model import shown

KEYS = ("spec_paths", "dtype", "device", "seed", "tolerance", "atol", "rtol", "ratio", "timeout")


@dataclass(frozen=True)
class Config:
    spec_paths: tuple[Path, ...] = ()
    dtype: str | None = None
    device: str | None = None
    seed: int | None = None
    atol: float | None = None
    rtol: float | None = None
    tolerance: str | None = None  # the mode: absolute or calibrated
    ratio: float | None = None
    timeout: float | None = None
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def find_pyproject(start: Path | None = None) -> tuple[Path, dict[str, Any]] | None:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise GradcheckError(f"{candidate}: cannot read: {exc}") from None
            except ValueError:  # an integer of more than 4300 digits
                raise GradcheckError(f"{candidate}: cannot read: an integer has too many digits") from None
            table = data.get("tool", {}).get("gradcheck")
            if table is not None:
                return candidate, table
    return None


def _problem(key: str, value: Any) -> str | None:
    """What is wrong with one ``[tool.gradcheck]`` value (None: nothing), said as the config's key."""
    from .settings import DTYPE_NAMES, MAX_SEED
    from .tolerance import MODES

    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if key == "dtype" and value not in DTYPE_NAMES:
        return f"must be one of {', '.join(DTYPE_NAMES)}"
    if key == "device" and not (isinstance(value, str) and re.fullmatch(r"cpu|cuda(:\d+)?", value)):
        return "must be cpu, cuda or cuda:N"
    if key == "seed" and not (
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEED
    ):
        return "must be an integer from 0 to 2**63 - 1"
    if key == "tolerance" and value not in MODES:
        return f"must be {' or '.join(MODES)}"
    if key in ("atol", "rtol") and not (number and math.isfinite(value) and value >= 0):
        return "must be a non-negative number"
    if key == "ratio" and not (number and math.isfinite(value) and value > 0):
        return "must be a positive number (a multiple of PyTorch's own error)"
    if key == "timeout" and not (number and math.isfinite(value) and value > 0):
        return "must be a positive number of seconds"
    return None


def load_config(start: Path | None = None) -> Config:
    found = find_pyproject(start)
    if found is None:
        return Config()
    path, table = found
    where = f"{path}: [tool.gradcheck]"
    if not isinstance(table, dict):
        raise GradcheckError(f"{where} must be a table")
    for key in table:
        if key not in KEYS:
            raise GradcheckError(f"{where}: unknown key {key!r}{did_you_mean(key, KEYS)}")
    paths = table.get("spec_paths", [])
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise GradcheckError(
            f"{path}: [tool.gradcheck] spec_paths must be a list of paths, got {shown(paths)}"
        )
    for key, value in table.items():
        problem = _problem(key, value)
        if problem is not None:
            raise GradcheckError(f"{path}: [tool.gradcheck] {key} {problem}, got {shown(value)}")
    return Config(
        spec_paths=tuple(path.parent / p for p in paths),
        dtype=table.get("dtype"),
        device=table.get("device"),
        seed=table.get("seed"),
        atol=table.get("atol"),
        rtol=table.get("rtol"),
        timeout=table.get("timeout"),
        tolerance=table.get("tolerance"),
        ratio=table.get("ratio"),
        path=path,
        raw=dict(table),
    )
