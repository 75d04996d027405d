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
from .spec.sections import header, tensor
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
    forward: Callable[..., Any] | None,
    backward: Callable[..., Any] | None,
    autograd_function: Any,
    convention: str | None,
    shapes: Mapping[str, Sequence[int] | Mapping[str, Any]],
    params: Mapping[str, Sequence[int]],
    returns: Sequence[str] | None,
    name: str | None,
) -> Spec:
    """Build a :class:`Spec` from Python callables (the YAML-free form of check)."""
    if convention is None:
        convention = "autograd_function" if autograd_function is not None else "functional"
    convention = CONVENTION_ALIASES.get(convention, convention)
    if convention == "class":
        raise GradcheckError(
            "convention='class' needs a spec file with 'class:' (the YAML-free form takes functions)"
        )
    if convention not in API_CONVENTIONS:
        raise GradcheckError(
            f"unknown convention {convention!r}; choose one of {', '.join(API_CONVENTIONS)} (or cs231n)"
        )
    for arg, value in (("shapes", shapes), ("params", params)):
        if not isinstance(value, Mapping):
            raise TypeError(f"check(): {arg} must be a mapping of names to shapes, got {value!r}")
    at = Where()
    try:
        inputs = {k: tensor(k, _raw(v), "input", {}, at) for k, v in shapes.items()}
        learnable = {k: tensor(k, _raw(v), "param", {}, at) for k, v in params.items()}
        spec_name, _ = header({"name": name or _default_name(backward, autograd_function)}, at)
    except SpecError as exc:
        raise GradcheckError(f"check(): {exc}") from None
    all_tensors = {**inputs, **learnable}
    names = list(all_tensors)
    source = CodeSource(namespace={"reference": reference, "forward": forward, "backward": backward,
                                   "function": autograd_function})  # fmt: skip
    guesses: list[str] = []
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
