"""The user's code: importing their files and modules, and finding their frame in a traceback.

A ``file:`` is executed as a module of its own (again whenever its text
changes); a ``module:`` is imported the way ``python -m`` would see it from
the current directory and the spec's folder. Whatever the code raises is a
:class:`UserCodeError` that says where, in the user's own file.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import SpecError, printable
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
        super().__init__(printable(f"{stage} raised {type(exc).__name__}: {_text_of(exc)}{where}"))


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


def user_frame(exc: BaseException) -> str | None:
    """``file:line`` of the deepest frame of the user's code that ``exc`` went through."""
    return where(exc)


def load_namespace(source: CodeSource, spec: Spec, key: str) -> Mapping[str, Any]:
    """Import the user's module or file; an import failure is a spec error."""
    if source.namespace is not None:
        return source.namespace
    try:
        if source.module is not None:
            module: ModuleType = _import_module(source.module, spec)
        else:
            assert source.file is not None
            module = _import_file(source.file)
    except SpecError:
        raise
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


def _import_module(name: str, spec: Spec) -> ModuleType:
    """Import a dotted module the way ``python -m`` would see it from here: the
    current directory and the spec's folder are importable during the import."""
    extra = [str(Path.cwd())]
    if spec.path is not None:
        extra.append(str(spec.path.resolve().parent))
    added = [p for p in extra if p not in sys.path]
    sys.path[:0] = added
    try:
        return importlib.import_module(name)
    finally:
        for p in added:
            sys.path.remove(p)


_FILE_MODULES: dict[Path, tuple[str, ModuleType]] = {}


def _import_file(path: Path) -> ModuleType:
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
    # Let the file import its neighbours (a helper module next to it).
    sys.path.insert(0, str(path.parent))
    sys.modules[name] = module  # dataclasses and pickling look a class's module up here
    try:
        exec(code, module.__dict__)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        sys.path.remove(str(path.parent))
    _FILE_MODULES[path] = (digest, module)
    return module


def lookup(namespace: Mapping[str, Any], dotted: str, spec: Spec, key: str) -> Any:
    head, *rest = dotted.split(".")
    if head not in namespace:
        public = [k for k in namespace if not k.startswith("_")]
        raise spec.error(f"{head!r} is not defined in the implementation{did_you_mean(head, public)}", key)
    return walk_attrs(namespace[head], rest, dotted, spec, key)


def walk_attrs(obj: Any, attrs: list[str], dotted: str, spec: Spec, key: str) -> Any:
    for attr in attrs:
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise spec.error(f"{dotted!r}: {type(obj).__name__} has no attribute {attr!r}", key) from None
    return obj
