"""The work an expression may make Python do, bounded: refused before it runs, not a hang.

Integers past :data:`MAX_INT_BITS` bits (``**``, ``math.factorial``, ``comb``, ``perm``,
``prod``), sequences and ranges past :data:`MAX_ITEMS` items, ``%`` formatting of text. The
evaluator (:mod:`.expressions`) calls :func:`binop` for every operator, takes its builtins from
:func:`safe_builtins` and calls math's unbounded functions through :data:`BOUNDED_MATH`.
"""

from __future__ import annotations

import ast
import builtins
import math
from collections.abc import Callable, Iterable
from typing import Any

MAX_INT_BITS = 4096
MAX_ITEMS = 1_000_000


class ExpressionError(ValueError):
    """An expression that is not allowed, or cannot be evaluated within bounds."""


def _bounded_len(value: Any) -> Any:
    if hasattr(value, "__len__") and len(value) > MAX_ITEMS:
        raise ExpressionError(f"a sequence of {len(value)} items is too long (at most {MAX_ITEMS})")
    return value


def _bounded_range(*args: Any) -> range:
    numbers = range(*args)
    try:
        _bounded_len(numbers)
    except OverflowError:  # more items than a C length holds
        raise ExpressionError(f"{numbers} is too long (at most {MAX_ITEMS} items)") from None
    return numbers


def safe_builtins(names: Iterable[str]) -> dict[str, Any]:
    """The builtins ``names``, with bounded stand-ins for ``list``, ``tuple`` and ``range``."""
    found = {name: getattr(builtins, name) for name in names}
    found["list"] = lambda *a: list(_bounded_len(a[0])) if a else []
    found["tuple"] = lambda *a: tuple(_bounded_len(a[0])) if a else ()
    found["range"] = _bounded_range
    return found


def _too_large(what: str) -> ExpressionError:
    return ExpressionError(f"{what} is too large a number (at most {MAX_INT_BITS} bits)")


def _factorial(n: Any) -> Any:
    if is_int(n) and n > 1000:  # 1000! has 8530 bits
        raise _too_large(f"math.factorial({n})")
    return math.factorial(n)


def _choose(name: str) -> Callable[..., Any]:
    """math.comb / math.perm, refused when the result's bits (at most k * bits(n)) are too many."""
    real = getattr(math, name)

    def bounded(n: Any, k: Any = None) -> Any:
        if is_int(n) and n > 0:
            taken = n if k is None else k
            if name == "comb" and is_int(taken):
                taken = min(taken, n - taken)
            if is_int(taken) and taken > 0 and taken * n.bit_length() > 2 * MAX_INT_BITS:
                raise _too_large(f"math.{name}({n})" if k is None else f"math.{name}({n}, {k})")
        return real(n) if k is None else real(n, k)

    return bounded


def _prod(iterable: Any, *, start: Any = 1) -> Any:
    result = start
    for item in _bounded_len(iterable):
        result = result * item
        if is_int(result) and result.bit_length() > MAX_INT_BITS:
            raise _too_large("math.prod(...)")
    return result


# math's functions whose integer work grows without bound, by what stands in for them.
BOUNDED_MATH: dict[Any, Callable[..., Any]] = {
    math.factorial: _factorial,
    math.comb: _choose("comb"),
    math.perm: _choose("perm"),
    math.prod: _prod,
}


def binop(op: ast.operator, apply: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    """``apply(left, right)`` for the operator ``op``, refused before it runs when its result
    would be too large (``**``, a repeated sequence, text formatted with ``%``)."""
    if isinstance(op, ast.Pow) and is_int(left) and is_int(right) and right > 0 and abs(left) > 1:
        if right * left.bit_length() > MAX_INT_BITS:
            raise ExpressionError(f"{left} ** {right} is too large a number")
    if isinstance(op, ast.Mod) and isinstance(left, (str, bytes)):
        raise ExpressionError("'%' formatting of text is not allowed in an expression")
    if isinstance(op, ast.Mult):
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and is_int(times) and len(seq) * times > MAX_ITEMS:
                raise ExpressionError("a repeated sequence would be too long")
    try:
        result = apply(left, right)
    except ZeroDivisionError:
        raise ExpressionError("division by zero") from None
    except OverflowError:
        raise ExpressionError("a number overflowed") from None
    if is_int(result) and result.bit_length() > MAX_INT_BITS:
        raise ExpressionError("too large a number")
    return result


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
