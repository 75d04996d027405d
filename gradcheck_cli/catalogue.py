"""Finding specs by name: the built-in catalogue and the configured spec_paths."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import Config
from .errors import GradcheckError, SpecError
from .names import did_you_mean
from .spec import find_spec_files, parse_yaml, read_spec_text


def builtin_dir() -> Path:
    """``layer_specs/``: inside the installed package, or at the top of a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "layer_specs", here.parent / "layer_specs"):
        if candidate.is_dir():
            return candidate
    raise GradcheckError("the built-in layer_specs/ directory is missing from this installation")


@dataclass(frozen=True)
class Entry:
    """A spec known by name, read just enough to list it (no validation, no torch)."""

    name: str
    path: Path
    description: str
    dims: dict[str, int]
    builtin: bool
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)


# Each file is read once while it stays the same: `gradcheck --help` asks for every command
# in turn, and a long-lived process (a notebook, a test session) sees edits.
_READ: dict[tuple[Path, bool], tuple[tuple[int, int], Entry | str]] = {}


def _entry(path: Path, builtin: bool) -> Entry | str:
    """The entry of a spec file, or why it cannot be one."""
    try:
        stat = path.stat()
    except OSError as exc:
        return f"{path}: cannot read: {exc.strerror}"
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _READ.get((path, builtin))
    if cached is None or cached[0] != stamp:
        cached = stamp, _read_entry(path, builtin)
        _READ[(path, builtin)] = cached
    return cached[1]


def _read_entry(path: Path, builtin: bool) -> Entry | str:
    try:
        data, lines = parse_yaml(read_spec_text(path), path)
    except SpecError as exc:
        return str(exc)
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return f"{path}: no 'name:', so it cannot be run by name"
    dims = data.get("dims") if isinstance(data.get("dims"), dict) else {}
    return Entry(data["name"], path, str(data.get("description") or ""), dict(dims or {}), builtin, lines)


def entries(config: Config | None = None) -> dict[str, Entry]:
    """Every runnable spec by name; configured specs shadow built-ins of the same name."""
    return _scanned(config)[0]


def warnings(config: Config | None = None) -> list[str]:
    """What the scan of spec_paths passed over: unreadable specs, names given twice."""
    return _scanned(config)[1]


def _scanned(config: Config | None) -> tuple[dict[str, Entry], list[str]]:
    return _scan(config)


def builtin_entries() -> list[Entry]:
    """The built-in layers (the package's own specs), without reading any configured spec."""
    found = [_entry(path, builtin=True) for path in sorted(builtin_dir().glob("*.yaml"))]
    return [e for e in found if isinstance(e, Entry)]


def _scan(config: Config | None) -> tuple[dict[str, Entry], list[str]]:
    found: dict[str, Entry] = {e.name: e for e in builtin_entries()}
    problems: list[str] = []
    if config is not None and config.spec_paths:
        for path in find_spec_files(config.spec_paths):
            entry = _entry(path, builtin=False)
            if not isinstance(entry, Entry):
                problems.append(entry)
                continue
            before = found.get(entry.name)
            if before is not None:
                what = "the built-in" if before.builtin else str(before.path)
                problems.append(f"{entry.path}: the name {entry.name!r} is also {what}; {entry.path} is used")
            found[entry.name] = entry
    return found, problems


def lookup(name: str, config: Config | None = None) -> Entry:
    known = entries(config)
    if name in known:
        return known[name]
    raise GradcheckError(
        f"unknown layer {name!r}{did_you_mean(name, known)}; 'gradcheck list' shows them all"
    )
