"""The ``implementation:`` section: where the hand-written code is and its convention.

The convention is decided here, once, from the keys given:
``autograd_function`` (called through ``.apply``), ``step`` (a training
step: gradients read from the update of each param), ``numpy`` (``backend:
numpy``), ``class`` (``class:`` builds an instance), ``fastai`` (a
backward without ``->``: gradients on ``.g``), else ``functional`` (the
backward returns the gradients).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..calls import Call
from ..expressions import BUILTINS, Expression, ExpressionError, parse
from ..names import did_you_mean
from ..reach import GLOBALS
from .model import BACKENDS, Implementation, TensorSpec, finite, grad_names
from .sections import code_source
from .tensors import size
from .where import Where, check_names

KEY = "implementation"
IMPLEMENTATION_KEYS = (
    "module",
    "file",
    "cells",
    "forward",
    "backward",
    "class",
    "set",
    "grads",
    "step",
    "learning_rate",
    "autograd_function",
    "args",
    "backend",
)
_ATTRIBUTE_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def convention_of(
    autograd_function: str | None,
    backend: str,
    cls: Call | None,
    backward: Call | None,
    step: Call | None = None,
) -> str:
    if autograd_function:
        return "autograd_function"
    if step is not None:
        return "step"
    if backend == "numpy":
        return "numpy"
    if cls is not None:
        return "class"
    if backward is not None and backward.returns is None:
        return "fastai"
    return "functional"


def implementation(
    raw: Any,
    tensors: Mapping[str, TensorSpec],
    names: set[str],
    outputs: tuple[str, ...],
    at: Where,
    numeric: Mapping[str, int | float] | None = None,
) -> Implementation:
    impl = at.mapping(raw, KEY, IMPLEMENTATION_KEYS)
    source = code_source(impl, KEY, at)
    backend = impl.get("backend", "torch")
    if backend not in BACKENDS:
        raise at.fail(f"{KEY}.backend", f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    cls = _class(impl, names, at)
    forward = _forward(impl, tensors, names, cls, at)
    backward = at.call(impl["backward"], f"{KEY}.backward", names) if "backward" in impl else None
    if "autograd_function" in impl:
        name, args = _autograd_function(impl, tensors, names, forward, backward, cls, backend, at)
        return Implementation(
            source=source, convention="autograd_function", autograd_function=name, args=args, backend=backend
        )
    if "args" in impl:
        raise at.fail(f"{KEY}.args", "'args' goes with 'autograd_function'")
    set_attributes = _set(impl, names, cls, at)
    if "step" in impl:
        step, learning_rate = _step(impl, tensors, names, backward, numeric or {}, at)
        return Implementation(
            source=source,
            convention="step",
            forward=forward,
            cls=cls,
            backend=backend,
            set_attributes=set_attributes,
            step=step,
            learning_rate=learning_rate,
        )
    if "learning_rate" in impl:
        raise at.fail(f"{KEY}.learning_rate", "'learning_rate' goes with 'step'")
    if backward is None:
        raise at.fail(KEY, "missing 'backward:' (or 'step:', or 'autograd_function:')")
    bound = set(forward.named_returns) if forward is not None else set()
    known = names | set(grad_names(outputs)) | bound
    _upstream_names(backward, known, bound, outputs, at)
    check_names(backward, known, f"{KEY}.backward", at)
    grad_attributes = _grads(impl, tensors, backward, cls, at)
    _backward_returns(backward, tensors, backend, grad_attributes, cls is not None, at)
    return Implementation(
        source=source,
        convention=convention_of(None, backend, cls, backward),
        forward=forward,
        backward=backward,
        cls=cls,
        backend=backend,
        set_attributes=set_attributes,
        grad_attributes=grad_attributes,
    )


def _class(impl: Mapping[str, Any], names: set[str], at: Where) -> Call | None:
    if "class" not in impl:
        return None
    cls = at.call(impl["class"], f"{KEY}.class", names)
    if cls.returns is not None:
        raise at.fail(f"{KEY}.class", "a class call takes no '->'")
    check_names(cls, names, f"{KEY}.class", at)
    return cls


def _forward(
    impl: Mapping[str, Any], tensors: Mapping[str, TensorSpec], names: set[str], cls: Call | None, at: Where
) -> Call | None:
    if "forward" not in impl:
        return None
    forward = at.call(impl["forward"], f"{KEY}.forward", names)
    check_names(forward, names, f"{KEY}.forward", at)
    if forward.returns is None:
        raise at.fail(f"{KEY}.forward", "a forward names what it returns: 'f(x) -> out'")
    if cls is None and any(r.startswith("self.") for r in forward.returns):
        raise at.fail(
            f"{KEY}.forward", "a 'self.NAME' slot reads an attribute of the instance 'class:' builds"
        )
    clash = set(forward.named_returns) & set(tensors)
    if clash:
        raise at.fail(f"{KEY}.forward", f"return name {sorted(clash)[0]!r} is already an input or param")
    return forward


def _set(impl: Mapping[str, Any], names: set[str], cls: Call | None, at: Where) -> dict[str, Expression]:
    """``set: {weights: w}``: attributes of the instance overwritten with gradcheck's tensors."""
    key = f"{KEY}.set"
    raw = at.mapping(impl.get("set"), key)
    if raw and cls is None:
        raise at.fail(key, "'set' puts tensors on the instance that 'class:' builds")
    found: dict[str, Expression] = {}
    for attribute, value in raw.items():
        if not _ATTRIBUTE_PATH.fullmatch(attribute) or attribute.startswith("self."):
            raise at.fail(f"{key}.{attribute}", "expected an attribute of the instance, such as 'weights'")
        if not isinstance(value, str):
            raise at.fail(f"{key}.{attribute}", f"expected a tensor name (or an expression), got {value!r}")
        try:
            found[attribute] = parse(value, names, known=names)
        except ExpressionError as exc:
            raise at.fail(f"{key}.{attribute}", f"{value!r}: {exc}") from None
    return found


