"""Spec files on disk: read boundedly, decoded strictly, found in folders without hanging.

A spec is a small UTF-8 text file. Anything else named ``*.yaml`` (a FIFO,
a device, a file of gigabytes, UTF-16 from PowerShell's ``>``, UTF-32, Latin-1) is
a one-line error naming the file and what is wrong, never a hang and never
silently skipped. Directory walks follow no symlink loop and stop at a
bound.
"""

from __future__ import annotations

import codecs
import difflib
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import SpecError

MAX_BYTES = 1 << 20  # 1 MiB: the largest spec we read
MAX_WALKED = 100_000  # entries a directory search looks at before it gives up
SUFFIXES = (".yaml", ".yml")
# Directories a recursive search never enters (pytest's norecursedirs, plus venvs).
SKIP_DIRS = ("build", "dist", "node_modules", "venv", "site-packages", "__pycache__")


def read_spec_text(path: Path) -> str:
    """The text of a spec file: a regular file of at most 1 MiB, in UTF-8 (raises SpecError)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise SpecError(f"cannot read spec: {exc.strerror}", path) from None
    if stat.S_ISDIR(info.st_mode):
        raise SpecError("is a directory, not a spec file", path)
    if not stat.S_ISREG(info.st_mode):
        raise SpecError("not a regular file (a FIFO, a socket or a device): not read as a spec", path)
    if info.st_size > MAX_BYTES:
        raise SpecError(f"the file is {info.st_size} bytes, larger than a spec can be ({MAX_BYTES})", path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read spec: {exc.strerror}", path) from None
    if len(data) > MAX_BYTES:
        raise SpecError(f"the file is larger than a spec can be ({MAX_BYTES} bytes)", path)
    return decode(data, path)


def wide_encoding(data: bytes) -> str | None:
    """``UTF-32`` or ``UTF-16`` when the bytes are text in one of them (by its BOM, else by reading
    them so), ``binary`` when they hold NULs and read as neither, None when they hold no NUL.

    UTF-32's BOMs are checked first: the little-endian one begins with UTF-16's. Text has no
    U+0000, so a NUL byte means a wide encoding (each ASCII character is one byte and one or three
    NULs) or no text at all.
    """
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "UTF-32"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16"
    head = data[:4096]
    if b"\x00" not in head:
        return None
    for name, width in (("UTF-32", 4), ("UTF-16", 2)):
        if any(_reads_as(head, f"{name.lower()}-{order}", width) for order in ("le", "be")):
            return name
    return "binary"


def _reads_as(head: bytes, codec: str, width: int) -> bool:
    """Whether ``head`` (cut to whole characters) reads as a spec's text in ``codec``: printable,
    and at least half ASCII (a spec's keys are; byte pairs of anything read as CJK otherwise)."""
    try:
        text = head[: len(head) - len(head) % width].decode(codec)
    except UnicodeDecodeError:
        return False
    readable = sum(c.isprintable() or c in "\t\r\n" for c in text)
    ascii_ = sum(c < "\x80" for c in text)
    return bool(text) and "\x00" not in text and readable >= 0.95 * len(text) and 2 * ascii_ >= len(text)


def decode(data: bytes, path: Path | None = None) -> str:
    """UTF-8 text (a UTF-8 BOM is dropped); UTF-16, UTF-32 and other encodings are one-line errors."""
    wide = wide_encoding(data)
    if wide == "UTF-16":
        raise SpecError(
            "the file is UTF-16, not UTF-8 (PowerShell's '>' writes UTF-16): save it as UTF-8", path
        )
    if wide == "binary":
        raise SpecError("the file holds NUL bytes, so it is not text: a spec is a YAML file in UTF-8", path)
    if wide is not None:
        raise SpecError(f"the file is {wide}, not UTF-8: save it as UTF-8", path)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"the file is not UTF-8: byte 0x{data[exc.start]:02x} cannot be decoded"
            " (Latin-1 or another encoding?): save it as UTF-8",
            path,
            line,
        ) from None


