"""The call mini-syntax of a spec: ``func(a, b[0], key=c) -> r1, _, self.r2``.

A call names a function (or method) of the user's code, the expressions
it is handed, and the names its return slots are bound to. Parsed with
``ast``: each argument is an :class:`~gradcheck_cli.expressions.Expression`
(a name, a literal, or any expression the evaluator accepts, such as
``dropout_param['p']`` or ``F.hardtanh``); a return slot is a name, ``_``
(discarded) or ``self.NAME`` (an attribute of the instance, read after the
call). Parsing is pure text work: loading a spec never imports user code.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .expressions import Expression, ExpressionError, mangle, parse, unmangle, unmangle_text

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SLOT = re.compile(rf"^(?:{_NAME}|self\.{_NAME})$")


class CallSyntaxError(ValueError):
    """The call text does not follow ``func(a, b) -> x, y``."""


@dataclass(frozen=True)
class Arg:
    """One argument of a call: an expression, maybe passed by keyword."""

    expr: Expression
    keyword: str | None = None

    @property
    def name(self) -> str | None:
        """The name, when the argument is one name (``x``, ``cache``)."""
        return self.expr.bare_name

    @property
    def literal(self) -> Any:
        """The value, when the argument is a literal (``1e-5``, ``'same'``, ``-2``, ``None``)."""
        body = self.expr.tree.body
        if isinstance(body, ast.UnaryOp) and isinstance(body.op, ast.USub):
            if isinstance(body.operand, ast.Constant) and isinstance(body.operand.value, (int, float)):
                return -body.operand.value
        return body.value if isinstance(body, ast.Constant) else None

    def __str__(self) -> str:
        return f"{self.keyword}={self.expr}" if self.keyword else str(self.expr)


@dataclass(frozen=True)
class Call:
    """A parsed call: ``func(args) -> returns`` (returns is None without ``->``)."""

    func: str
    args: tuple[Arg, ...]
    returns: tuple[str, ...] | None
    text: str

    @property
    def arg_names(self) -> list[str]:
        """Every name the arguments read, in order of first use."""
        seen: list[str] = []
        for arg in self.args:
            for node in ast.walk(arg.expr.tree):
                if isinstance(node, ast.Name) and unmangle(node.id) not in seen:
                    seen.append(unmangle(node.id))
        return seen

    @property
    def named_returns(self) -> list[str]:
        """The return slots that bind something (not ``_``)."""
        return [r for r in self.returns or () if r != "_"]

    def __str__(self) -> str:
        return self.text


def _split_arrow(text: str) -> tuple[str, str | None]:
    """Split at the ``->`` outside brackets and strings."""
    depth = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.OP:
                if tok.string in "([{":
                    depth += 1
                elif tok.string in ")]}":
                    depth -= 1
                elif tok.string == "->" and depth == 0:
                    offset = _offset(text, tok.start)
                    return text[:offset], text[offset + 2 :]
    except tokenize.TokenError as exc:
        if "string" in str(exc).lower():
            raise CallSyntaxError(f"unterminated string in {text!r}") from None
    except SyntaxError as exc:
        raise CallSyntaxError(f"{exc.msg} in {text!r}") from None
    return text, None


def _offset(text: str, position: tuple[int, int]) -> int:
    row, col = position
    lines = text.splitlines(keepends=True)
    return sum(len(line) for line in lines[: row - 1]) + col


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _returns(text: str) -> tuple[str, ...]:
    slots = tuple(s.strip() for s in text.split(","))
    if slots == ("",):
        raise CallSyntaxError("nothing after '->'")
    for slot in slots:
        if not slot:
            raise CallSyntaxError("empty item in a comma-separated list")
        if not _SLOT.match(slot):
            raise CallSyntaxError(f"return slot {slot!r} is not a name (or self.NAME)")
    named = [r for r in slots if r != "_"]
    if len(set(named)) != len(named):
        raise CallSyntaxError(f"a return name is used twice in {', '.join(slots)}")
    return slots


def parse_call(text: str, names: Iterable[str] = ()) -> Call:
    """Parse ``func(a, key=b, 2) -> x, _, y``; ``names`` are the spec's names (keyword dims).

    >>> parse_call("backward(dout, cache) -> x, w, b").returns
    ('x', 'w', 'b')
    >>> [str(a) for a in parse_call("bn(x, eps=1e-5, mode='train')").args]
    ['x', 'eps=1e-5', "mode='train'"]
    """
    if not isinstance(text, str) or not text.strip():
        raise CallSyntaxError(f"expected 'func(arg, ...) -> name, ...', got {text!r}")
    names = set(names)
    head, tail = _split_arrow(text)
    source = mangle(head, names).strip()
    try:
        body = ast.parse(source, mode="eval").body
    except SyntaxError as exc:
        if exc.msg and "keyword argument repeated" in exc.msg:
            raise CallSyntaxError("a keyword argument is given twice") from None
        if exc.msg and "unterminated string" in exc.msg:
            raise CallSyntaxError(f"unterminated string in {text.strip()!r}") from None
        if exc.msg and "follows keyword argument" in exc.msg:
            raise CallSyntaxError(f"{exc.msg} in {text.strip()!r}") from None
        raise CallSyntaxError(f"expected 'func(arg, ...) -> name, ...', got {text.strip()!r}") from None
    except (RecursionError, MemoryError, ValueError):
        raise CallSyntaxError("the call is nested too deeply") from None
    func = _dotted(body.func) if isinstance(body, ast.Call) else None
    if not isinstance(body, ast.Call) or func is None:
        raise CallSyntaxError(f"expected 'func(arg, ...) -> name, ...', got {text.strip()!r}")
    args: list[Arg] = []
    for node in body.args:
        args.append(Arg(_argument(source, node, names)))
    seen: set[str] = set()
    for kw in body.keywords:
        if kw.arg is None:
            raise CallSyntaxError("'**' is not allowed in a call")
        if kw.arg in seen:
            raise CallSyntaxError("a keyword argument is given twice")
        seen.add(kw.arg)
        args.append(Arg(_argument(source, kw.value, names), unmangle(kw.arg)))
    returns = _returns(tail) if tail is not None else None
    return Call(unmangle(func), tuple(args), returns, text.strip())


def _argument(source: str, node: ast.expr, names: set[str]) -> Expression:
    """The argument's own expression, parsed (and checked) on its own."""
    segment = ast.get_source_segment(source, node)
    if segment is None:  # pragma: no cover - ast always has positions for parsed text
        raise CallSyntaxError("cannot read an argument")
    if isinstance(node, ast.Starred):
        raise CallSyntaxError(f"argument {segment!r}: '*' is not allowed in a call")
    shown = unmangle_text(segment)
    try:
        return replace(parse(segment, names), text=shown)
    except ExpressionError as exc:
        raise CallSyntaxError(f"argument {shown!r}: {exc}") from None


def bind(call: Call, scope: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword values a call hands over, its arguments evaluated in ``scope``."""
    from .expressions import evaluate

    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for arg in call.args:
        value = evaluate(arg.expr, scope)
        if arg.keyword:
            kwargs[arg.keyword] = value
        else:
            args.append(value)
    return args, kwargs
