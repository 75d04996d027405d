"""Reference expressions: parsed and walked, never handed to ``eval``.

A reference is one PyTorch expression over the spec's names. Allowed:
names (tensors, dims, options, ``torch``, ``F``, ``math``), literals,
arithmetic and comparisons, ``a if c else b``, indexing and slicing,
tuples and lists, attribute access (no underscores) and calls on those, and
a few builtins. Anything else (a lambda, ``__import__``, a dunder attribute,
``**kwargs``, a comprehension) is rejected when the spec is loaded.

This keeps a reference an expression about tensors; it is not a sandbox for
hostile specs. A spec's ``file:``/``module:`` is code you run, like a test
file. Still, the obvious ways out are closed: attributes that read or write
files or load code (``torch.load``, ``torch.hub``, ``.tofile``...) are
rejected, and an attribute that leads to a module outside torch and math
(``torch.os``) fails when evaluated.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

from .spec import did_you_mean

# Attributes that do I/O or load code: never needed to state a layer's math.
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "load", "save", "hub", "jit", "compile", "library", "load_library", "cpp_extension", "load_inline",
        "classes", "package", "multiprocessing", "distributed", "model_zoo", "tofile", "dump", "dumps",
        "from_file", "system", "popen", "os", "sys", "builtins", "importlib", "subprocess",
    }
)  # fmt: skip
SAFE_BUILTINS = ("len", "min", "max", "abs", "range", "tuple", "list", "int", "float", "bool", "slice")
GLOBAL_NAMES = ("torch", "F", "math")

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


class ReferenceSyntaxError(ValueError):
    """The reference is not an expression of the allowed form."""


def _mangle(expr: str, names: Iterable[str]) -> str:
    """Rename declared names that are Python keywords (a dim called ``in``)."""
    for name in names:
        if keyword.iskeyword(name):
            expr = re.sub(rf"(?<![\w.]){name}(?!\w)", f"_kw_{name}", expr)
    return expr


def parse_reference(expr: str, names: Iterable[str]) -> ast.Expression:
    """Parse and validate; raises :class:`ReferenceSyntaxError` naming the problem."""
    names = set(names)
    try:
        tree = ast.parse(_mangle(expr, names).strip(), mode="eval")
    except SyntaxError as exc:
        raise ReferenceSyntaxError(f"not a Python expression: {exc.msg}") from None
    known = names | set(GLOBAL_NAMES) | set(SAFE_BUILTINS)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            name = node.id[4:] if node.id.startswith("_kw_") else node.id
            if name not in known:
                raise ReferenceSyntaxError(f"unknown name {name!r}{did_you_mean(name, known)}")
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                raise ReferenceSyntaxError(
                    f"attribute {node.attr!r} is not allowed (no underscore attributes)"
                )
            if node.attr in FORBIDDEN_ATTRIBUTES:
                raise ReferenceSyntaxError(
                    f"attribute {node.attr!r} is not allowed in a reference: it reads or writes files,"
                    " or loads code (put such code in a reference file: 'reference: {file: ..., call: ...}')"
                )
        elif isinstance(node, ast.keyword) and node.arg is None:
            raise ReferenceSyntaxError("'**' is not allowed in a reference expression")
        elif not isinstance(node, _ALLOWED_NODES):
            raise ReferenceSyntaxError(f"{type(node).__name__} is not allowed in a reference expression")
    return tree


_ALLOWED_NODES = (
    ast.Expression,
    ast.Constant,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
    ast.Call,
    ast.keyword,
    ast.Subscript,
    ast.Slice,
    ast.Tuple,
    ast.List,
    ast.Load,
    ast.And,
    ast.Or,
    *_BINOPS,
    *_UNARY,
    *_COMPARE,
)


def _allowed_module(module: ModuleType) -> bool:
    name = module.__name__
    return name == "math" or name == "torch" or name.startswith("torch.")


def evaluate(tree: ast.Expression, scope: Mapping[str, Any]) -> Any:
    """Walk a parsed reference over ``scope`` (values plus torch, F, math)."""
    env = dict(scope)
    for name in SAFE_BUILTINS:
        env.setdefault(name, getattr(builtins, name))

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            name = node.id[4:] if node.id.startswith("_kw_") else node.id
            return env[name]
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](walk(node.operand))
        if isinstance(node, ast.BoolOp):
            is_and = isinstance(node.op, ast.And)
            value = walk(node.values[0])
            for sub in node.values[1:]:
                if bool(value) != is_and:
                    return value
                value = walk(sub)
            return value
        if isinstance(node, ast.Compare):
            left = walk(node.left)
            result: Any = True
            for op, comp in zip(node.ops, node.comparators):
                if type(op) not in _COMPARE:
                    raise ReferenceSyntaxError(f"{type(op).__name__} is not allowed")
                right = walk(comp)
                result = _COMPARE[type(op)](left, right)
                left = right
            return result
        if isinstance(node, ast.IfExp):
            return walk(node.body) if walk(node.test) else walk(node.orelse)
        if isinstance(node, ast.Attribute):
            value = getattr(walk(node.value), node.attr)
            if isinstance(value, ModuleType) and not _allowed_module(value):
                raise ReferenceSyntaxError(
                    f"attribute {node.attr!r} is the module {value.__name__!r}:"
                    " only torch and math are in reach"
                )
            return value
        if isinstance(node, ast.Call):
            func = walk(node.func)
            args = [walk(a) for a in node.args]
            kwargs = {k.arg: walk(k.value) for k in node.keywords if k.arg is not None}
            if len(kwargs) != len(node.keywords):
                raise ReferenceSyntaxError("'**' is not allowed in a reference expression")
            return func(*args, **kwargs)
        if isinstance(node, ast.Subscript):
            return walk(node.value)[walk(node.slice)]
        if isinstance(node, ast.Slice):
            return slice(
                walk(node.lower) if node.lower else None,
                walk(node.upper) if node.upper else None,
                walk(node.step) if node.step else None,
            )
        if isinstance(node, ast.Tuple):
            return tuple(walk(e) for e in node.elts)
        if isinstance(node, ast.List):
            return [walk(e) for e in node.elts]
        raise ReferenceSyntaxError(f"{type(node).__name__} is not allowed")

    return walk(tree.body)
