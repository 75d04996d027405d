"""Expressions: parsed once with ``ast``, walked over an allowlist, never ``eval``'d.

One evaluator for every expression a spec holds: the reference, call
arguments, shapes, bounds and constraints. It knows nothing of specs: it
is given the names that exist and, to evaluate, their values.

Two modes:

- **full** (references, call arguments): names, literals, arithmetic and
  comparisons, ``a if c else b``, indexing and slicing, tuples and lists,
  calls, and attributes from an explicit allowlist (:mod:`.allowlist`):
  the tensor functions of ``torch``, ``torch.nn.functional`` (``F``),
  ``torch.linalg``, ``torch.special``, ``torch.fft`` and ``math``; a
  tensor's methods and properties; a few attributes of sizes, dtypes,
  devices, ``finfo``/``iinfo``, named results (``.values``) and options
  dicts (``.get``). Nothing else is reachable: no module-walking
  attribute (``torch.utils``, ``torch.ops``, ``torch.hub``), no
  ``torch.load``/``save``, no ``str.format``, no underscore attribute.
- **arithmetic** (shapes, bounds, constraints): numbers, names,
  ``+ - * / // % **``, comparisons and ``and``/``or``/``not``.

Python's own work is bounded: integers past 4096 bits (``**``,
``math.factorial``, ``comb``, ``perm``, ``prod`` are refused before they
run), sequences and ranges past a million items, ``%`` formatting of text,
deep nesting and overlong text are errors, not hangs. torch's work is not:
``torch.ones(10**5, 10**5)`` runs as torch runs it, and in a worker the
spec's timeout stops it (under ``check()`` and ``--pdb`` nothing does).
Names that are Python keywords (a dim called ``in``) are renamed before
parsing.
"""

from __future__ import annotations

import ast
import io
import operator
import tokenize
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .bounds import BOUNDED_MATH, binop, safe_builtins
from .bounds import ExpressionError as ExpressionError  # the evaluator's error, raised by both
from .names import did_you_mean, is_keyword
from .reach import GLOBALS, Namespace, ReachError, check_attribute, namespaces, value_attribute

BUILTINS = (
    "len",
    "min",
    "max",
    "abs",
    "range",
    "tuple",
    "list",
    "int",
    "float",
    "bool",
    "slice",
    "sum",
    "round",
)
MAX_TEXT = 20_000
_MANGLE = "_kw_"