# A top-level key of block style: at the start of a line, bare or quoted ("reference": ...).
_BLOCK_KEY = re.compile(r"""^(?:"([^"\n]*)"|'([^'\n]*)'|([A-Za-z_][\w-]*))[ \t]*:""", re.M)
# What flow style ({name: x, "reference": ...}, and so JSON) is made of: quoted scalars (which
# may hold any punctuation), the indicators, and plain scalars.
_FLOW_TOKEN = re.compile(r"""\"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[{}\[\],:]|[^\s{}\[\],:"']+""")
_PREAMBLE = re.compile(r"\A(?:\s|#[^\n]*|%[^\n]*|---)*")  # comments, directives, a document start


def has_spec_suffix(path: Path) -> bool:
    """``.yaml`` or ``.yml``, in any case (``LAYER.YAML`` from a case-insensitive file system)."""
    return path.suffix.lower() in SUFFIXES


def top_level_keys(text: str) -> set[str]:
    """The keys of a YAML document's top-level mapping, in block style or flow style (JSON too),
    bare or quoted; found without parsing, so a file that is not YAML costs a scan."""
    preamble = _PREAMBLE.match(text)
    body = text[preamble.end() :] if preamble else text
    if not body.startswith("{"):
        return {next(k for k in match if k) for match in _BLOCK_KEY.findall(text) if any(match)}
    keys: set[str] = set()
    depth, previous, pending = 0, "", None  # pending: a scalar that is a key if a ':' follows
    for token in _FLOW_TOKEN.findall(body):
        if token in ("{", "["):
            depth += 1
        elif token in ("}", "]"):
            depth -= 1
            if depth == 0:
                break
        elif token == ":" and pending is not None:
            keys.add(pending)
        pending = None
        if depth == 1 and previous in ("{", ",") and token not in _INDICATORS:
            pending = _unquoted(token)
        previous = token
    return keys


_INDICATORS = ("{", "[", "}", "]", ",", ":")


def _unquoted(scalar: str) -> str:
    if scalar.startswith('"'):
        return scalar[1:-1]
    if scalar.startswith("'"):
        return scalar[1:-1].replace("''", "'")
    return scalar


def looks_like_spec(path: Path) -> bool:
    """Whether a ``*.yaml`` file met in a directory search is a spec to run.

    Its top-level keys (block or flow style, bare or quoted) include
    ``reference`` or ``implementation`` (or a near-miss spelling, so a typo
    is a reported spec error, not a skipped file); a file that cannot be read
    or decoded counts too, so that it is reported instead of silently passed
    over.
    """
    try:
        text = read_spec_text(path)
    except SpecError:
        return True
    return any(
        difflib.get_close_matches(k, ("reference", "implementation"), n=1, cutoff=0.8)
        for k in top_level_keys(text)
    )


def skipped_folder(folder: Path) -> bool:
    """A folder the search for specs does not enter: hidden, a virtual environment, build output."""
    name = folder.name
    return (
        name.startswith(".")
        or name in SKIP_DIRS
        or name.endswith((".egg", ".egg-info"))
        or (folder / "pyvenv.cfg").exists()
    )


def _walk(root: Path) -> Iterator[Path]:
    """Spec files below ``root``: each real folder once (a symlink loop ends), MAX_WALKED entries at most."""
    seen: set[tuple[int, int]] = set()
    budget = [MAX_WALKED]

    def walk(folder: Path) -> Iterator[Path]:
        try:
            info = folder.stat()
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        if (info.st_dev, info.st_ino) in seen:
            return
        seen.add((info.st_dev, info.st_ino))
        for entry in entries:
            budget[0] -= 1
            if budget[0] < 0:
                raise SpecError(f"more than {MAX_WALKED} entries below it: name the spec folders", root)
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if not skipped_folder(path):
                    yield from walk(path)
            elif has_spec_suffix(path) and looks_like_spec(path):
                yield path

    yield from walk(root)


def find_spec_files(paths: Iterable[str | Path]) -> list[Path]:
    """Spec files among ``paths``: files as given, directories searched recursively
    (skipping hidden folders, virtual environments and build output); each file once."""
    found: list[Path] = []
    seen: set[str] = set()
    for p in paths:
        p = Path(p)
        if p.is_dir():
            candidates = list(_walk(p))
        elif p.exists() or p.is_symlink():
            candidates = [p]
        else:
            raise SpecError("no such file or directory", p)
        for f in candidates:
            key = os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                found.append(f)
    return found