def _grads(
    impl: Mapping[str, Any], tensors: Mapping[str, TensorSpec], backward: Call, cls: Call | None, at: Where
) -> dict[str, str]:
    """``grads: {x: self.dinputs}``: where each gradient is read after the backward."""
    key = f"{KEY}.grads"
    raw = at.mapping(impl.get("grads"), key)
    if raw and cls is None:
        raise at.fail(key, "'grads' reads attributes of the instance that 'class:' builds")
    checked = [t.name for t in tensors.values() if t.grad]
    found: dict[str, str] = {}
    for name, where in raw.items():
        if name not in checked:
            what = (
                "has grad: false"
                if name in tensors
                else f"is not a checked tensor{did_you_mean(name, checked)}"
            )
            raise at.fail(f"{key}.{name}", f"{name!r} {what}")
        if (
            not isinstance(where, str)
            or not where.startswith("self.")
            or not _ATTRIBUTE_PATH.fullmatch(where)
        ):
            raise at.fail(f"{key}.{name}", f"expected an attribute of the instance, such as 'self.d{name}'")
        if name in (backward.returns or ()):
            raise at.fail(
                f"{key}.{name}", f"{name!r} is also a return slot of the backward: read it from one place"
            )
        found[name] = where.removeprefix("self.")
    return found


def _step(
    impl: Mapping[str, Any],
    tensors: Mapping[str, TensorSpec],
    names: set[str],
    backward: Call | None,
    numeric: Mapping[str, int | float],
    at: Where,
) -> tuple[Call, Expression | float]:
    """``step: "train(x, t)"`` and ``learning_rate:``: only params are checked, from their update."""
    key = f"{KEY}.step"
    if backward is not None:
        raise at.fail(key, "a step runs the backward and the update itself: drop 'backward:'")
    if "grads" in impl:
        raise at.fail(f"{KEY}.grads", "under 'step:' each param's gradient is read from its update")
    step = at.call(impl["step"], key, names)
    check_names(step, names, key, at)
    if step.returns is not None:
        raise at.fail(key, "a step updates the params in place; it takes no '->'")
    for t in tensors.values():
        if t.kind == "input" and t.grad:
            raise at.fail(
                t.key,
                f"a step updates only the params, so it says nothing of {t.name}'s gradient:"
                " give the input 'grad: false'",
            )
    if "learning_rate" not in impl:
        raise at.fail(key, "a step needs 'learning_rate:' (a number, a dim or an option) to read gradients")
    learning_rate = size(impl["learning_rate"], f"{KEY}.learning_rate", numeric, at)
    if not isinstance(learning_rate, Expression) and learning_rate == 0:
        raise at.fail(f"{KEY}.learning_rate", "a learning rate of 0 updates nothing")
    if not isinstance(learning_rate, Expression) and not finite(learning_rate):
        raise at.fail(f"{KEY}.learning_rate", "expected a finite number (a float holds it)")
    return step, learning_rate


