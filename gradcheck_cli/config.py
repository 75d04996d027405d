"""``[tool.gradcheck]`` from the nearest pyproject.toml that has the table.

The rule black and ruff use: walk up from the current directory; the first
pyproject.toml with a ``[tool.gradcheck]`` table wins. Explicit flags win
over it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import GradcheckError
from .names import did_you_mean

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
            table = data.get("tool", {}).get("gradcheck")
            if table is not None:
                return candidate, table
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
        raise GradcheckError(f"{where}: spec_paths must be a list of paths")
    for key, kind in (
        ("dtype", str),
        ("device", str),
        ("seed", int),
        ("atol", (int, float)),
        ("rtol", (int, float)),
        ("timeout", (int, float)),
        ("tolerance", str),
        ("ratio", (int, float)),
    ):
        if key in table and not isinstance(table[key], kind):
            raise GradcheckError(f"{where}: {key} has the wrong type ({table[key]!r})")
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
