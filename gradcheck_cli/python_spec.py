"""The YAML-free form of ``check()``: a :class:`~gradcheck_cli.spec.Spec` from Python callables.

The spec's model objects are built directly (the same constructors the YAML
sections use for tensors and names), with the functions themselves as the
code's namespace. Parameters are bound to tensors by name; a parameter
named after nothing takes the next unnamed tensor, and the report says so.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .calls import Call, parse_call
from .errors import GradcheckError, SpecError
from .expressions import parse
from .names import NAME_RE
from .spec import CONVENTION_ALIASES, CONVENTIONS, CodeSource, Implementation, Reference, Spec
from .spec.sections import header
from .spec.tensors import tensor
from .spec.where import Where

# The conventions the YAML-free form takes (step needs a spec file: set:, learning_rate:).
API_CONVENTIONS = tuple(c for c in CONVENTIONS if c != "step")
# Parameter names taken for the upstream gradient (the spec's grad_out).
UPSTREAM_NAMES = ("grad_out", "dout", "grad_output", "grad_outputs", "dy", "grad_y", "dL_dout", "dl_dout")


def _parameters(fn: Callable[..., Any], role: str) -> list[inspect.Parameter]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        raise GradcheckError(f"cannot read the parameters of the {role} {fn!r}") from None
    return [
        p for p in signature.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def _bind(
    fn: Callable[..., Any],
    role: str,
    tensors: Sequence[str],
    known: Sequence[str] = (),
    upstream: bool = False,
    skip_first: bool = False,
    guesses: list[str] | None = None,
) -> list[str]:
    """The spec name handed to each positional parameter of ``fn``.

    A parameter named after none of them takes the next tensor no other parameter
    names (the lesson's ``lin_grad(inp, out, w, b)``); each such guess is added to
    ``guesses`` so that the report can say so.
    """
    params = _parameters(fn, role)[1 if skip_first else 0 :]
    free = [t for t in tensors if t not in {p.name for p in params}]
    bound: list[str] = []
    for p in params:
        if p.name in tensors or p.name in known:
            bound.append(p.name)
        elif upstream and p.name in UPSTREAM_NAMES:
            bound.append("grad_out")
        elif free:
            bound.append(free.pop(0))
            if guesses is not None:
                guesses.append(
                    f"the {role}'s parameter {p.name!r} was handed {bound[-1]} by position"
                    f" (name the parameter {bound[-1]!r} to say so)"
                )
        elif p.default is not p.empty:
            break  # an optional parameter nothing is handed to (and those after it)
        else:
            accepted = [*tensors, *known] + (["grad_out", "dout", "grad_output", "dy"] if upstream else [])
            raise GradcheckError(
                f"the {role}'s parameter {p.name!r} is none of the names it can be handed"
                f" ({', '.join(accepted)}); rename it"
            )
    return bound


def _call(func: str, names: Sequence[str], returns: Sequence[str] | None, known: Sequence[str]) -> Call:
    text = f"{func}({', '.join(names)})"
    return parse_call(f"{text} -> {', '.join(returns)}" if returns else text, known)


def _default_name(*candidates: Any) -> str:
    for candidate in candidates:
        text = re.sub(r"(?<!^)(?=[A-Z])", "_", getattr(candidate, "__name__", "") or "").lower()
        if NAME_RE.match(text) and text != "<lambda>":
            return text
    return "python"


def python_spec(
    reference: Callable[..., Any],
    forward: Callable[..., Any] | str | None,
    backward: Callable[..., Any] | str | None,
    autograd_function: Any,
    convention: str | None,
    shapes: Mapping[str, Sequence[int] | Mapping[str, Any]],
    params: Mapping[str, Sequence[int]],
    returns: Sequence[str] | None,
    name: str | None,
    cls: type | None = None,
) -> Spec:
    """Build a :class:`Spec` from Python callables (the YAML-free form of check)."""
    convention = _convention(convention, autograd_function, cls, forward, backward)
    for arg, value in (("shapes", shapes), ("params", params)):
        if not isinstance(value, Mapping):
            raise TypeError(f"check(): {arg} must be a mapping of names to shapes, got {value!r}")
    at = Where()
    try:
        inputs = {k: tensor(k, _raw(v), "input", {}, at) for k, v in shapes.items()}
        learnable = {k: tensor(k, _raw(v), "param", {}, at) for k, v in params.items()}
        spec_name, _ = header({"name": name or _default_name(cls, backward, autograd_function)}, at)
    except SpecError as exc:
        raise GradcheckError(f"check(): {exc}") from None
    all_tensors = {**inputs, **learnable}
    names = list(all_tensors)
    source = CodeSource(namespace={"reference": reference, "forward": forward, "backward": backward,
                                   "function": autograd_function})  # fmt: skip
    guesses: list[str] = []
    if cls is not None:
        implementation = _class_implementation(
            cls, convention, forward, backward, reference, names, all_tensors, returns, guesses
        )
    else:
        assert not isinstance(forward, str) and not isinstance(backward, str)
        implementation = _implementation(
            convention,
            forward,
            backward,
            autograd_function,
            reference,
            names,
            all_tensors,
            returns,
            source,
            guesses,
        )
    return Spec(
        name=spec_name,
        description="",
        dims={},
        inputs=inputs,
        params=learnable,
        reference=Reference(
            call=_call("reference", _bind(reference, "reference", names), None, names), source=source
        ),
        implementation=implementation,
        notes=tuple(guesses),
    )


def _convention(
    convention: str | None,
    autograd_function: Any,
    cls: type | None,
    forward: Callable[..., Any] | str | None,
    backward: Callable[..., Any] | str | None,
) -> str:
    """The convention said (or implied by what is given), checked against what is given."""
    if convention is None:
        convention = "autograd_function" if autograd_function is not None else "functional"
        if cls is not None:
            convention = "class"
    convention = CONVENTION_ALIASES.get(convention, convention)
    if convention not in API_CONVENTIONS:
        raise GradcheckError(
            f"unknown convention {convention!r}; choose one of {', '.join(API_CONVENTIONS)} (or cs231n)"
        )
    if convention == "class" and cls is None:
        raise GradcheckError("convention='class' needs cls= (the class to build, such as cls=Lin)")
    if cls is not None and convention not in ("class", "numpy"):
        raise GradcheckError(f"cls= goes with convention='class' (or 'numpy'), not {convention!r}")
    if cls is None and (isinstance(forward, str) or isinstance(backward, str)):
        raise GradcheckError("forward= and backward= are functions (a method's name goes with cls=)")
    return convention


def _raw(entry: Sequence[int] | Mapping[str, Any]) -> Any:
    return dict(entry) if isinstance(entry, Mapping) else list(entry)


def _implementation(
    convention: str,
    forward: Callable[..., Any] | None,
    backward: Callable[..., Any] | None,
    autograd_function: Any,
    reference: Callable[..., Any],
    names: list[str],
    all_tensors: Mapping[str, Any],
    returns: Sequence[str] | None,
    source: CodeSource,
    guesses: list[str],
) -> Implementation:
    if convention == "autograd_function":
        if autograd_function is None:
            raise GradcheckError("convention='autograd_function' needs autograd_function=")
        args = _bind(autograd_function.forward, "autograd function's forward", names, skip_first=True)
        return Implementation(
            source=source,
            convention="autograd_function",
            autograd_function="function",
            args=tuple(parse(a, names) for a in args),
        )
    if backward is None:
        raise GradcheckError("check() needs backward= (or autograd_function=)")
    backward_args = _bind(backward, "backward", names, known=["out"], upstream=True, guesses=guesses)
    forward_checked = True
    if forward is None and (convention == "fastai" or "out" in backward_args):
        # The backward reads `out`: the reference computes it, and there is no
        # hand-written forward to compare with it.
        source = CodeSource(namespace={**(source.namespace or {}), "forward": reference})
        forward, forward_checked = reference, False
    known = [*names, "out", "grad_out"]
    fwd = None
    if forward is not None:
        fwd = _call("forward", _bind(forward, "forward", names, guesses=guesses), ["out"], known)
    slots = None
    if convention != "fastai":
        checked = [n for n, t in all_tensors.items() if t.grad]
        slots = list(returns) if returns else [n for n in backward_args if n in checked]
        for slot in slots:
            if slot not in checked:
                raise GradcheckError(f"returns: {slot!r} is not a checked tensor ({', '.join(checked)})")
    bwd = _call("backward", backward_args, slots, known)
    return Implementation(
        source=source,
        convention="fastai" if bwd.returns is None else convention,
        forward=fwd,
        backward=bwd,
        backend="numpy" if convention == "numpy" else "torch",
        forward_checked=forward_checked,
    )


def _method(cls: type, fn: Callable[..., Any] | str | None, role: str) -> Callable[..., Any] | None:
    """A method of ``cls``, given as the function (``Lin.backward``) or by name (``"backward"``)."""
    if fn is None:
        return None
    name = fn if isinstance(fn, str) else getattr(fn, "__name__", "")
    method = getattr(cls, name, None) if name else None
    if method is None or not callable(method) or (not isinstance(fn, str) and method is not fn):
        raise GradcheckError(
            f"with cls={cls.__name__}, {role}= is one of its methods ({cls.__name__}.__call__,"
            f" {cls.__name__}.backward, or its name as a string), got {fn!r}"
        )
    return method  # type: ignore[no-any-return]


def _class_implementation(
    cls: type,
    convention: str,
    forward: Callable[..., Any] | str | None,
    backward: Callable[..., Any] | str | None,
    reference: Callable[..., Any],
    names: list[str],
    all_tensors: Mapping[str, Any],
    returns: Sequence[str] | None,
    guesses: list[str],
) -> Implementation:
    """``cls=Lin``: one instance built from the tensors its constructor names; forward= and
    backward= are its methods (the backward sets .g, or returns the gradients of ``returns``)."""
    if not isinstance(cls, type):
        raise TypeError(f"check(): cls must be a class, got {cls!r}")
    fwd_method, bwd_method = _method(cls, forward, "forward"), _method(cls, backward, "backward")
    if bwd_method is None:
        raise GradcheckError(f"cls={cls.__name__} needs backward= (the method that runs the backward)")
    known = [*names, "out", "grad_out"]
    init_args = _bind(cls, f"{cls.__name__} constructor", names, guesses=guesses)
    cls_call = _call(cls.__name__, init_args, None, known)
    fwd = None
    if fwd_method is not None:
        fwd_args = _bind(fwd_method, "forward", names, skip_first=True, guesses=guesses)
        fwd = _call(fwd_method.__name__, fwd_args, ["out"], known)
    bwd_args = _bind(
        bwd_method, "backward", names, known=["out"], upstream=True, skip_first=True, guesses=guesses
    )
    checked = [n for n, t in all_tensors.items() if t.grad]
    for slot in returns or ():
        if slot not in checked:
            raise GradcheckError(f"returns: {slot!r} is not a checked tensor ({', '.join(checked)})")
    bwd = _call(bwd_method.__name__, bwd_args, list(returns) if returns else None, known)
    return Implementation(
        source=CodeSource(namespace={cls.__name__: cls, "reference": reference}),
        convention=convention,
        forward=fwd,
        backward=bwd,
        cls=cls_call,
        backend="numpy" if convention == "numpy" else "torch",
    )
