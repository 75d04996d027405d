"""The Python API: ``check(...)`` from a notebook or a test. Never calls sys.exit.

Two forms, one engine (the same runner as the CLI)::

    check("my_lin.yaml", n=7)                     # a spec file, dims as keywords
    check(reference=lambda x, w, b: x @ w + b,    # no YAML: the functions themselves
          backward=lin_grad, convention="fastai",
          shapes={"x": (5, 3), "w": (3, 4), "b": (4,)})

Both return a :class:`~gradcheck_cli.result.Report`: ``report.ok``,
``report["b"].status``, ``report.results[0].checks``; ``print(report)`` and
Jupyter show the same table as the terminal. A spec that cannot run raises
:class:`~gradcheck_cli.errors.SpecError`; a failing check never raises.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .errors import GradcheckError, SpecError
from .result import CaseResult, Report
from .spec import NAME_RE, CodeSource, Spec, build_spec, load_spec

CONVENTIONS = ("functional", "fastai", "numpy", "autograd_function")
# Parameter names taken for the upstream gradient (the spec's grad_out).
UPSTREAM_NAMES = ("grad_out", "dout", "grad_output", "grad_outputs", "dy", "grad_y", "dL_dout", "dl_dout")


def check(
    spec: str | Path | Spec | None = None,
    *,
    dtype: str = "float64",
    device: str = "cpu",
    seed: int = 0,
    atol: float | None = None,
    rtol: float | None = None,
    sweep: bool = False,
    verbose: bool = False,
    options: Mapping[str, Any] | None = None,
    reference: Callable[..., Any] | None = None,
    forward: Callable[..., Any] | None = None,
    backward: Callable[..., Any] | None = None,
    autograd_function: Any = None,
    convention: str | None = None,
    shapes: Mapping[str, Sequence[int] | Mapping[str, Any]] | None = None,
    params: Mapping[str, Sequence[int]] | None = None,
    returns: Sequence[str] | None = None,
    name: str | None = None,
    **dims: int,
) -> Report:
    """Check a hand-written backward and return a :class:`Report`.

    From a spec file (or a loaded :class:`Spec`), dims as keywords::

        check("my_lin.yaml", n=7)

    Or without YAML, from the functions themselves::

        check(reference=lambda x, w, b: x @ w + b, backward=lin_grad,
              convention="fastai", shapes={"x": (5, 3), "w": (3, 4), "b": (4,)})

    In the YAML-free form the reference's parameter names are the tensor
    names (``shapes`` are inputs, ``params`` learnable params; an entry may be
    a mapping like ``{"shape": [5], "dtype": "int64", "low": 0, "high": 3}``).
    A forward's or backward's parameters are matched by name: a tensor name,
    ``out`` (the forward's output), or the upstream gradient (``grad_out``,
    ``dout``, ``grad_output``, ``dy``); any other name takes the next tensor
    not named otherwise, in order (the lesson's ``lin_grad(inp, out, w, b)``:
    ``inp`` is ``x``). conventions:

    - ``functional``: the backward returns the gradients of its tensor
      parameters, in order (or of ``returns``);
    - ``fastai``: ``out.g`` is set to the upstream gradient, the backward sets
      each tensor's ``.g`` (the forward defaults to the reference);
    - ``numpy``: like functional, on numpy arrays;
    - ``autograd_function``: ``autograd_function.apply(...)``, then autograd.

    Raises :class:`SpecError` when the spec cannot run (a missing file, an
    unknown dim, a reference that raises); never calls ``sys.exit``.
    """
    from .runner import make_case, run_case, run_sweep

    if spec is None:
        if reference is None or shapes is None:
            raise GradcheckError("check() needs a spec path, or reference= and shapes=")
        loaded = python_spec(
            reference,
            forward,
            backward,
            autograd_function,
            convention,
            shapes,
            params or {},
            returns,
            name,
        )
    else:
        given = [
            k for k, v in {"reference": reference, "forward": forward, "backward": backward}.items() if v
        ]
        if given or shapes is not None or autograd_function is not None:
            raise GradcheckError(
                f"check() takes a spec or functions, not both (got a spec and {', '.join(given) or 'shapes'})"
            )
        loaded = spec if isinstance(spec, Spec) else load_spec(spec)
    case = make_case(
        loaded, dims, dtype=dtype, device=device, seed=seed, atol=atol, rtol=rtol, options=options
    )
    result: CaseResult = run_sweep(case, verbose=verbose) if sweep else run_case(case, verbose=verbose)
    if result.spec_error:
        raise SpecError(result.error or "the spec cannot run")
    return make_report([result])


def make_report(results: list[CaseResult]) -> Report:
    import torch

    from . import __version__

    return Report(results=results, version=__version__, torch=torch.__version__)


# -- the YAML-free form --------------------------------------------------------------


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


def _call(func: str, names: Sequence[str], returns: Sequence[str] | None) -> str:
    text = f"{func}({', '.join(names)})"
    return f"{text} -> {', '.join(returns)}" if returns else text


def _default_name(*candidates: Any) -> str:
    for candidate in candidates:
        text = re.sub(r"(?<!^)(?=[A-Z])", "_", getattr(candidate, "__name__", "") or "").lower()
        if NAME_RE.match(text) and text != "<lambda>":
            return text
    return "python"


def _has_grad(entry: Any) -> bool:
    """Whether a tensor given in shapes/params is checked (as the spec would decide)."""
    if not isinstance(entry, dict):
        return True
    return bool(entry.get("grad", entry.get("dtype", "float") in ("float", "float32", "float64")))


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
    if convention not in CONVENTIONS:
        raise GradcheckError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    inputs = {k: (dict(v) if isinstance(v, Mapping) else list(v)) for k, v in shapes.items()}
    tensors = [*inputs, *params]
    data: dict[str, Any] = {
        "name": name or _default_name(backward, autograd_function),
        "inputs": inputs,
        "params": {k: list(v) for k, v in params.items()},
        "reference": {
            "module": "python",
            "call": _call("reference", _bind(reference, "reference", tensors), None),
        },
    }
    impl: dict[str, Any] = {"module": "python"}
    namespace: dict[str, Any] = {"reference": reference}
    guesses: list[str] = []
    forward_checked = True
    if convention == "autograd_function":
        if autograd_function is None:
            raise GradcheckError("convention='autograd_function' needs autograd_function=")
        impl["autograd_function"] = "function"
        impl["args"] = _bind(
            autograd_function.forward, "autograd function's forward", tensors, skip_first=True
        )
        namespace["function"] = autograd_function
    else:
        if backward is None:
            raise GradcheckError("check() needs backward= (or autograd_function=)")
        backward_args = _bind(backward, "backward", tensors, known=["out"], upstream=True, guesses=guesses)
        if forward is None and (convention == "fastai" or "out" in backward_args):
            # The backward reads `out`: the reference computes it, and there is no
            # hand-written forward to compare with it.
            forward, forward_checked = reference, False
        if forward is not None:
            impl["forward"] = _call("forward", _bind(forward, "forward", tensors, guesses=guesses), ["out"])
            namespace["forward"] = forward
        slots = None
        if convention != "fastai":
            checked = {t for t in tensors if _has_grad(inputs.get(t))}
            slots = list(returns) if returns else [n for n in backward_args if n in checked]
        impl["backward"] = _call("backward", backward_args, slots)
        namespace["backward"] = backward
        if convention == "numpy":
            impl["backend"] = "numpy"
    data["implementation"] = impl
    spec = build_spec(data)
    source = CodeSource(namespace=namespace)
    spec.reference = replace(spec.reference, source=source)
    spec.implementation = replace(spec.implementation, source=source, forward_checked=forward_checked)
    spec.notes = guesses
    return spec
