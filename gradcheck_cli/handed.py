"""What the checked code is handed, and what it gives back.

A :class:`Handed` holds copies of the tensors (numpy arrays with ``backend: numpy``),
the scope the spec's calls read their arguments from, the instance ``class:`` built,
and the :class:`Outcome` the conventions fill in. The steps here are the ones every
convention shares: build the instance, run the forward and bind its returns, read the
gradients from the backward's returns or off the instance.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .calls import Call, bind
from .expressions import evaluate
from .names import did_you_mean
from .spec import Spec
from .usercode import lookup, user_code, walk_attrs

MISSING = object()  # a gradient that was never given (no .g, or a None slot)


class ConventionError(Exception):
    """The checked code broke the calling convention (wrong count of returns...)."""


@dataclass
class Outcome:
    """What the checked code produced: outputs, gradients, what it modified."""

    outputs: dict[str, Any] = field(default_factory=dict)
    grads: dict[str, Any] = field(default_factory=dict)
    modified: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)  # tensor name -> what is wrong with its slot
    updated: list[str] = field(default_factory=list)  # params a step: is meant to change in place
    notes: list[str] = field(default_factory=list)  # said in the result (a dtype taken back, a failed import)
    # autograd_function: the gradients of a second backward on the same graph, or what it raised.
    repeated: dict[str, Any] | None = None
    repeat_error: str | None = None


@dataclass
class Handed:
    """What the checked code is handed (copies), the scope its calls read, what it gave back."""

    spec: Spec
    namespace: Mapping[str, Any]
    tensors: dict[str, Any]  # copies of the inputs and params (numpy arrays with backend: numpy)
    grad_outs: dict[str, Any]  # copies of the upstream gradients, by output
    scope: dict[str, Any]
    outcome: Outcome = field(default_factory=Outcome)
    target: Any = None  # the instance built by `class:`, or None for module functions

    def resolve(self, call: Call, key: str) -> Callable[..., Any]:
        """The function a call names: in the module, or a method of the instance."""
        if self.target is None:
            func = lookup(self.namespace, call.func, self.spec, key)
        elif call.func == "__call__":
            func = self.target
        else:
            head, *rest = call.func.split(".")
            if not hasattr(self.target, head):
                methods = [m for m in dir(self.target) if not m.startswith("_")]
                raise self.spec.error(
                    f"{type(self.target).__name__} has no method {head!r}{did_you_mean(head, methods)}", key
                )
            func = walk_attrs(getattr(self.target, head), rest, call.func, self.spec, key)
        if not callable(func):
            raise self.spec.error(f"{call.func!r} is not callable", key)
        return func  # type: ignore[no-any-return]

    def label(self, call: Call) -> str:
        """How a message names the call: ``lin_grad()``, ``Model.backward()``, ``Model()``."""
        if self.target is None:
            return f"{call.func}()"
        cls = type(self.target).__name__
        return f"{cls}()" if call.func == "__call__" else f"{cls}.{call.func}()"

    def invoke(self, stage: str, call: Call, key: str) -> Any:
        """Call the user's function with the call's arguments evaluated in the scope."""
        func = self.resolve(call, key)
        args, kwargs = bind(call, self.scope)
        with user_code(f"{stage} {self.label(call)}"):
            return func(*args, **kwargs)


def scalar_outputs(h: Handed) -> bool:
    """Every output of the reference is a scalar (a loss): its upstream gradient is 1."""
    return all(getattr(g, "ndim", None) == 0 for g in h.grad_outs.values())


def construct(h: Handed) -> None:
    """Build the instance ``class:`` names, then ``set:`` each attribute to one of gradcheck's tensors."""
    impl = h.spec.implementation
    assert impl.cls is not None
    h.target = h.invoke("class", impl.cls, "implementation.class")
    cls = type(h.target).__name__
    for path, expr in impl.set_attributes.items():
        key = f"implementation.set.{path}"
        *parents, attribute = path.split(".")
        owner = walk_attrs(h.target, parents, path, h.spec, key)
        if not hasattr(owner, attribute):
            known = list(vars(owner)) if hasattr(owner, "__dict__") else []
            raise h.spec.error(
                f"{cls}() made no attribute {path!r} to set{did_you_mean(attribute, known)}"
                f" (its attributes: {', '.join(known) or 'none'})",
                key,
            )
        value = evaluate(expr, h.scope)
        made = getattr(owner, attribute)
        if hasattr(made, "shape") and hasattr(value, "shape") and tuple(made.shape) != tuple(value.shape):
            raise h.spec.error(
                f"{cls}() made {path} of shape {list(made.shape)}, but {expr} is {list(value.shape)}:"
                " the layouts differ (transpose the spec's shape, or set another attribute)",
                key,
            )
        setattr(owner, attribute, value)


