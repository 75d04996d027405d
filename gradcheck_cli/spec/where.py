"""Where a spec is being built: its file and the line of each key, for errors."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..calls import Call, CallSyntaxError, parse_call
from ..errors import SpecError
from ..expressions import BUILTINS
from ..names import did_you_mean
from ..reach import GLOBALS
from .model import CodeSource


@dataclass(frozen=True)
class Where:
    """The spec being built: its file and the line of each key, for errors."""

    path: Path | None = None
    lines: Mapping[str, int] | None = None

    def fail(self, key: str, message: str) -> SpecError:
        line, probe = None, key
        while probe and self.lines:
            if probe in self.lines:
                line = self.lines[probe]
                break
            probe = probe.rpartition(".")[0]
        return SpecError(message, self.path, line, key or None)

    def mapping(self, value: Any, key: str, allowed: Iterable[str] | None = None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
        allowed = tuple(allowed) if allowed is not None else None
        for k in value:
            if not isinstance(k, str):
                raise self.fail(key, f"keys must be strings, got {k!r}")
            if allowed is not None and k not in allowed:
                sub = f"{key}.{k}" if key else k
                raise self.fail(sub, f"unknown key{did_you_mean(k, allowed)}; allowed: {', '.join(allowed)}")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def call(self, value: Any, key: str, names: Iterable[str]) -> Call:
        try:
            return parse_call(self.string(value, key), names)
        except CallSyntaxError as exc:
            raise self.fail(key, str(exc)) from None

    def source(self, raw: Mapping[str, Any], key: str) -> CodeSource:
        module, file = raw.get("module"), raw.get("file")
        if (module is None) == (file is None):
            raise self.fail(key, "give exactly one of 'module:' (a dotted module) or 'file:' (a .py path)")
        if module is not None:
            module = self.string(module, f"{key}.module")
            if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", module):
                raise self.fail(f"{key}.module", f"{module!r} is not a dotted module name")
            return CodeSource(module=module)
        file_path = Path(self.string(file, f"{key}.file"))
        if not file_path.is_absolute() and self.path is not None:
            file_path = self.path.parent / file_path
        if not file_path.is_file():
            raise self.fail(f"{key}.file", f"file {str(file_path)!r} does not exist")
        return CodeSource(file=file_path)


def check_names(call: Call, known: set[str], key: str, at: Where) -> None:
    """Every name a call's arguments read is one it can be handed."""
    for name in call.arg_names:
        if name not in known and name not in GLOBALS and name not in BUILTINS:
            raise at.fail(
                key, f"{call.func}() is handed {name!r}, which is not a known name{did_you_mean(name, known)}"
            )
