"""Loading a Jupyter notebook's definitions, as a module: what a checked function needs, nothing more.

From each code cell, in order, the top-level imports, ``def``, ``class`` and
assignments of constants are run (a later definition wins, as when the
notebook is run top to bottom); every other statement (a data download, a
training loop, a plot) and every magic (``%timeit``, ``!pip``, ``%%time``
cells) is skipped. An import that fails is a note, not an error: course
notebooks import things the checked code never uses (and so is a ``def``
or ``class`` that cannot be defined, on a base class that failed to
import). Each cell is compiled as ``NAME.ipynb, cell N`` (N counts the
file's cells from 0, markdown included), so a traceback points at
``NAME.ipynb, cell N, line L``.
"""

from __future__ import annotations

import ast
import json
import linecache
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

_CELL_FILE = re.compile(r"\.ipynb, cell \d+$")
_MAGIC_LINE = re.compile(r"^(\s*)[%!]")
# The module attribute that holds what loading the notebook passed over.
INFO = "__gradcheck_notebook__"


class NotebookError(Exception):
    """The notebook cannot be read, or a chosen cell cannot be loaded."""


def is_cell_file(filename: str) -> bool:
    """A code object's filename that names a notebook cell (``nb.ipynb, cell 7``)."""
    return bool(_CELL_FILE.search(filename))


def cell_file(path: Path, index: int) -> str:
    return f"{path}, cell {index}"


@dataclass
class Loaded:
    """What loading a notebook passed over, to explain a name the checked code misses."""

    path: Path
    unavailable: dict[str, str] = field(default_factory=dict)  # a failed import's or def's name -> why
    star_failures: list[str] = field(default_factory=list)  # `from x import *` that failed
    skipped: dict[str, str] = field(default_factory=dict)  # name a skipped statement assigns -> its cell
    unparsed: list[str] = field(default_factory=list)  # cells that are not Python
    left_out: dict[str, str] = field(default_factory=dict)  # name defined in a cell `cells:` leaves out
    notes: list[str] = field(default_factory=list)

    def why_missing(self, name: str) -> str | None:
        """Why ``name`` is not defined after loading, when loading is the reason."""
        if name in self.unavailable:
            return self.unavailable[name]
        if name in self.skipped:
            return (
                f"{name!r} is assigned in {self.skipped[name]} by a statement gradcheck does not run"
                " (from a notebook it runs imports, def, class and assignments of constants)"
            )
        if name in self.left_out:
            return f"{name!r} is defined in {self.left_out[name]}, which 'cells:' leaves out"
        maybe = [f"it may come from {failure}" for failure in self.star_failures]
        maybe += [
            f"it may be defined in {cell}, which is not Python and was skipped" for cell in self.unparsed
        ]
        return "; ".join(maybe) or None


def code_cells(path: Path, chosen: Sequence[int] | None = None) -> list[tuple[int, str]]:
    """``(index, source)`` of the notebook's code cells (only the chosen ones, when given)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise NotebookError(f"not a notebook: invalid JSON at line {exc.lineno}") from None
    except UnicodeDecodeError:
        raise NotebookError("not a notebook: not UTF-8 text") from None
    cells = data.get("cells") if isinstance(data, dict) else None
    if not isinstance(cells, list):
        raise NotebookError("not a notebook: it has no 'cells' list")
    found: list[tuple[int, str]] = []
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        found.append((index, "".join(source) if isinstance(source, list) else str(source)))
    if chosen is None:
        return found
    by_index = dict(found)
    for index in chosen:
        if index >= len(cells):
            raise NotebookError(
                f"cells: the notebook has {len(cells)} cells (0 to {len(cells) - 1}), not {index}"
            )
        if index not in by_index:
            raise NotebookError(
                f"cells: cell {index} is a {cells[index].get('cell_type', '?')} cell, not code"
            )
    return [(i, by_index[i]) for i in sorted(set(chosen))]


def without_magics(source: str) -> str | None:
    """The cell's Python, with magic lines made ``pass`` (line numbers kept); None for a cell magic."""
    if source.lstrip().startswith("%%"):
        return None
    lines = source.splitlines()
    return "\n".join(
        _MAGIC_LINE.sub(r"\1pass  # ", line) if _MAGIC_LINE.match(line) else line for line in lines
    )


def _targets(node: ast.stmt) -> Iterator[str]:
    """The names a statement binds (at any depth: a loop's, a with block's, a def inside an if)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            yield sub.id
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and sub is not node:
            yield sub.name


def _defined(source: str) -> Iterator[str]:
    """The names a cell's top-level statements bind (nothing, when it does not parse)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name
        else:
            yield from _targets(node)


