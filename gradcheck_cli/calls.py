"""The call mini-syntax of a spec: ``func(a, b, key=c) -> r1, _, r2``.

A call names a function (or method) of the user's code, the names of the
values it is handed, and the names its return slots are bound to. Parsing is
pure string work: loading a spec never imports user code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_CALL = re.compile(rf"^\s*({_NAME}(?:\.{_NAME})*)\s*\((.*)\)\s*(?:->\s*(.*?))?\s*$", re.S)
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)$")


@dataclass(frozen=True)
class Arg:
    """One argument of a call: a name to look up, or a numeric literal."""

    name: str | None
    literal: float | int | None = None
    keyword: str | None = None

    def __str__(self) -> str:
        value = self.name if self.name is not None else repr(self.literal)
        return f"{self.keyword}={value}" if self.keyword else str(value)


@dataclass(frozen=True)
class Call:
    """A parsed call: ``func(args) -> returns`` (returns is None without ``->``)."""

    func: str
    args: tuple[Arg, ...]
    returns: tuple[str, ...] | None
    text: str

    @property
    def arg_names(self) -> list[str]:
        return [a.name for a in self.args if a.name is not None]

    def __str__(self) -> str:
        return self.text


class CallSyntaxError(ValueError):
    """The call text does not follow ``func(a, b) -> x, y``."""


def _split(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",")]
    if parts == [""]:
        return []
    if any(p == "" for p in parts):
        raise CallSyntaxError("empty item in a comma-separated list")
    return parts


def _parse_arg(text: str) -> Arg:
    keyword = None
    if "=" in text:
        keyword, text = (s.strip() for s in text.split("=", 1))
        if not re.fullmatch(_NAME, keyword):
            raise CallSyntaxError(f"bad keyword {keyword!r}")
    if _NUMBER.match(text):
        number = float(text) if any(c in text for c in ".eE") else int(text)
        return Arg(None, number, keyword)
    if not re.fullmatch(_NAME, text):
        raise CallSyntaxError(f"argument {text!r} is not a name or a number")
    return Arg(text, None, keyword)


def parse_call(text: str) -> Call:
    """Parse ``func(a, key=b, 2) -> x, _, y``.

    >>> parse_call("backward(dout, cache) -> x, w, b").returns
    ('x', 'w', 'b')
    """
    match = _CALL.match(text)
    if not match:
        raise CallSyntaxError(f"expected 'func(arg, ...) -> name, ...', got {text!r}")
    func, args_text, returns_text = match.groups()
    args = tuple(_parse_arg(a) for a in _split(args_text))
    returns = None
    if returns_text is not None:
        returns = tuple(_split(returns_text))
        if not returns:
            raise CallSyntaxError("nothing after '->'")
        for name in returns:
            if not re.fullmatch(_NAME, name):
                raise CallSyntaxError(f"return slot {name!r} is not a name")
    return Call(func, args, returns, text.strip())