def _autograd_function(
    impl: Mapping[str, Any],
    tensors: Mapping[str, TensorSpec],
    names: set[str],
    forward: Call | None,
    backward: Call | None,
    cls: Call | None,
    backend: str,
    at: Where,
) -> tuple[str, tuple[Expression, ...]]:
    name = at.string(impl["autograd_function"], f"{KEY}.autograd_function")
    given = [
        k for k in ("forward", "backward", "class", "set", "grads", "step", "learning_rate") if k in impl
    ]
    if given:
        raise at.fail(
            f"{KEY}.autograd_function",
            f"an autograd_function is called through .apply: drop {'/'.join(given)}",
        )
    if backend != "torch":
        raise at.fail(f"{KEY}.backend", "an autograd_function works on torch tensors")
    args = impl["args"] if "args" in impl else list(tensors)
    if not isinstance(args, list):
        raise at.fail(f"{KEY}.args", "expected a list of expressions: [x, weight, F.relu, 0.5]")
    # A YAML number, boolean or null is that literal: `args: [x, -1]`.
    args = [repr(a) if a is None or isinstance(a, (bool, int, float)) else a for a in args]
    if not all(isinstance(a, str) for a in args):
        raise at.fail(f"{KEY}.args", "expected a list of expressions: [x, weight, F.relu, 0.5]")
    parsed = []
    for a in args:
        try:
            expr = parse(a, names)
        except ExpressionError as exc:
            raise at.fail(f"{KEY}.args", f"{a!r}: {exc}") from None
        for unknown in sorted(expr.names - names - set(GLOBALS) - set(BUILTINS)):
            raise at.fail(f"{KEY}.args", f"unknown name {unknown!r}{did_you_mean(unknown, names)}")
        parsed.append(expr)
    return name, tuple(parsed)


def _upstream_names(
    backward: Call, known: set[str], bound: set[str], outputs: tuple[str, ...], at: Where
) -> None:
    """An unknown ``dh``/``grad_h`` in the backward is an upstream gradient under another name: say how."""
    for name in backward.arg_names:
        found = re.fullmatch(r"(?:d|grad_)([A-Za-z_]\w*)", name)
        if name in known or name in GLOBALS or name in BUILTINS or found is None:
            continue
        output = found.group(1)
        if len(outputs) == 1:
            fix = (
                f"if it is the upstream gradient, call it 'dout' (or 'grad_out'),"
                f" or declare 'outputs: [{output}]' to name it {name!r}"
            )
        else:
            each = ", ".join(f"d{o}" for o in outputs)
            fix = f"with several outputs each upstream gradient is named after its output ({each})"
        near = "" if output in bound else did_you_mean(name, known)
        raise at.fail(
            f"{KEY}.backward", f"{backward.func}() is handed {name!r}, which is not a known name{near}; {fix}"
        )


def _backward_returns(
    backward: Call,
    tensors: Mapping[str, TensorSpec],
    backend: str,
    grad_attributes: Mapping[str, str],
    has_class: bool,
    at: Where,
) -> None:
    key = f"{KEY}.backward"
    checked = [t.name for t in tensors.values() if t.grad]
    if backward.returns is None:
        if backend == "numpy":
            unread = [name for name in checked if name not in grad_attributes]
            if unread:
                also = f" (or read them off the instance: 'grads: {{{unread[0]}: self.d{unread[0]}}}')"
                raise at.fail(
                    key,
                    "numpy arrays cannot carry a .g attribute: name the gradients with '-> x, w, ...'"
                    + (also if has_class else ""),
                )
        return
    for r in backward.returns:
        if r.startswith("self."):
            raise at.fail(
                key,
                f"a backward's return slots are named after tensors; to read a gradient from {r},"
                f" say so in 'grads:' (grads: {{x: {r}}})",
            )
    for r in backward.named_returns:
        if r not in tensors:
            raise at.fail(
                key,
                f"return slot {r!r} is not a checked tensor{did_you_mean(r, checked)};"
                " name each slot after the tensor it is the gradient of, or '_'",
            )
        if not tensors[r].grad:
            raise at.fail(key, f"{r!r} has grad: false, so it has no gradient to return")
