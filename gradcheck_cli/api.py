"""The Python API: ``check(...)`` from a notebook or a test. Never calls sys.exit."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .errors import GradcheckError
from .result import CaseResult, Report
from .spec import CodeSource, Spec, build_spec, load_spec

CONVENTIONS = ("functional", "fastai", "numpy", "autograd_function")


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
    reference: Callable[..., Any] | None = None,
    forward: Callable[..., Any] | None = None,
    backward: Callable[..., Any] | None = None,
    autograd_function: Any = None,
    convention: str = "functional",
    shapes: Mapping[str, Sequence[int] | Mapping[str, Any]] | None = None,
    params: Mapping[str, Sequence[int]] | None = None,
    returns: Sequence[str] | None = None,
    name: str = "python",
    **dims: int,
) -> Report:
    """Check a hand-written backward and return a :class:`Report`.

    From a spec file (or a loaded :class:`Spec`), dims as keywords::

        check("my_lin.yaml", n=7)

    Or without YAML, from the functions themselves::

        check(reference=lambda x, w, b: x @ w + b, backward=lin_grad,
              convention="fastai", shapes={"x": (5, 3), "w": (3, 4), "b": (4,)})

    Argument names of ``reference``/``forward``/``backward`` are the tensor
    names; ``grad_out`` (or ``dout``) is the upstream gradient and ``out`` the
    forward's output. A functional backward returns the gradients of its
    tensor arguments in order (or of ``returns``).
    """
    from .runner import make_case, run_case, run_sweep

    if spec is None:
        if reference is None or shapes is None:
            raise GradcheckError("check() needs a spec path, or reference= and shapes=")
        loaded = python_spec(
            reference, forward, backward, autograd_function, convention, shapes, params or {}, returns, name
        )
    elif isinstance(spec, Spec):
        loaded = spec
    else:
        loaded = load_spec(spec)
    case = make_case(loaded, dims, dtype=dtype, device=device, seed=seed, atol=atol, rtol=rtol)
    result: CaseResult = run_sweep(case, verbose=verbose) if sweep else run_case(case, verbose=verbose)
    return make_report([result])


def make_report(results: list[CaseResult]) -> Report:
    import torch

    from . import __version__

    return Report(results=results, version=__version__, torch=torch.__version__)


def _call_text(func: str, fn: Callable[..., Any], returns: Sequence[str] | None) -> str:
    names = [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    text = f"{func}({', '.join(names)})"
    return f"{text} -> {', '.join(returns)}" if returns else text


def python_spec(
    reference: Callable[..., Any],
    forward: Callable[..., Any] | None,
    backward: Callable[..., Any] | None,
    autograd_function: Any,
    convention: str,
    shapes: Mapping[str, Sequence[int] | Mapping[str, Any]],
    params: Mapping[str, Sequence[int]],
    returns: Sequence[str] | None,
    name: str,
) -> Spec:
    """Build a :class:`Spec` from Python callables (the YAML-free form of check)."""
    if convention not in CONVENTIONS:
        raise GradcheckError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    inputs = {k: (dict(v) if isinstance(v, Mapping) else list(v)) for k, v in shapes.items()}
    data: dict[str, Any] = {
        "name": name,
        "inputs": inputs,
        "params": {k: list(v) for k, v in params.items()},
        "reference": {"module": "python", "call": _call_text("reference", reference, None)},
    }
    impl: dict[str, Any] = {"module": "python"}
    namespace: dict[str, Any] = {"reference": reference}
    if convention == "autograd_function":
        if autograd_function is None:
            raise GradcheckError("convention='autograd_function' needs autograd_function=")
        impl["autograd_function"] = "function"
        namespace["function"] = autograd_function
    else:
        if backward is None:
            raise GradcheckError("check() needs backward=")
        if forward is None and convention == "fastai":
            forward = reference  # the fastai backward reads `out`: the reference computes it
        if forward is not None:
            impl["forward"] = _call_text("forward", forward, ["out"])
            namespace["forward"] = forward
        slots = None
        if convention != "fastai":
            checked = set(inputs) | set(params)
            slots = list(returns) if returns else [
                n for n in inspect.signature(backward).parameters if n in checked
            ]
        impl["backward"] = _call_text("backward", backward, slots)
        namespace["backward"] = backward
        if convention == "numpy":
            impl["backend"] = "numpy"
    data["implementation"] = impl
    spec = build_spec(data)
    source = CodeSource(namespace=namespace)
    spec.reference = replace(spec.reference, source=source)
    spec.implementation = replace(spec.implementation, source=source)
    return spec