def param_now(h: Handed, name: str) -> Any:
    """A param as the instance holds it now: where ``set:`` put it, else the tensor handed over."""
    path = set_as(h, name)
    if path is None:
        return h.tensors[name]
    return walk_attrs(h.target, path.split("."), path, h.spec, f"implementation.set.{path}")


def set_as(h: Handed, name: str) -> str | None:
    """The attribute ``set:`` put this tensor on, if any."""
    for path, expr in h.spec.implementation.set_attributes.items():
        if expr.bare_name == name:
            return path
    return None


def attribute_gradients(h: Handed, backward: Call) -> None:
    """``grads: {x: self.dinputs}``: read each gradient off the instance after the backward."""
    for name, path in h.spec.implementation.grad_attributes.items():
        value: Any = h.target
        for attribute in path.split("."):
            value = getattr(value, attribute, MISSING)
            if value is MISSING:
                break
        h.outcome.grads[name] = MISSING if value is None else value
        if value is MISSING or value is None:
            what = "did not set" if value is MISSING else "left None in"
            h.outcome.problems[name] = f"{h.label(backward)} {what} self.{path}"


def backward_call(h: Handed) -> Call:
    backward = h.spec.implementation.backward
    assert backward is not None
    return backward


def call_forward(h: Handed) -> dict[str, str]:
    """Run the forward, if there is one; bind its returns in the scope.

    Returns which name in the scope holds each output (the forward's return slot for it).
    """
    fwd = h.spec.implementation.forward
    if fwd is None:
        return {}
    bound = unpack(fwd, h.invoke("forward", fwd, "implementation.forward"))
    for slot in fwd.returns or ():
        if slot.startswith("self."):
            bound[slot] = getattr(h.target, slot.removeprefix("self."), MISSING)
            if bound[slot] is MISSING:
                raise ConventionError(f"{h.label(fwd)} did not set {slot}")
    h.scope.update(bound)
    outputs = h.spec.outputs
    if any(o in bound for o in outputs):
        slots = {o: o for o in outputs if o in bound}
    else:  # outputs not named in the returns: the first slots are the outputs
        slots = dict(zip(outputs, fwd.named_returns[: len(outputs)], strict=False))
    h.outcome.outputs = {o: snapshot(bound[slot]) for o, slot in slots.items()}
    return slots


def returned_gradients(h: Handed, returned: Any) -> None:
    backward = backward_call(h)
    for name, value in unpack(backward, returned).items():
        h.outcome.grads[name] = MISSING if value is None else value
        if value is None:
            h.outcome.problems[name] = f"{backward.func}() returned None for {name}"
    for t in h.spec.checked:
        if t.name not in h.outcome.grads and t.name not in h.spec.implementation.grad_attributes:
            h.outcome.grads[t.name] = MISSING
            h.outcome.problems.setdefault(t.name, f"no return slot of {backward.func}() is named {t.name!r}")


def unpack(call: Call, returned: Any) -> dict[str, Any]:
    """Bind return slots to names; a single slot takes the value whole.

    ``self.NAME`` slots are not positions in what is returned (they are read off the
    instance); with no other slot, the returned value is not read.
    """
    assert call.returns is not None
    slots = tuple(s for s in call.returns if not s.startswith("self."))
    if not slots:
        return {}
    if len(slots) == 1:
        values = [returned]
    else:
        if not isinstance(returned, (tuple, list)):
            raise ConventionError(
                f"{call.func}() returned {kind_of(returned)},"
                f" expected {len(slots)} values ({', '.join(slots)})"
            )
        if len(returned) != len(slots):
            raise ConventionError(
                f"{call.func}() returned {len(returned)} values, expected {len(slots)} ({', '.join(slots)})"
            )
        values = list(returned)
    return {name: value for name, value in zip(slots, values) if name != "_"}


def kind_of(value: Any) -> str:
    return "None" if value is None else f"a {type(value).__name__}"


def handed_copy(value: torch.Tensor, numpy: bool) -> Any:
    """The checked code's own copy of a tensor: one copy, on the tensor's device (a numpy array:
    on the CPU, with no second copy on a GPU)."""
    if numpy:
        return value.detach().to("cpu", copy=True).numpy()
    return value.detach().clone()


def snapshot(value: Any) -> Any:
    """Copy a returned output now: a later backward must not change what is compared."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if hasattr(value, "copy") and hasattr(value, "__array__"):
        return value.copy()
    return value
