"""The user's code: importing their files and modules, and finding their frame in a traceback.

A ``file:`` is executed as a module of its own (again whenever its text
changes); a notebook (``file: NAME.ipynb``) gives its definitions
(:mod:`.notebooks`); a ``module:`` is imported the way ``python -m`` would
see it. While they are imported, the file's folder, the spec's folder and
the current directory are importable (``from CNN.forward import *`` from the
project's root). Whatever the code raises is a :class:`UserCodeError` that
says where, in the user's own file (``NAME.ipynb, cell 7, line 3`` in a notebook).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from . import notebooks
from .errors import SpecError, Stopped, printable
from .frames import where
from .names import did_you_mean
from .spec import CodeSource, Spec


class UserCodeError(Exception):
    """The checked code raised; carries the original exception and where it was."""

    def __init__(self, stage: str, exc: BaseException) -> None:
        self.stage = stage
        self.exc = exc
        self.where = user_frame(exc)
        where = f" at {self.where}" if self.where else ""
        did = (
            f"called {exc}"
            if isinstance(exc, ProcessExit)
            else f"raised {type(exc).__name__}: {_text_of(exc)}"
        )
        super().__init__(printable(f"{stage} {did}{where}"))


def _text_of(exc: BaseException) -> str:
    """``str(exc)``, even when the checked code's ``__str__`` raises."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the real error
        return f"<{type(exc).__name__} whose message cannot be shown>"


class ProcessExit(Exception):  # noqa: N818 - what the checked code did, not an error of ours
    """The checked code called ``os._exit``: in gradcheck's own process (``check()``, ``--pdb``)
    that would end the caller (a notebook's kernel, pytest) with that code, 0 reading as green."""

    def __init__(self, code: object) -> None:
        self.code = code
        super().__init__(f"os._exit({code!r})")


@contextmanager
def user_code(stage: str) -> Iterator[None]:
    """Run the checked code: whatever it raises (even SystemExit, or an exception that is not an
    Exception) becomes a UserCodeError; Ctrl-C and a stopping signal pass through. ``os._exit``
    raises :class:`ProcessExit` meanwhile (in this process only: a child it forked exits)."""
    real_exit, owner = os._exit, os.getpid()

    def refused_exit(status: int) -> NoReturn:
        if os.getpid() != owner:
            real_exit(status)
        raise ProcessExit(status)

    os._exit = refused_exit
    try:
        yield
    except (KeyboardInterrupt, GeneratorExit, Stopped):
        raise
    except BaseException as exc:  # noqa: BLE001 - whatever the checked code raised is its outcome
        raise UserCodeError(stage, exc) from exc
    finally:
        os._exit = real_exit


