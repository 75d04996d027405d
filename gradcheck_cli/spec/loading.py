"""Reading spec files: YAML once and safely, the line of every key, finding specs in folders."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import SpecError
from .implementation import implementation
from .model import Spec
from .sections import (
    TOP_KEYS,
    constraints,
    dims,
    formulas,
    header,
    numeric_names,
    options,
    outputs,
    reference,
    tensors,
    tolerance,
)
from .where import Where


def _line_map(
    node: yaml.Node, path: Path | None, prefix: str = "", lines: dict[str, int] | None = None
) -> dict[str, int]:
    """Map each key path ("implementation.backward", "inputs.x") to its 1-based line.

    A key given twice in one mapping is an error (YAML would keep the last silently).
    """
    lines = {} if lines is None else lines
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            where = f"{prefix}.{key}" if prefix else key
            line = key_node.start_mark.line + 1
            if key in seen:
                raise SpecError(
                    f"{key!r} is given twice (the first at line {lines[where]})", path, line, where
                )
            seen.add(key)
            lines[where] = line
            _line_map(value_node, path, where, lines)
    return lines


def parse_yaml(text: str, path: Path | None = None) -> tuple[Any, dict[str, int]]:
    """Read YAML once, safely; return the data and the line of every key."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"invalid YAML: {problem}", path, mark.line + 1 if mark else None) from None
    finally:
        loader.dispose()
    return data, (_line_map(node, path) if node is not None else {})


def load_spec(path: str | Path) -> Spec:
    """Load and validate one spec file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read spec: {exc.strerror}", path) from None
    data, lines = parse_yaml(text, path)
    return build_spec(data, path=path, lines=lines)


_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:", re.M)


def looks_like_spec(path: Path) -> bool:
    """Cheap test used when scanning directories: a YAML file whose top-level keys
    include ``reference`` or ``implementation`` (or a near-miss spelling of one, so
    that a typo becomes a reported spec error instead of a silently skipped file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    keys = set(_TOP_KEY.findall(text))
    return any(
        difflib.get_close_matches(key, ("reference", "implementation"), n=1, cutoff=0.8) for key in keys
    )


def build_spec(data: Any, path: Path | None = None, lines: Mapping[str, int] | None = None) -> Spec:
    """Validate raw spec data (as read from YAML) into a :class:`Spec`."""
    at = Where(path, dict(lines or {}))
    top = at.mapping(data, "", TOP_KEYS)
    for required in ("name", "reference", "implementation"):
        if required not in top:
            raise at.fail("", f"missing required key {required!r}")
    name, description = header(top, at)
    known_dims = dims(top.get("dims"), at)
    opts = options(top.get("options"), known_dims, at)
    inputs, params = tensors(top, known_dims, opts, at)
    all_tensors = {**inputs, **params}
    outs = outputs(top.get("outputs"), all_tensors, at)
    names = set(all_tensors) | set(known_dims) | set(opts)
    return Spec(
        name=name,
        description=description,
        dims=known_dims,
        options=opts,
        inputs=inputs,
        params=params,
        outputs=outs,
        reference=reference(top["reference"], names, at),
        implementation=implementation(
            top["implementation"], all_tensors, names, outs, at, numeric_names(known_dims, opts)
        ),
        tolerance=tolerance(top.get("tolerance"), at),
        formulas=formulas(top.get("formulas"), all_tensors, outs, at),
        constraints=constraints(top.get("constraints"), known_dims, opts, at),
        path=path,
        lines=dict(lines or {}),
    )


# Directories a recursive search never enters (pytest's norecursedirs, plus venvs).
SKIP_DIRS = ("build", "dist", "node_modules", "venv", "site-packages", "__pycache__")


def _skipped(folder: Path) -> bool:
    name = folder.name
    return (
        name.startswith(".")
        or name in SKIP_DIRS
        or name.endswith((".egg", ".egg-info"))
        or (folder / "pyvenv.cfg").exists()
    )


def _walk(folder: Path) -> Iterable[Path]:
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            if not _skipped(entry):
                yield from _walk(entry)
        elif entry.suffix in (".yaml", ".yml") and looks_like_spec(entry):
            yield entry


def find_spec_files(paths: Iterable[str | Path]) -> list[Path]:
    """Spec files among ``paths``: files as given, directories searched recursively
    (skipping hidden folders, virtual environments and build output); each file once."""
    found: list[Path] = []
    seen: set[Path] = set()
    for p in paths:
        p = Path(p)
        if p.is_dir():
            candidates = list(_walk(p))
        elif p.exists():
            candidates = [p]
        else:
            raise SpecError("no such file or directory", p)
        for f in candidates:
            if f.resolve() not in seen:
                seen.add(f.resolve())
                found.append(f)
    return found