_CONSTANT_NODES = (
    ast.Constant, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.UnaryOp, ast.BinOp, ast.Load,
    ast.USub, ast.UAdd, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.Name,
)  # fmt: skip


def _is_constant(node: ast.stmt, constants: set[str]) -> bool:
    """``lr = 0.5``, ``nh = 50``, ``sizes = (nh, 10)``: an assignment of literals (and earlier constants)."""
    if isinstance(node, ast.Assign):
        targets, value = node.targets, node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets, value = [node.target], node.value
    else:
        return False
    for target in targets:
        names = target.elts if isinstance(target, ast.Tuple) else [target]
        if not all(isinstance(n, ast.Name) for n in names):
            return False
    for sub in ast.walk(value):
        if not isinstance(sub, _CONSTANT_NODES):
            return False
        if isinstance(sub, ast.Name) and sub.id not in constants:
            return False
    return True


def load(path: Path, module: ModuleType, chosen: Sequence[int] | None = None) -> Loaded:
    """Run the notebook's definitions in ``module``; what was passed over is returned (and kept on it)."""
    loaded = Loaded(path)
    setattr(module, INFO, loaded)
    if chosen is not None:
        for index, raw in code_cells(path):
            if index not in chosen:
                for name in _defined(without_magics(raw) or ""):
                    loaded.left_out.setdefault(name, f"{path.name}, cell {index}")
    constants: set[str] = set()
    for index, raw in code_cells(path, chosen):
        filename = cell_file(path, index)
        source = without_magics(raw)
        if source is None:
            continue
        linecache.cache[filename] = (len(raw), None, raw.splitlines(keepends=True), filename)
        try:
            tree = ast.parse(source, filename)
        except SyntaxError as exc:
            if chosen is not None:
                raise
            loaded.unparsed.append(f"cell {index}")
            loaded.notes.append(
                f"{path.name}, cell {index} is not Python ({exc.msg}, line {exc.lineno}): skipped"
            )
            continue
        for node in tree.body:
            _run(node, filename, module, loaded, constants, index)
    return loaded


def _run(
    node: ast.stmt, filename: str, module: ModuleType, loaded: Loaded, constants: set[str], index: int
) -> None:
    code = compile(ast.Module(body=[node], type_ignores=[]), filename, "exec", dont_inherit=True)
    namespace: dict[str, Any] = module.__dict__
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        try:
            exec(code, namespace)
        except Exception as exc:  # noqa: BLE001 - a course helper that is not installed is a note
            _failed_import(node, exc, loaded, index)
            return
        for alias in node.names:
            bound = (alias.asname or alias.name).split(".")[0]
            loaded.unavailable.pop(bound, None)
            loaded.skipped.pop(bound, None)
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        try:
            exec(code, namespace)
        except Exception as exc:  # noqa: BLE001 - a class on a course library that failed to import
            where = f"{loaded.path.name}, cell {index}"
            error = f"{type(exc).__name__}: {exc}"
            loaded.notes.append(
                f"{where}: {node.name} could not be defined ({error}); the checked code does not use it"
            )
            loaded.unavailable[node.name] = f"its definition ({where}) failed: {error}"
            return
        for table in (loaded.unavailable, loaded.skipped):
            table.pop(node.name, None)
    elif _is_constant(node, constants):
        try:
            exec(code, namespace)
        except Exception:  # noqa: BLE001 - `n = 1 / 0` is no constant: skipped like any other statement
            return
        for name in _targets(node):
            constants.add(name)
            loaded.skipped.pop(name, None)
    else:
        for name in _targets(node):
            loaded.skipped[name] = f"{loaded.path.name}, cell {index}"


def _failed_import(node: ast.Import | ast.ImportFrom, exc: Exception, loaded: Loaded, index: int) -> None:
    text = ast.unparse(node)
    where = f"{loaded.path.name}, cell {index}"
    error = f"{type(exc).__name__}: {exc}"
    loaded.notes.append(f"{where}: {text!r} failed ({error}); the checked code does not use it")
    for alias in node.names:
        if alias.name == "*":
            loaded.star_failures.append(f"{text!r} ({where}), which failed: {error}")
        else:
            bound = (alias.asname or alias.name).split(".")[0]
            loaded.unavailable[bound] = f"{text!r} ({where}) failed: {error}"


def loaded_info(namespace: Any) -> Loaded | None:
    """What loading passed over, for a namespace loaded from a notebook (else None)."""
    info = namespace.get(INFO) if hasattr(namespace, "get") else None
    return info if isinstance(info, Loaded) else None
