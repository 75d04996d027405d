"""Where the checked code was: the frame of a stack that is the user's, not torch's or ours.

Used for an exception the checked code raised (its traceback), for a worker that
crashed or timed out (faulthandler's dump of its stack), and for an import that
failed. The checked code is every frame but those of torch, numpy, installed
packages, the standard library and gradcheck_cli itself; the built-in layers in
``gradcheck_cli/layers/`` are checked code.
"""

from __future__ import annotations

import contextlib
import os
import sysconfig
import traceback
from collections.abc import Sequence
from functools import cache
from types import TracebackType
from typing import TypeAlias

Frame: TypeAlias = tuple[str, int, str]  # (file, line, function)


@cache
def _machinery() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Folders whose frames are not the checked code, and folders inside them that are."""
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    folders = {here}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        with contextlib.suppress(KeyError):
            folders.add(sysconfig.get_paths()[key])
    for name in ("torch", "numpy"):  # find_spec finds a top-level package without importing it
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            folders.update(spec.submodule_search_locations)
    real = {os.path.realpath(f) for f in folders} | {os.path.abspath(f) for f in folders}
    checked = (os.path.join(here, "layers"),)
    return tuple(f.rstrip(os.sep) + os.sep for f in real), tuple(f + os.sep for f in checked)


def is_checked_code(path: str) -> bool:
    """Whether a frame in ``path`` is the checked code's (not torch, numpy, a package, Python, us)."""
    if path.startswith("<ipython-input-"):  # a live notebook's cell (older IPython)
        return True
    if path.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return False
    parts = path.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    machinery, checked = _machinery()
    for candidate in {path, os.path.realpath(path)}:
        if candidate.startswith(checked):
            return True
        if candidate.startswith(machinery):
            return False
    return True


def choose_frame(frames: Sequence[Frame]) -> Frame | None:
    """The deepest frame of the checked code (``frames`` outermost first); else the deepest frame
    outside Python's own machinery (a library's, when no frame of the user's is there); else the deepest."""
    for frame in reversed(frames):
        if is_checked_code(frame[0]):
            return frame
    for frame in reversed(frames):
        if not frame[0].startswith("<") and not _in_stdlib(frame[0]):
            return frame
    return frames[-1] if frames else None


def _in_stdlib(path: str) -> bool:
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"]) + os.sep
    return os.path.realpath(path).startswith(stdlib)


def traceback_frames(tb: TracebackType | None) -> list[Frame]:
    return [(f.filename, f.lineno or 0, f.name) for f in traceback.extract_tb(tb)]


def exception_frames(exc: BaseException) -> list[Frame]:
    """The frames an exception went through; a SyntaxError's deepest is the line it is about."""
    frames = traceback_frames(exc.__traceback__)
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        frames.append((exc.filename, exc.lineno, "<module>"))
    return frames


def at(frame: Frame | None) -> str | None:
    return f"{frame[0]}:{frame[1]}" if frame else None


def where(exc: BaseException) -> str | None:
    """``file:line`` in the checked code where ``exc`` was raised (or is about, for a SyntaxError)."""
    return at(choose_frame(exception_frames(exc)))
