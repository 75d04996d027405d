"""The ``inputs:`` and ``params:`` sections: each tensor's shape, dtype, bounds and gradient.

A shape entry is a number or arithmetic over dims and numeric options; an integer input takes
``low``/``high``, and may be a seeded ``permutation`` along an axis; an input written as an
expression is derived from the tensors above it (and never checked).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..expressions import Expression, ExpressionError, evaluate_number, parse
from ..names import IDENT_RE, did_you_mean
from ..reach import GLOBALS
from .model import INPUT_DTYPES, TensorSpec, finite, shown
from .where import Where

INPUT_KEYS = ("shape", "dtype", "low", "high", "grad", "min_abs", "permutation")
# Names and commas only: a shape without its brackets, never a derived input (as the schema says).
_BARE_NAMES = re.compile(r"\s*[A-Za-z_]\w*(\s*,\s*[A-Za-z_]\w*)*\s*")


def numeric_names(known_dims: Mapping[str, int], opts: Mapping[str, Any]) -> dict[str, int | float]:
    """Names arithmetic may use, with values to try an expression on (dims as they are, options 1)."""
    numbers = {k: 1 for k, v in opts.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {**numbers, **known_dims}


def size(value: Any, key: str, numeric: Mapping[str, int | float], at: Where) -> Expression | int | float:
    """A shape entry or a bound: a number, or arithmetic over dims and numeric options."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise at.fail(key, f"expected a number, a dim name or arithmetic on dims, got {value!r}")
    if not isinstance(value, str):
        return value
    try:
        expr = parse(value, numeric, arithmetic=True)
    except ExpressionError as exc:
        raise at.fail(key, f"{value!r}: {exc}") from None
    for word in sorted(expr.names):
        if word not in numeric:
            raise at.fail(key, f"unknown dim {word!r}{did_you_mean(word, numeric)} in {value!r}")
    try:
        evaluate_number(expr, numeric)
    except ExpressionError as exc:
        raise at.fail(key, f"{value!r}: {exc}") from None
    return expr


def tensor(name: str, raw: Any, kind: str, numeric: Mapping[str, int | float], at: Where) -> TensorSpec:
    """One input or param: a shape, or a mapping with shape, dtype, bounds, grad, min_abs."""
    key = f"{kind}s.{name}"
    fields = at.mapping(raw, key, INPUT_KEYS) if isinstance(raw, dict) else {"shape": raw}
    if "shape" not in fields and isinstance(fields.get("permutation"), str):
        fields = {**fields, "shape": [fields["permutation"]]}  # {permutation: n}: one permutation of n
    if "shape" not in fields:
        raise at.fail(key, "missing 'shape'")
    shape_raw = fields["shape"]
    if not isinstance(shape_raw, (list, tuple)):
        raise at.fail(key, f"a shape is a list like [batch, in], got {shape_raw!r}")
    shape = tuple(size(e, key, numeric, at) for e in shape_raw)
    dtype = fields.get("dtype", "float")
    if dtype in ("float32", "float64"):
        dtype = "float"
    if dtype not in INPUT_DTYPES:
        raise at.fail(f"{key}.dtype", f"dtype must be one of {', '.join(INPUT_DTYPES)}, got {dtype!r}")
    if kind == "param" and dtype != "float":
        raise at.fail(f"{key}.dtype", "params are float tensors")
    grad = fields.get("grad", dtype == "float")
    if not isinstance(grad, bool):
        raise at.fail(f"{key}.grad", f"expected true or false, got {grad!r}")
    if grad and dtype != "float":
        raise at.fail(f"{key}.grad", f"an {dtype} tensor has no gradient; set grad: false")
    if kind == "param" and not grad:
        raise at.fail(f"{key}.grad", "params are always checked; make it an input")
    low = size(fields["low"], f"{key}.low", numeric, at) if "low" in fields else None
    high = size(fields["high"], f"{key}.high", numeric, at) if "high" in fields else None
    axis = _permutation(fields, shape, dtype, key, at) if "permutation" in fields else None
    if dtype in ("int64", "int32") and axis is None and (low is None or high is None):
        raise at.fail(key, "an integer input needs 'low' and 'high' (high excluded), or 'permutation: DIM'")
    min_abs = fields.get("min_abs")
    if min_abs is not None and (not finite(min_abs) or min_abs < 0):
        raise at.fail(f"{key}.min_abs", f"expected a non-negative number, got {shown(min_abs)}")
    return TensorSpec(
        name=name,
        kind=kind,
        shape=shape,  # type: ignore[arg-type]  # float entries are checked whole when drawn
        dtype=dtype,
        low=low,
        high=high,
        grad=grad,
        min_abs=float(min_abs) if min_abs is not None else None,
        line=at.lines.get(key) if at.lines else None,
        permutation=axis,
    )


