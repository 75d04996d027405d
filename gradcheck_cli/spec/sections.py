"""The sections of a spec, from YAML data: one small constructor each.

Each constructor takes the raw value of its section and a
:class:`~.where.Where` (the file and the line of every key), checks its own
invariants, and returns frozen model objects; ``loading.build_spec``
composes them (the implementation section has a module of its own). Every
error names the file, the line and the key. Nothing here imports user code
or evaluates a reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from ..expressions import Expression, ExpressionError, evaluate, parse
from ..names import IDENT_RE, NAME_RE, did_you_mean
from ..reach import GLOBALS
from .model import MAX_DIM, CodeSource, Expectation, Reference, ToleranceSpec, finite, grad_names, shown
from .where import Where, check_names

TOP_KEYS = (
    "name",
    "description",
    "dims",
    "options",
    "inputs",
    "params",
    "outputs",
    "reference",
    "implementation",
    "tolerance",
    "formulas",
    "constraints",
    "reference_grads",
    "double",
    "xfail",
    "skip",
    "timeout",
)
EXPECTATION_KEYS = ("reason", "dtype", "device")
REFERENCE_KEYS = ("module", "file", "cells", "call")
TOLERANCE_KEYS = ("mode", "atol", "rtol", "ratio")
# Names a spec may not take: gradcheck's own commands.
COMMANDS = ("list", "show", "run", "new")


# -- sections -------------------------------------------------------------------------


def header(top: Mapping[str, Any], at: Where) -> tuple[str, str]:
    """``name`` (also a command name) and ``description``."""
    name = at.string(top["name"], "name")
    if not NAME_RE.match(name):
        raise at.fail("name", f"{name!r} must match [a-z][a-z0-9_]*")
    if name in COMMANDS:
        raise at.fail("name", f"{name!r} is a gradcheck command; choose another name")
    description = top.get("description")
    if description is not None and not isinstance(description, str):
        raise at.fail("description", f"expected one line of text, got {shown(description)}")
    return name, (description or "").strip()


def _declared_name(name: str, key: str, kind: str, at: Where) -> None:
    if not IDENT_RE.match(name) or name in ("True", "False", "None"):
        raise at.fail(key, f"a {kind} name must be an identifier")
    if name in GLOBALS:
        raise at.fail(key, f"{name!r} is the {name} module in a reference; choose another name")


def dims(raw: Any, at: Where) -> dict[str, int]:
    """Named sizes: positive integers."""
    found: dict[str, int] = {}
    for dim, size in at.mapping(raw, "dims").items():
        _declared_name(dim, f"dims.{dim}", "dim", at)
        if isinstance(size, bool) or not isinstance(size, int):
            raise at.fail(f"dims.{dim}", f"must be a positive integer, got {size!r}")
        if size < 1:
            raise at.fail(f"dims.{dim}", f"size {dim} must be at least 1, got {size}")
        if size > MAX_DIM:
            raise at.fail(
                f"dims.{dim}", f"size {dim} is {shown(size)}: larger than any tensor can be (at most 2**40)"
            )
        found[dim] = size
    return found


def options(raw: Any, known_dims: Mapping[str, int], at: Where) -> dict[str, Any]:
    """Constants of any YAML type, usable by name."""
    found = dict(at.mapping(raw, "options"))
    for opt in found:
        _declared_name(opt, f"options.{opt}", "option", at)
        if opt in known_dims:
            raise at.fail(f"options.{opt}", f"{opt!r} is already a dim")
    return found


def outputs(raw: Any, tensor_names: Iterable[str], at: Where) -> tuple[str, ...]:
    """The names of the layer's outputs (``out`` by default)."""
    if raw is None:
        raw = ["out"]
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise at.fail("outputs", "expected a list of output names")
    found = tuple(at.string(o, "outputs") for o in raw)
    for o in found:
        # An output may share a dim's name (linear has dim `out` and output `out`):
        # in calls, names bound by the forward shadow dims and options.
        if not IDENT_RE.match(o) or o in tensor_names:
            raise at.fail("outputs", f"output name {o!r} must be an identifier that is not a tensor")
    return found


