"""Running the user's code in the convention it is written in, on copies.

One function per convention (see docs/conventions.md), chosen from
``Implementation.convention``; the steps they share are in :mod:`gradcheck_cli.handed`:

- ``functional``: ``backward(grad_out, x, w) -> x, w`` returns the gradients;
- ``fastai``: ``out.g`` is set to the upstream gradient before a backward
  without ``->``, and each tensor's ``.g`` is read after it;
- ``class``: ``class: "Model(w1, b1)"`` builds an instance whose methods the
  forward and backward name (gradients returned, on ``.g``, or on attributes
  of the instance named by ``grads:``); ``set:`` puts tensors on it first;
- ``numpy``: ``backend: numpy`` hands numpy arrays and takes numpy arrays back;
- ``autograd_function``: ``MyFunction.apply(...)``, then autograd's backward;
- ``step``: ``step: "train(x, t)"`` runs a whole training step; each param's
  gradient is read from its update, ``(before - after) / learning_rate``.

The user's code gets clones; the pristine values are kept to detect (and
report) any in-place modification, and to keep the reference side untouched.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .compare import NotATensor, as_tensor, differentiable
from .expressions import evaluate, evaluate_number
from .handed import (
    MISSING,
    ConventionError,
    Handed,
    Outcome,
    attribute_gradients,
    backward_call,
    call_forward,
    construct,
    handed_copy,
    kind_of,
    param_now,
    returned_gradients,
    scalar_outputs,
    set_as,
    snapshot,
)
from .spec import Spec
from .usercode import UserCodeError, explain_name_error, load_namespace, lookup, source_notes, user_code


def run_implementation(
    spec: Spec,
    values: Mapping[str, torch.Tensor],
    grad_outs: Mapping[str, torch.Tensor],
    dims: Mapping[str, int],
) -> Outcome:
    """Run the hand-written forward/backward on copies of ``values``.

    ``values`` are the pristine inputs and params, ``grad_outs`` the upstream
    gradient per output: neither is ever handed to the user's code, which gets
    clones (numpy arrays with ``backend: numpy``) and a deep copy of the
    options. Raises :class:`UserCodeError` when the code raises,
    :class:`ConventionError` when it returns the wrong things.
    """
    impl = spec.implementation
    numpy = impl.backend == "numpy"
    tensors = {name: handed_copy(v, numpy) for name, v in values.items()}
    upstream = {out: handed_copy(g, numpy) for out, g in grad_outs.items()}
    scope: dict[str, Any] = {**copy.deepcopy(spec.options), **dims, **tensors}
    for alias, out in spec.grad_names().items():
        scope[alias] = upstream[out]
    namespace = load_namespace(impl.source, spec, "implementation")
    handed = Handed(spec, namespace, tensors, upstream, scope)
    try:
        CONVENTIONS[impl.convention](handed)
    except UserCodeError as exc:
        explain_name_error(exc, namespace)
        raise
    outcome = handed.outcome
    outcome.notes.extend(source_notes(impl.source))
    if spec.reference.source is not None and spec.reference.source != impl.source:
        outcome.notes.extend(source_notes(spec.reference.source))
    _take_back_numpy(outcome, values)
    for name, pristine in values.items():
        if name not in outcome.updated and not _same(pristine, tensors[name]):
            outcome.modified.append(name)
    for out, pristine in grad_outs.items():
        if not _same(pristine, upstream[out]):
            outcome.modified.append(f"grad_{out}")
    return outcome


# -- the conventions -----------------------------------------------------------------


def functional(h: Handed) -> None:
    """``forward(...) -> out`` (optional), then ``backward(...) -> x, w`` returns the gradients."""
    call_forward(h)
    returned_gradients(h, h.invoke("backward", backward_call(h), "implementation.backward"))
    attribute_gradients(h, backward_call(h))


def fastai(h: Handed) -> None:
    """``out.g`` set to the upstream gradient, ``backward(...)`` sets each tensor's ``.g``.

    The end of the chain, a loss gradient such as ``mse_grad(inp, targ)``, needs no
    forward: when the reference's output is a scalar its upstream gradient is 1, and
    nothing sets ``out.g``.
    """
    slots = call_forward(h)
    backward = backward_call(h)
    on_g = [t for t in h.spec.checked if t.name not in h.spec.implementation.grad_attributes]
    if not slots and on_g and not scalar_outputs(h):
        raise h.spec.error(
            "a backward without '->' reads the upstream gradient from out.g, but no forward"
            " returns the output to set it on: add 'forward: \"...(...) -> out\"'"
            " (a loss gradient needs none: its reference returns a scalar)",
            "implementation.backward",
        )
    for out, slot in slots.items():
        target = h.scope.get(slot)
        if isinstance(target, torch.Tensor):
            target.g = h.grad_outs[out]  # type: ignore[attr-defined]
    returned = h.invoke("backward", backward, "implementation.backward")
    attribute_gradients(h, backward)
    for t in on_g:
        grad = getattr(h.tensors[t.name], "g", None)
        h.outcome.grads[t.name] = MISSING if grad is None else grad
        if grad is None:
            problem = f"{backward.func}() did not set {t.name}.g"
            if returned is not None:
                names = ", ".join(c.name for c in h.spec.checked)
                problem += (
                    f"; it returned {kind_of(returned)}: if it returns the gradients,"
                    f" name them in the spec: '{backward.text} -> {names}'"
                )
            h.outcome.problems[t.name] = problem


def instance(h: Handed) -> None:
    """``class: "Model(w1, b1)"`` builds the instance and ``set:`` puts tensors on it; its
    methods follow fastai or functional, and ``grads:`` reads gradients off its attributes."""
    construct(h)
    if backward_call(h).returns is None:
        fastai(h)
    else:
        functional(h)


def numpy(h: Handed) -> None:
    """Like ``functional`` (or ``class``), on numpy arrays: the copies already are arrays."""
    if h.spec.implementation.cls is not None:
        instance(h)
    else:
        functional(h)


def autograd_function(h: Handed) -> None:
    """``Function.apply(*args)`` on leaves that require grad, then autograd's backward, twice.

    The backward runs a second time on the same graph (``retain_graph``), as
    ``torch.autograd.gradcheck``, a second ``backward()`` or a double backward
    would run it: what it gives then is ``outcome.repeated`` (or, when it raises,
    ``outcome.repeat_error``), compared with the first run by the checks.
    """
    spec, impl = h.spec, h.spec.implementation
    assert impl.args is not None
    name, total = apply_function(h)
    try:
        with user_code(f"backward {name}.backward()"):
            torch.autograd.backward(total, retain_graph=True)
    except UserCodeError as exc:
        name_gradient_index(exc, impl.args)
        raise
    leaves = [h.tensors[t.name] for t in spec.checked]
    for t in spec.checked:
        grad = h.tensors[t.name].grad
        # A copy: the second run must not change what the first one gave.
        h.outcome.grads[t.name] = MISSING if grad is None else grad.detach().clone()
        if grad is None:
            h.outcome.problems[t.name] = f"{name}.backward returned None for {t.name}"
    try:
        with user_code(f"{name}.backward(), run a second time on the same graph,"):
            again = torch.autograd.grad(total, leaves, allow_unused=True)
    except UserCodeError as exc:
        # torch's advice to turn on anomaly detection is not what this finding needs
        h.outcome.repeat_error = re.sub(r" Hint: enable anomaly detection.*?\)\.", "", str(exc))
    else:
        h.outcome.repeated = {t.name: MISSING if g is None else g for t, g in zip(spec.checked, again)}
    for t in spec.checked:
        h.tensors[t.name] = h.tensors[t.name].detach()


def apply_function(h: Handed) -> tuple[str, torch.Tensor]:
    """``Function.apply`` on the arguments, with the checked tensors as leaves that require grad.

    Returns the Function's name and ``sum(out * grad_out)`` over its differentiable
    outputs, whose gradient is the backward's result.
    """
    spec, impl = h.spec, h.spec.implementation
    assert impl.autograd_function is not None and impl.args is not None
    name = impl.autograd_function
    fn = lookup(h.namespace, name, spec, "implementation.autograd_function")
    if not hasattr(fn, "apply"):
        raise spec.error(
            f"{name!r} has no .apply: is it a torch.autograd.Function?", "implementation.autograd_function"
        )
    for t in spec.checked:
        h.tensors[t.name].requires_grad_(True)
    h.scope.update({t.name: h.tensors[t.name] for t in spec.checked})
    args = [evaluate(a, h.scope) for a in impl.args]
    with user_code(f"forward {name}.apply()"):
        result = fn.apply(*args)
    results = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(results) != len(spec.outputs):
        raise ConventionError(
            f"{name}.apply returned {len(results)} values,"
            f" expected {len(spec.outputs)} ({', '.join(spec.outputs)})"
        )
    h.outcome.outputs = {o: snapshot(r) for o, r in zip(spec.outputs, results, strict=True)}
    pairs = [
        (r, h.grad_outs[o])
        for o, r in zip(spec.outputs, results, strict=True)
        if isinstance(r, torch.Tensor) and r.requires_grad
    ]
    if not pairs:
        raise ConventionError(f"the output of {name}.apply does not require grad: is its backward reachable?")
    # sum(out * grad_out) has exactly grad_out as its gradient: the same vector-Jacobian
    # product as backward(outs, grad_tensors), without the sympy import torch makes to
    # check grad_tensors' shapes (~0.4 s).
    total = sum((r * g).sum() for r, g in pairs)
    assert isinstance(total, torch.Tensor)
    return name, total


def step(h: Handed) -> None:
    """``step: "train(x, t)"`` runs the forward, the backward and the update in place; each
    param's gradient is ``(before - after) / learning_rate``, the after read where ``set:``
    put it (else from the tensor handed over). The reference must be the loss it minimises."""
    spec, impl = h.spec, h.spec.implementation
    assert impl.step is not None and impl.learning_rate is not None
    if not scalar_outputs(h):
        raise spec.error(
            "a step's update is the gradient of the loss it minimises: the reference must return"
            " that loss, a scalar",
            "reference",
        )
    if impl.cls is not None:
        construct(h)
    call_forward(h)
    before = {t.name: as_tensor(param_now(h, t.name)).clone() for t in spec.checked}
    h.invoke("step", impl.step, "implementation.step")
    learning_rate = evaluate_number(impl.learning_rate, h.scope)
    if learning_rate == 0:
        raise spec.error("the learning rate is 0: the step updates nothing", "implementation.learning_rate")
    for t in spec.checked:
        h.outcome.updated.append(t.name)
        try:
            after = as_tensor(param_now(h, t.name))
        except NotATensor as exc:
            h.outcome.grads[t.name] = MISSING
            h.outcome.problems[t.name] = f"after {impl.step.func}(), {t.name} is {exc}, not a tensor"
            continue
        was = before[t.name]
        if after.shape != was.shape:
            h.outcome.grads[t.name] = MISSING
            h.outcome.problems[t.name] = (
                f"{impl.step.func}() changed the shape of {t.name}"
                f" from {list(was.shape)} to {list(after.shape)}"
            )
            continue
        if after.dtype == was.dtype and torch.equal(after, was) and not set_as(h, t.name):
            h.outcome.grads[t.name] = MISSING
            h.outcome.problems[t.name] = (
                f"{impl.step.func}() did not change {t.name}: update it in place, or put it on the"
                f" instance with 'set: {{{t.name}: {t.name}}}' so that gradcheck reads it back from there"
            )
            continue
        grad = (was.to(torch.float64) - after.to(torch.float64)) / learning_rate
        h.outcome.grads[t.name] = grad.to(was.dtype)


CONVENTIONS: dict[str, Callable[[Handed], None]] = {
    "functional": functional,
    "fastai": fastai,
    "class": instance,
    "numpy": numpy,
    "autograd_function": autograd_function,
    "step": step,
}


def _take_back_numpy(outcome: Outcome, values: Mapping[str, torch.Tensor]) -> None:
    """numpy arrays of a wider float dtype than the check's (np.zeros is float64) are taken
    back at the checked dtype, with a note: the values are compared, never a false alarm."""
    import numpy as np

    widened: list[str] = []
    floats = [v.dtype for v in values.values() if v.is_floating_point()]
    run_dtype = floats[0] if floats else torch.float64

    as_numpy = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16}

    def narrowed(name: str, value: Any, want: torch.dtype) -> Any:
        if isinstance(value, float):  # a loss as a Python number: a double
            value = np.float64(value)
        if not isinstance(value, (np.ndarray, np.generic)) or value.dtype.kind != "f" or want not in as_numpy:
            return value
        target = np.dtype(as_numpy[want])
        if value.dtype.itemsize <= target.itemsize:
            return value
        widened.append(f"{name} ({value.dtype})")
        return value.astype(target)

    for name, grad in outcome.grads.items():
        if grad is not MISSING and name in values and not isinstance(grad, float):  # a number is no gradient
            outcome.grads[name] = narrowed(name, grad, values[name].dtype)
    for name, out in outcome.outputs.items():
        outcome.outputs[name] = narrowed(name, out, run_dtype)
    if widened:
        checked = str(run_dtype).removeprefix("torch.")
        outcome.notes.append(
            f"the numpy code returned {', '.join(widened)}: compared at {checked}, the checked dtype"
            f" (np.zeros and np.eye make float64; pass dtype=x.dtype to keep {checked})"
        )


def _same(pristine: torch.Tensor, handed: Any) -> bool:
    """Whether a copy the checked code was handed still holds the tensor's values: the same
    shape, equal elements, NaN where NaN was. One pass with no temporary when it does (a numpy
    copy of a GPU tensor is compared on the CPU); an element-wise look only when it does not."""
    if isinstance(handed, torch.Tensor):
        current = handed.detach()
    else:
        current = torch.from_numpy(handed) if hasattr(handed, "__array__") else handed
    if not isinstance(current, torch.Tensor) or current.shape != pristine.shape:
        return False
    if current.device.type == "cpu" and pristine.device.type != "cpu":
        pristine = pristine.cpu()
    current = current.to(pristine.device, pristine.dtype)
    if torch.equal(current, pristine):
        return True
    if not differentiable(pristine):  # no NaN in an integer tensor
        return False
    return bool(((current == pristine) | (current.isnan() & pristine.isnan())).all())  # NaN != NaN


def name_gradient_index(exc: UserCodeError, args: tuple[Any, ...]) -> None:
    """torch says "invalid gradient at index 1": say which argument that is."""
    found = re.search(r"at index (\d+)", str(exc.exc))
    if found and int(found.group(1)) < len(args):
        exc.args = (f"{exc.args[0]} (index {found.group(1)} is {args[int(found.group(1))]})",)


def run_forward(
    spec: Spec,
    values: Mapping[str, torch.Tensor],
    dims: Mapping[str, int],
    namespace: Mapping[str, Any],
    copy_inputs: bool = True,
) -> dict[str, Any]:
    """Only the hand-written forward, on copies of ``values``: its outputs by name.

    What finite differences differentiate when a spec has no reference (the numerical mode):
    the forward call of any convention that has one, on a fresh instance for ``class:``, or
    ``Function.apply`` for an autograd Function. ``copy_inputs=False`` hands the tensors over
    as they are (to differentiate through them), numpy arrays of them with ``backend: numpy``.
    """
    impl = spec.implementation
    numpy = impl.backend == "numpy"
    if copy_inputs or numpy:
        tensors = {name: handed_copy(v, numpy) for name, v in values.items()}
    else:
        tensors = dict(values)
    scope: dict[str, Any] = {**copy.deepcopy(spec.options), **dims, **tensors}
    h = Handed(spec, namespace, tensors, {}, scope)
    if impl.autograd_function is not None:
        fn = lookup(namespace, impl.autograd_function, spec, "implementation.autograd_function")
        args = [evaluate(a, h.scope) for a in impl.args or ()]
        with user_code(f"forward {impl.autograd_function}.apply()"):
            result = fn.apply(*args)
        results = list(result) if isinstance(result, (tuple, list)) else [result]
        return dict(zip(spec.outputs, results, strict=False))
    if impl.cls is not None:
        construct(h)
    if not call_forward(h):
        raise spec.error("the forward returns none of the outputs", "implementation.forward")
    return h.outcome.outputs