@dataclass(frozen=True)
class Expression:
    """A parsed expression: its text, its tree, the names it reads."""

    text: str
    tree: ast.Expression = field(compare=False, repr=False)
    names: frozenset[str] = frozenset()
    arithmetic: bool = False

    @property
    def bare_name(self) -> str | None:
        """The name, when the whole expression is one name (``x``)."""
        body = self.tree.body
        return unmangle(body.id) if isinstance(body, ast.Name) else None

    def __str__(self) -> str:
        return self.text


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.MatMult: operator.matmul,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
    ast.BitXor: operator.xor,
}
_ARITH_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_UNARY: dict[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Not: operator.not_,
    ast.Invert: operator.invert,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_COMMON_NODES: tuple[type, ...] = (ast.Expression, ast.Constant, ast.Name, ast.Load, ast.BinOp, ast.UnaryOp)
_COMMON_NODES += (ast.BoolOp, ast.Compare, ast.And, ast.Or, *_COMPARE)
_FULL_NODES: tuple[type, ...] = (
    *_COMMON_NODES,
    ast.IfExp,
    ast.Call,
    ast.keyword,
    ast.Attribute,
    ast.Subscript,
)
_FULL_NODES += (ast.Slice, ast.Tuple, ast.List, *_BINOPS, *_UNARY)
_ARITH_NODES: tuple[type, ...] = (*_COMMON_NODES, *_ARITH_BINOPS, ast.USub, ast.UAdd, ast.Not)

# -- parsing --------------------------------------------------------------------------


def unmangle(name: str) -> str:
    """A name as the spec spells it (``_kw_in`` -> ``in``)."""
    return name[len(_MANGLE) :] if name.startswith(_MANGLE) else name


def unmangle_text(text: str) -> str:
    """Expression text as the spec spells it."""
    return text.replace(_MANGLE, "")


def mangle(text: str, names: Iterable[str]) -> str:
    """Rename the declared names that are Python keywords (``in`` -> ``_kw_in``), as names only."""
    keywords = {n for n in names if is_keyword(n)}
    if not keywords:
        return text
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    spans = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.NAME and tok.string in keywords:
                spans.append((starts[tok.start[0] - 1] + tok.start[1], len(tok.string)))
    except (tokenize.TokenError, SyntaxError):
        return text  # ast.parse reports the problem
    for offset, size in reversed(spans):
        text = text[:offset] + _MANGLE + text[offset : offset + size] + text[offset + size :]
    return text


def parse(
    text: str,
    names: Iterable[str] = (),
    *,
    arithmetic: bool = False,
    known: Iterable[str] | None = None,
) -> Expression:
    """Parse and check ``text``; raises :class:`ExpressionError` naming the problem.

    ``names`` are the names that exist (to rename keyword names); with
    ``known``, every name read must be one of them (plus, in full mode, the
    globals ``torch``, ``F``, ``math`` and the allowed builtins).
    """
    if not isinstance(text, str):
        raise ExpressionError(f"expected an expression, got {text!r}")
    if len(text) > MAX_TEXT:
        raise ExpressionError(f"the expression is {len(text)} characters long (at most {MAX_TEXT})")
    names = set(names)
    try:
        tree = ast.parse(mangle(text, names).strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"not a Python expression: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError("the expression is nested too deeply") from None
    allowed = _ARITH_NODES if arithmetic else _FULL_NODES
    read: set[str] = set()
    try:
        nodes = list(ast.walk(tree))
    except RecursionError:
        raise ExpressionError("the expression is nested too deeply") from None
    for node in nodes:
        if isinstance(node, ast.keyword) and node.arg is None:
            raise ExpressionError("'**' is not allowed in an expression")
        if not isinstance(node, allowed):
            what = (
                "a shape or constraint (only numbers, names and arithmetic)"
                if arithmetic
                else "an expression"
            )
            raise ExpressionError(f"{_describe(node)} is not allowed in {what}")
        if isinstance(node, ast.Constant) and arithmetic and not isinstance(node.value, (int, float)):
            raise ExpressionError(f"{node.value!r} is not a number")
        if isinstance(node, ast.Name):
            read.add(unmangle(node.id))
    if known is not None:
        scope = set(known) if arithmetic else set(known) | set(GLOBALS) | set(BUILTINS)
        for name in sorted(read):
            if name not in scope:
                raise ExpressionError(f"unknown name {name!r}{did_you_mean(name, scope)}")
    # Innermost attributes first: `torch.utils.x.y` is refused at `utils`.
    attributes = [n for n in nodes if isinstance(n, ast.Attribute)]
    for node in sorted(attributes, key=lambda n: (n.end_lineno or 0, n.end_col_offset or 0)):
        _checked(node)
    return Expression(text.strip(), tree, frozenset(read), arithmetic)


def _describe(node: ast.AST) -> str:
    return type(node).__name__


def _checked(node: ast.Attribute) -> None:
    try:
        check_attribute(node)
    except ReachError as exc:
        raise ExpressionError(str(exc)) from None


# -- evaluation -------------------------------------------------------------------------


class _Walker:
    def __init__(self, scope: Mapping[str, Any]) -> None:
        self.scope = scope
        self.fallback: dict[str, Any] | None = None

    def name(self, name: str) -> Any:
        if name in self.scope:
            return self.scope[name]
        if self.fallback is None:
            self.fallback = {**safe_builtins(BUILTINS), **namespaces()}
        if name in self.fallback:
            return self.fallback[name]
        raise ExpressionError(f"unknown name {name!r}{did_you_mean(name, self.scope)}")

    def walk(self, node: ast.AST) -> Any:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise ExpressionError(f"{_describe(node)} is not allowed in an expression")
        return method(node)

    def visit_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def visit_Name(self, node: ast.Name) -> Any:
        return self.name(unmangle(node.id))

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        return binop(node.op, _BINOPS[type(node.op)], self.walk(node.left), self.walk(node.right))

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        return _UNARY[type(node.op)](self.walk(node.operand))

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        is_and = isinstance(node.op, ast.And)
        value = self.walk(node.values[0])
        for sub in node.values[1:]:
            if bool(value) != is_and:
                return value
            value = self.walk(sub)
        return value

    def visit_Compare(self, node: ast.Compare) -> Any:
        left, result = self.walk(node.left), True
        for op, comparator in zip(node.ops, node.comparators):
            right = self.walk(comparator)
            result = _COMPARE[type(op)](left, right)
            if len(node.ops) > 1 and not result:
                return result
            left = right
        return result

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        return self.walk(node.body) if self.walk(node.test) else self.walk(node.orelse)

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        try:
            return value_attribute(self.walk(node.value), node.attr)
        except ReachError as exc:
            raise ExpressionError(str(exc)) from None

    def visit_Call(self, node: ast.Call) -> Any:
        func = self.walk(node.func)
        if isinstance(func, Namespace) or not callable(func):
            raise ExpressionError(f"{ast.unparse(node.func)} is not callable")
        args = [self.walk(a) for a in node.args]
        kwargs = {k.arg: self.walk(k.value) for k in node.keywords if k.arg is not None}
        if isinstance(func, types.BuiltinFunctionType):  # hashable, and math's are among them
            func = BOUNDED_MATH.get(func, func)
        return func(*args, **kwargs)

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        return self.walk(node.value)[self.walk(node.slice)]

    def visit_Slice(self, node: ast.Slice) -> slice:
        parts = (node.lower, node.upper, node.step)
        return slice(*(self.walk(p) if p is not None else None for p in parts))

    def visit_Tuple(self, node: ast.Tuple) -> tuple[Any, ...]:
        return tuple(self.walk(e) for e in node.elts)

    def visit_List(self, node: ast.List) -> list[Any]:
        return [self.walk(e) for e in node.elts]


def evaluate(expr: Expression, scope: Mapping[str, Any]) -> Any:
    """The value of ``expr`` with its names taken from ``scope`` (then torch, F, math, builtins).

    Raises :class:`ExpressionError` for what the allowlist refuses or the bounds stop;
    whatever a torch call raises propagates unchanged.
    """
    try:
        value = _Walker(scope).walk(expr.tree.body)
    except RecursionError:
        raise ExpressionError("the expression is nested too deeply") from None
    if isinstance(value, Namespace):
        raise ExpressionError(f"{expr.text!r} is a module, not a value")
    return value


def evaluate_number(expr: Expression | int | float, scope: Mapping[str, int | float]) -> int | float:
    """An arithmetic expression (or a plain number) as a number."""
    if isinstance(expr, (int, float)) and not isinstance(expr, bool):
        return expr
    if not isinstance(expr, Expression):
        raise ExpressionError(f"expected a number or an expression, got {expr!r}")
    value = evaluate(expr, scope)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExpressionError(f"{expr.text!r} is {value!r}, not a number")
    return value


def evaluate_int(expr: Expression | int, scope: Mapping[str, int | float]) -> int:
    """An arithmetic expression that must come out a whole number (a size)."""
    value = evaluate_number(expr, scope)
    if isinstance(value, float):
        if not value.is_integer():
            raise ExpressionError(f"is {value}, not a whole number")
        value = int(value)
    return value
