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
import sysconfig
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from . import notebooks
from .errors import SpecError
from .names import did_you_mean
from .spec import CodeSource, Spec


class UserCodeError(Exception):
    """The checked code raised; carries the original exception and where it was."""

    def __init__(self, stage: str, exc: BaseException) -> None:
        self.stage = stage
        self.exc = exc
        self.where = user_frame(exc.__traceback__, exc)
        where = f" at {self.where}" if self.where else ""
        super().__init__(printable(f"{stage} raised {type(exc).__name__}: {_text_of(exc)}{where}"))


def printable(text: str) -> str:
    """``text`` with what no terminal or file can encode (a lone surrogate) written as ``\\udc80``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _text_of(exc: BaseException) -> str:
    """``str(exc)``, even when the checked code's ``__str__`` raises."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the real error
        return f"<{type(exc).__name__} whose message cannot be shown>"


@contextmanager
def user_code(stage: str) -> Iterator[None]:
    """Run the checked code: whatever it raises (even SystemExit) becomes a UserCodeError."""
    try:
        yield
    except (Exception, SystemExit) as exc:
        raise UserCodeError(stage, exc) from exc


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


_TORCH_SPEC = importlib.util.find_spec("torch")
_TORCH_DIR = (
    str(Path(_TORCH_SPEC.origin if _TORCH_SPEC and _TORCH_SPEC.origin else "/").parent.resolve()) + os.sep
)
_OWN_DIR = str(Path(__file__).resolve().parent) + os.sep  # gradcheck_cli itself...
_LAYERS_DIR = _OWN_DIR + "layers" + os.sep  # ...but for the built-in layers, which are checked code
_STDLIB = str(Path(sysconfig.get_paths()["stdlib"]).resolve()) + os.sep  # importlib's frames are not a place


def _is_library(filename: str) -> bool:
    """A frame of torch, numpy, an installed package, or Python's import machinery."""
    if filename.startswith("<ipython-input-"):  # a live notebook's cell (older IPython)
        return False
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return True
    resolved = str(Path(filename).resolve())
    return (
        resolved.startswith((_TORCH_DIR, _STDLIB))
        or "site-packages" in resolved
        or "dist-packages" in resolved
    )


def _is_own(filename: str) -> bool:
    resolved = str(Path(filename).resolve())
    return resolved.startswith(_OWN_DIR) and not resolved.startswith(_LAYERS_DIR)


def user_frame(tb: TracebackType | None, exc: BaseException | None = None) -> str | None:
    """``file:line`` of the deepest traceback frame in the user's code.

    Frames in torch, numpy and other installed packages are skipped when a
    frame of the user's own files is there to point at; a SyntaxError points
    at the line it is about.
    """
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return _place(exc.filename, exc.lineno)
    deepest_user = deepest_any = None
    for frame, line in traceback.walk_tb(tb):
        filename = frame.f_code.co_filename
        if _is_own(filename):
            continue
        where = _place(filename, line)
        if not filename.startswith("<") and not str(Path(filename).resolve()).startswith(_STDLIB):
            deepest_any = where  # a library frame, when no frame of the user's is there
        if not _is_library(filename):
            deepest_user = where
    return deepest_user or deepest_any


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
        where = user_frame(exc.__traceback__, exc)
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
    stem = re.sub(r"\W", "_", path.stem)
    name = f"gradcheck_notebook_{stem}_{digest[:12]}"
    module = ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module  # dataclasses and pickling look a class's module up here
    try:
        with importable(spec, path.parent):
            notebooks.load(path, module, cells)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    _NOTEBOOKS[(path, cells)] = (digest, module)
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
    stem = re.sub(r"\W", "_", path.stem)
    name = f"gradcheck_user_{stem}_{digest[:12]}"
    module = ModuleType(name)
    module.__file__ = str(path)
    code = compile(source, str(path), "exec", dont_inherit=True)
    sys.modules[name] = module  # dataclasses and pickling look a class's module up here
    try:
        with importable(spec, path.parent):  # its neighbours, the project's root, the spec's folder
            exec(code, module.__dict__)
    except BaseException:
        sys.modules.pop(name, None)
        raise
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