def reference(raw: Any, names: set[str], at: Where) -> Reference:
    """A PyTorch expression, ``{call:, module:|file:}``, or ``numerical`` (or no reference at all):
    finite differences of the hand-written forward, ``{numerical: {samples: N}}`` to say how many."""
    if raw is None or raw == "numerical":
        return Reference(numerical=True)
    if isinstance(raw, dict) and "numerical" in raw:
        found = at.mapping(raw, "reference", ("numerical",))
        settings = at.mapping(found["numerical"], "reference.numerical", ("samples",))
        samples = settings.get("samples")
        if samples == "all":
            samples = 0
        if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 0):
            raise at.fail(
                "reference.numerical.samples", f"expected a number of elements or 'all', got {samples!r}"
            )
        return Reference(numerical=True, samples=samples)
    if isinstance(raw, str):
        try:
            return Reference(expr=parse(raw, names, known=names))
        except ExpressionError as exc:
            raise at.fail("reference", str(exc)) from None
    ref = at.mapping(raw, "reference", REFERENCE_KEYS)
    if "call" not in ref:
        raise at.fail("reference", "a reference mapping needs 'call:' and 'module:' or 'file:'")
    call = at.call(ref["call"], "reference.call", names)
    check_names(call, names, "reference.call", at)
    return Reference(call=call, source=code_source(ref, "reference", at))


def code_source(raw: Mapping[str, Any], key: str, at: Where) -> CodeSource:
    """``module:`` or ``file:`` (a .py file or a .ipynb notebook), and a notebook's ``cells:``."""
    source = at.source(raw, key)
    if "cells" not in raw:
        return source
    cells = raw["cells"]
    if not source.is_notebook:
        raise at.fail(f"{key}.cells", "'cells' chooses cells of a notebook: it goes with 'file: NAME.ipynb'")
    if (
        not isinstance(cells, list)
        or not cells
        or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cells)
    ):
        raise at.fail(
            f"{key}.cells", f"expected a list of cell indices (0 is the notebook's first cell), got {cells!r}"
        )
    return replace(source, cells=tuple(cells))