@contextmanager
def guarded_streams() -> Iterator[None]:
    """sys.stdout/stderr as they were, whatever the checked code replaced or closed."""
    saved = sys.stdout, sys.stderr
    try:
        yield
    finally:
        for name, stream, fd in (("stdout", saved[0], 1), ("stderr", saved[1], 2)):
            if stream is not None and getattr(stream, "closed", False):
                stream = open(fd, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
            setattr(sys, name, stream)


def user_frame(exc: BaseException) -> str | None:
    """``file:line`` (``NAME.ipynb, cell 7, line 3`` in a notebook) of the deepest frame of the
    user's code that ``exc`` went through."""
    place = where(exc)
    if place is None:
        return None
    filename, _, line = place.rpartition(":")
    return _place(filename, int(line)) if line.isdigit() else place


def _place(filename: str, line: int | None) -> str:
    """``file.py:12``, or ``NAME.ipynb, cell 7, line 3`` in a notebook."""
    return f"{filename}, line {line}" if notebooks.is_cell_file(filename) else f"{filename}:{line}"


def load_namespace(source: CodeSource, spec: Spec, key: str) -> Mapping[str, Any]:
    """Import the user's module, file or notebook; an import failure is a spec error."""
    if source.namespace is not None:
        return source.namespace
    try:
        if source.module is not None:
            module: ModuleType = _import_module(source.module, spec)
        elif source.is_notebook:
            assert source.file is not None
            module = _import_notebook(source.file, source.cells, spec)
        else:
            assert source.file is not None
            module = _import_file(source.file, spec)
    except SpecError:
        raise
    except notebooks.NotebookError as exc:
        raise spec.error(f"cannot load {source.describe()}: {exc}", f"{key}.file") from None
    except BaseException as exc:  # noqa: BLE001 - any import failure is reported, not raised
        if isinstance(exc, KeyboardInterrupt):
            raise
        where = user_frame(exc)
        at = f" (at {where})" if where else ""
        message = exc.msg if isinstance(exc, SyntaxError) and exc.msg else str(exc)
        raise spec.error(
            f"cannot import {source.describe()}: {type(exc).__name__}: {message}{at}",
            f"{key}.{'module' if source.module else 'file'}",
        ) from None
    return vars(module)


@contextmanager
def importable(spec: Spec, folder: Path | None = None) -> Iterator[None]:
    """The code's own folder, the current directory and the spec's folder on ``sys.path``, in
    that order, while it is imported (as ``python`` run from the project's root would allow)."""
    extra = [str(folder)] if folder is not None else []
    extra.append(str(Path.cwd()))
    if spec.path is not None:
        extra.append(str(spec.path.resolve().parent))
    added = list(dict.fromkeys(extra))  # first, even when already on the path further down
    sys.path[:0] = added
    try:
        yield
    finally:
        for p in added:
            if p in sys.path:
                sys.path.remove(p)  # the first occurrence: the one put there


def _import_module(name: str, spec: Spec) -> ModuleType:
    """Import a dotted module the way ``python -m`` would see it from here: the
    current directory and the spec's folder are importable during the import."""
    with importable(spec):
        return importlib.import_module(name)


_FILE_MODULES: dict[Path, tuple[str, ModuleType]] = {}
_NOTEBOOKS: dict[tuple[Path, tuple[int, ...] | None], tuple[str, ModuleType]] = {}


def _import_notebook(path: Path, cells: tuple[int, ...] | None, spec: Spec) -> ModuleType:
    """A notebook's definitions as a module, loaded again whenever the notebook changes."""
    path = path.resolve()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    cached = _NOTEBOOKS.get((path, cells))
    if cached is not None and cached[0] == digest:
        return cached[1]
    module = _fresh_module("gradcheck_notebook", path, digest, spec, lambda m: notebooks.load(path, m, cells))
    _NOTEBOOKS[(path, cells)] = (digest, module)
    return module


def _fresh_module(
    prefix: str, path: Path, digest: str, spec: Spec, fill: Callable[[ModuleType], object]
) -> ModuleType:
    """A new module named for the file and its content, filled by ``fill`` with the file's
    neighbours importable, and registered in ``sys.modules`` (dataclasses and pickling look a
    class's module up there) unless filling it raised."""
    stem = re.sub(r"\W", "_", path.stem)
    name = f"{prefix}_{stem}_{digest[:12]}"
    module = ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    try:
        with importable(spec, path.parent):  # its neighbours, the project's root, the spec's folder
            fill(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def source_notes(source: CodeSource) -> list[str]:
    """What loading this source passed over (a notebook's failed imports), to say in the result."""
    if not source.is_notebook or source.file is None:
        return []
    cached = _NOTEBOOKS.get((source.file.resolve(), source.cells))
    info = notebooks.loaded_info(vars(cached[1])) if cached else None
    return list(info.notes) if info else []


def explain_name_error(exc: UserCodeError, namespace: Mapping[str, Any]) -> None:
    """A NameError in code from a notebook: say which import failed or which statement was skipped."""
    info = notebooks.loaded_info(namespace)
    if info is None or not isinstance(exc.exc, NameError):
        return
    why = info.why_missing(getattr(exc.exc, "name", None) or "")
    if why:
        exc.args = (f"{exc.args[0]} ({why})",)


def _import_file(path: Path, spec: Spec) -> ModuleType:
    """Execute a .py file as a module, again whenever its text has changed.

    Re-running after an edit (in a notebook, or after filling in a template)
    must run the new code: modules are cached by content, not by path, and no
    bytecode is written next to the user's file.
    """
    path = path.resolve()
    source = path.read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    cached = _FILE_MODULES.get(path)
    if cached is not None and cached[0] == digest:
        return cached[1]
    code = compile(source, str(path), "exec", dont_inherit=True)
    module = _fresh_module("gradcheck_user", path, digest, spec, lambda m: exec(code, m.__dict__))
    _FILE_MODULES[path] = (digest, module)
    return module


def lookup(namespace: Mapping[str, Any], dotted: str, spec: Spec, key: str) -> Any:
    head, *rest = dotted.split(".")
    if head not in namespace:
        public = [k for k in namespace if not k.startswith("_")]
        info = notebooks.loaded_info(namespace)
        why = info.why_missing(head) if info is not None else None
        where = "the notebook's definitions" if info is not None else "the implementation"
        raise spec.error(
            f"{head!r} is not defined in {where}{did_you_mean(head, public)}" + (f" ({why})" if why else ""),
            key,
        )
    return walk_attrs(namespace[head], rest, dotted, spec, key)


def walk_attrs(obj: Any, attrs: list[str], dotted: str, spec: Spec, key: str) -> Any:
    for attr in attrs:
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise spec.error(f"{dotted!r}: {type(obj).__name__} has no attribute {attr!r}", key) from None
    return obj
