"""The call mini-syntax of a spec: ``func(a, b, key=c) -> r1, _, r2``.

A call names a function (or method) of the user's code, the names of the
values it is handed, and the names its return slots are bound to. An
argument is a name (an input, param, dim, option, upstream gradient, or
something the forward returned) or a literal: a number, a quoted string,
``True``, ``False`` or ``None``. Parsing is pure string work: loading a spec
never imports user code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_CALL = re.compile(rf"^\s*({_NAME}(?:\.{_NAME})*)\s*\((.*)\)\s*(?:->\s*(.*?))?\s*$", re.S)
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)$")
_STRING = re.compile(r"""^(?:'([^'\\]*)'|"([^"\\]*)")$""")
_CONSTANTS: dict[str, Any] = {"True": True, "False": False, "None": None}


@dataclass(frozen=True)
class Arg:
    """One argument of a call: a name to look up, or a literal (``name`` is None)."""

    name: str | None
    literal: Any = None
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
        """The names the call looks up (literals excluded), in order."""
        return [a.name for a in self.args if a.name is not None]

    def __str__(self) -> str:
        return self.text


class CallSyntaxError(ValueError):
    """The call text does not follow ``func(a, b) -> x, y``."""


def _split(text: str) -> list[str]:
    """Split on top-level commas: not inside quotes."""
    parts: list[str] = []
    current: list[str] = []
    quote: str | None = None
    for char in text:
        if quote:
            current.append(char)
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char == ",":
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if quote:
        raise CallSyntaxError(f"unterminated string in {text!r}")
    parts.append("".join(current).strip())
    if parts == [""]:
        return []
    if any(p == "" for p in parts):
        raise CallSyntaxError("empty item in a comma-separated list")
    return parts


def _parse_arg(text: str) -> Arg:
    keyword = None
    if re.match(rf"^{_NAME}\s*=", text):
        keyword, text = (s.strip() for s in text.split("=", 1))
    if _NUMBER.match(text):
        number = float(text) if any(c in text for c in ".eE") else int(text)
        return Arg(None, number, keyword)
    string = _STRING.match(text)
    if string:
        return Arg(None, string.group(1) if string.group(1) is not None else string.group(2), keyword)
    if text in _CONSTANTS:
        return Arg(None, _CONSTANTS[text], keyword)
    if not re.fullmatch(_NAME, text):
        raise CallSyntaxError(
            f"argument {text!r} is not a name or a literal (a number, a quoted string, True, False, None)"
        )
    return Arg(text, None, keyword)


def parse_call(text: str) -> Call:
    """Parse ``func(a, key=b, 2) -> x, _, y``.

    >>> parse_call("backward(dout, cache) -> x, w, b").returns
    ('x', 'w', 'b')
    >>> [str(a) for a in parse_call("bn(x, eps=1e-5, mode='train')").args]
    ['x', 'eps=1e-05', "mode='train'"]
    """
    match = _CALL.match(text)
    if not match:
        raise CallSyntaxError(f"expected 'func(arg, ...) -> name, ...', got {text!r}")
    func, args_text, returns_text = match.groups()
    args = tuple(_parse_arg(a) for a in _split(args_text))
    keywords = [a.keyword for a in args if a.keyword]
    if len(set(keywords)) != len(keywords):
        raise CallSyntaxError("a keyword argument is given twice")
    seen_keyword = False
    for arg in args:
        if arg.keyword:
            seen_keyword = True
        elif seen_keyword:
            raise CallSyntaxError(f"positional argument {arg} follows a keyword argument")
    returns = None
    if returns_text is not None:
        returns = tuple(_split(returns_text))
        if not returns:
            raise CallSyntaxError("nothing after '->'")
        for name in returns:
            if not re.fullmatch(_NAME, name):
                raise CallSyntaxError(f"return slot {name!r} is not a name")
        named = [r for r in returns if r != "_"]
        if len(set(named)) != len(named):
            raise CallSyntaxError(f"a return name is used twice in {', '.join(returns)}")
    return Call(func, args, returns, text.strip())