def constraints(
    raw: Any, known_dims: Mapping[str, int], opts: Mapping[str, Any], at: Where
) -> tuple[Expression, ...]:
    """Comparisons over dims and numeric options that every run's sizes must meet.

    Each is checked on the spec's own dims here; other sizes are checked when a case is made.
    """
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise at.fail("constraints", f"expected a list of comparisons like 'h == w', got {raw!r}")
    numbers = {k: v for k, v in opts.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    scope: dict[str, int | float] = {**numbers, **known_dims}
    found = []
    for text in raw:
        try:
            expr = parse(text, scope, arithmetic=True)
        except ExpressionError as exc:
            raise at.fail("constraints", f"{text!r}: {exc}") from None
        for word in sorted(expr.names):
            if word not in scope:
                raise at.fail(
                    "constraints",
                    f"{text!r}: {word!r} is not a dim or a numeric option{did_you_mean(word, scope)}",
                )
        try:
            met = _truth(expr, scope)
        except ExpressionError as exc:
            raise at.fail("constraints", f"{text!r}: {exc}") from None
        if not met:
            values = ", ".join(f"{n}={scope[n]}" for n in sorted(expr.names, key=text.find))
            raise at.fail("constraints", f"the spec's own sizes break {text!r} ({values})")
        found.append(expr)
    return tuple(found)


def _truth(expr: Expression, scope: Mapping[str, int | float]) -> bool:
    value = evaluate(expr, scope)
    if not isinstance(value, bool):
        raise ExpressionError(f"is {value!r}: a constraint is a comparison, such as 'h == w'")
    return value


def reference_grads(
    raw: Any, checked: Iterable[str], names: set[str], outs: tuple[str, ...], at: Where
) -> dict[str, Expression]:
    """Expected gradients written directly: ``{x: "grad_out * (x >= bound)"}``.

    Each key is a checked tensor; each value an expression over the tensors, dims,
    options and the upstream gradients (``grad_out``/``dout``, ``grad_<output>``).
    """
    found = at.mapping(raw, "reference_grads")
    checked = list(checked)
    known = names | set(grad_names(outs))
    parsed: dict[str, Expression] = {}
    for name, text in found.items():
        key = f"reference_grads.{name}"
        if name not in checked:
            what = "a tensor with grad: false" if name in names else "not a checked tensor"
            raise at.fail(
                key, f"{name!r} is {what}{did_you_mean(name, checked)}; its gradient is not compared"
            )
        if not isinstance(text, str) or not text.strip():
            raise at.fail(key, f'expected an expression like "grad_out * (x > 0)", got {text!r}')
        try:
            parsed[name] = parse(text, known, known=known)
        except ExpressionError as exc:
            reads = f" (it reads tensors, dims, options and {', '.join(grad_names(outs))})"
            raise at.fail(key, f"{exc}{reads if 'unknown name' in str(exc) else ''}") from None
    return parsed


def double(raw: Any, convention: str, at: Where) -> bool:
    """``double: true``: check the double backward too (an autograd.Function's)."""
    if raw is None:
        return False
    if not isinstance(raw, bool):
        raise at.fail("double", f"expected true or false, got {raw!r}")
    if raw and convention != "autograd_function":
        raise at.fail(
            "double",
            f"a double backward is checked for an autograd_function; this implementation is {convention}",
        )
    return raw


def tolerance(raw: Any, at: Where) -> ToleranceSpec:
    """``{mode, atol, rtol, ratio}``: absolute or calibrated, and finite numbers >= 0."""
    from ..tolerance import MODES

    found = at.mapping(raw, "tolerance", TOLERANCE_KEYS)
    for k, v in found.items():
        if k == "mode":
            if v not in MODES:
                raise at.fail("tolerance.mode", f"unknown tolerance mode {v!r}; choose {' or '.join(MODES)}")
        elif not finite(v) or v < 0:
            raise at.fail(f"tolerance.{k}", f"expected a non-negative number, got {shown(v)}")
        elif k == "ratio" and v == 0:
            raise at.fail(
                "tolerance.ratio", "a ratio is a multiple of PyTorch's own error: greater than 0, got 0"
            )
    if found.get("mode") == "absolute" and "ratio" in found:
        raise at.fail("tolerance.ratio", "a ratio applies only to the calibrated mode, not to absolute")
    return ToleranceSpec(found.get("atol"), found.get("rtol"), found.get("mode"), found.get("ratio"))


def formulas(raw: Any, tensor_names: Iterable[str], outs: Iterable[str], at: Where) -> dict[str, str]:
    """Derivations printed by ``--explain``, one per tensor or output."""
    found = at.mapping(raw, "formulas")
    names = set(tensor_names) | set(outs)
    for k, v in found.items():
        if not isinstance(v, str):
            raise at.fail(f"formulas.{k}", "expected text")
        if k not in names:
            raise at.fail(f"formulas.{k}", f"{k!r} is neither a tensor nor an output")
    return {k: v.rstrip() for k, v in found.items()}


def expectation(raw: Any, key: str, at: Where) -> Expectation | None:
    """``xfail:``/``skip:``: a reason, or ``{reason, dtype: [...], device: [...]}``."""
    from ..settings import DTYPE_NAMES

    if raw is None:
        return None
    if isinstance(raw, str):
        return Expectation(at.string(raw, key))
    found = at.mapping(raw, key, EXPECTATION_KEYS)
    if "reason" not in found:
        raise at.fail(key, "give the reason: {reason: ..., dtype: [...], device: [...]}")
    lists: dict[str, tuple[str, ...] | None] = {}
    for sub, allowed in (("dtype", DTYPE_NAMES), ("device", ("cpu", "cuda"))):
        if sub not in found:
            lists[sub] = None
            continue
        value = found[sub]
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise at.fail(f"{key}.{sub}", f"expected a {sub} or a list of at least one, got {value!r}")
        for v in values:
            if v not in allowed and not (sub == "device" and re.fullmatch(r"cuda:\d+", v)):
                known = "cpu, cuda or cuda:N" if sub == "device" else ", ".join(allowed)
                raise at.fail(f"{key}.{sub}", f"unknown {sub} {v!r}{did_you_mean(v, allowed)}; use {known}")
        lists[sub] = tuple(values)
    return Expectation(at.string(found["reason"], f"{key}.reason"), lists["dtype"], lists["device"])


def timeout(raw: Any, at: Where) -> float | None:
    """``timeout: SECONDS``: how long this spec may run (a big layer needs more than the default)."""
    if raw is None:
        return None
    if not finite(raw) or raw <= 0:
        raise at.fail("timeout", f"expected a positive number of seconds, got {shown(raw)}")
    return float(raw)