def _permutation(
    fields: Mapping[str, Any], shape: tuple[Expression | int | float, ...], dtype: str, key: str, at: Where
) -> int:
    """``permutation: DIM`` (or an axis number): the axis each slice is a permutation along."""
    where = f"{key}.permutation"
    if dtype not in ("int64", "int32"):
        raise at.fail(where, f"a permutation is an int64 or int32 input, not {dtype}")
    if "low" in fields or "high" in fields:
        raise at.fail(where, "a permutation's values are 0..size-1: drop 'low' and 'high'")
    raw = fields["permutation"]
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not -len(shape) <= raw < len(shape):
            raise at.fail(where, f"axis {raw} is not an axis of a {len(shape)}-dim shape")
        return raw % len(shape)
    names = [e.bare_name if isinstance(e, Expression) else None for e in shape]
    if not isinstance(raw, str) or raw not in names:
        shown = [n for n in names if n]
        raise at.fail(
            where,
            f"expected a dim of the shape{did_you_mean(str(raw), shown)} or an axis number, got {raw!r}",
        )
    if names.count(raw) > 1:
        raise at.fail(where, f"{raw!r} is more than one axis of the shape: give the axis number")
    return names.index(raw)


def derived(name: str, raw: str, earlier: Iterable[str], names: Iterable[str], at: Where) -> TensorSpec:
    """An input given as an expression over earlier tensors (``inverse: "perm.argsort(-1)"``).

    Its value is computed from theirs when the case's tensors are drawn; it is handed to
    the code and the reference like any input, and it is not checked (no gradient).
    """
    key = f"inputs.{name}"
    if _BARE_NAMES.fullmatch(raw):  # "batch, in", "perm": names, not an expression
        raise at.fail(
            key,
            f"a shape is a list like [batch, in], got {raw!r} (an input written as an expression is"
            " derived from the tensors above it by an operator, a call or an index)",
        )
    known = set(earlier) | set(names)
    try:
        expr = parse(raw, known, known=known)
    except ExpressionError as exc:
        raise at.fail(
            key, f"{raw!r}: {exc} (a derived input reads dims, options and the tensors above it)"
        ) from None
    if not expr.names & set(earlier):  # "batch, in": a shape written without its brackets
        raise at.fail(
            key,
            f"a shape is a list like [batch, in], got {raw!r} (an input written as an expression is"
            " derived from the tensors above it, and this one reads none)",
        )
    return TensorSpec(
        name=name,
        kind="input",
        shape=(),
        grad=False,
        line=at.lines.get(key) if at.lines else None,
        derived=expr,
    )


def tensors(
    top: Mapping[str, Any], known_dims: Mapping[str, int], opts: Mapping[str, Any], at: Where
) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
    """``inputs`` and ``params``; at least one of them is checked."""
    numeric = numeric_names(known_dims, opts)
    groups: dict[str, dict[str, TensorSpec]] = {"inputs": {}, "params": {}}
    seen: set[str] = set()
    for group, kind in (("inputs", "input"), ("params", "param")):
        for name, raw in at.mapping(top.get(group), group).items():
            key = f"{group}.{name}"
            if not IDENT_RE.match(name):
                raise at.fail(key, "a tensor name must be an identifier")
            if name in seen or name in known_dims or name in opts:
                raise at.fail(key, f"name {name!r} is used twice")
            if name in GLOBALS:
                raise at.fail(key, f"name {name!r} is reserved in reference expressions")
            if isinstance(raw, str) and group == "inputs":
                earlier = set(groups["inputs"]) | set(groups["params"])
                groups[group][name] = derived(name, raw, earlier, set(known_dims) | set(opts), at)
            else:
                groups[group][name] = tensor(name, raw, kind, numeric, at)
            seen.add(name)
    if not any(t.grad for g in groups.values() for t in g.values()):
        raise at.fail("inputs", "nothing to check: give at least one float input or param")
    return groups["inputs"], groups["params"]
