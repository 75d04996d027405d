"""The Python API: ``check(...)`` from a notebook or a test. Never calls sys.exit.

Two forms, one engine (the same :func:`~gradcheck_cli.runner.run` as the CLI)::

    check("my_lin.yaml", n=7)                     # a spec file, dims as keywords
    check(reference=lambda x, w, b: x @ w + b,    # no YAML: the functions themselves
          backward=lin_grad, convention="fastai",
          shapes={"x": (5, 3), "w": (3, 4), "b": (4,)})

Both return a :class:`~gradcheck_cli.result.Report`: ``report.ok``,
``report["b"].status``, ``report.results[0].checks``; ``print(report)`` and
Jupyter show the same table as the terminal. A spec that cannot run raises
:class:`~gradcheck_cli.errors.SpecError`; a failing check never raises. (``check`` is long for its
docstring, which is what ``help(check)`` shows a notebook user.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import GradcheckError, SpecError
from .names import NAME_RE
from .python_spec import python_spec
from .result import CaseResult, Report
from .settings import RunSettings
from .spec import Spec, load_spec


def check(
    spec: str | Path | Spec | None = None,
    *,
    dtype: str = "float64",
    device: str = "cpu",
    seed: int = 0,
    atol: float | None = None,
    rtol: float | None = None,
    tolerance: str | None = None,
    ratio: float | None = None,
    sweep: bool = False,
    verbose: bool = False,
    double: bool = False,
    options: Mapping[str, Any] | None = None,
    reference: Callable[..., Any] | None = None,
    forward: Callable[..., Any] | str | None = None,
    backward: Callable[..., Any] | str | None = None,
    autograd_function: Any = None,
    cls: type | None = None,
    convention: str | None = None,
    shapes: Mapping[str, Sequence[int] | Mapping[str, Any]] | None = None,
    params: Mapping[str, Sequence[int]] | None = None,
    returns: Sequence[str] | None = None,
    name: str | None = None,
    **dims: int,
) -> Report:
    """Check a hand-written backward and return a :class:`Report`.

    From a spec file (or a loaded :class:`Spec`, or a built-in layer's name), dims as keywords::

        check("my_lin.yaml", n=7)
        check("linear", batch=8)

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
    - ``numpy`` (or ``cs231n``): like functional, on numpy arrays;
    - ``autograd_function``: ``autograd_function.apply(...)``, then autograd;
    - ``class`` (``cls=Lin``): one instance, built from the tensors its
      constructor names; ``forward=`` and ``backward=`` are its methods
      (``Lin.__call__``, ``Lin.backward``, or their names), the backward
      setting ``.g`` (or returning the gradients of ``returns``).

    The functions may be defined in a live notebook: an error in one points at
    its cell.

    Raises :class:`SpecError` when the spec cannot run (a missing file, an
    unknown dim, a reference that raises), ``TypeError`` naming the argument
    given a value of the wrong type; never calls ``sys.exit``.
    """
    from .runner import run

    settings = _settings(
        dtype=dtype,
        device=device,
        seed=seed,
        atol=atol,
        rtol=rtol,
        tolerance=tolerance,
        ratio=ratio,
        sweep=sweep,
        verbose=verbose,
        double=double,
    )
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
            cls,
        )
    else:
        functions = {"reference": reference, "forward": forward, "backward": backward, "cls": cls}
        given = [k for k, v in functions.items() if v]
        if given or shapes is not None or autograd_function is not None:
            raise GradcheckError(
                f"check() takes a spec or functions, not both (got a spec and {', '.join(given) or 'shapes'})"
            )
        if not isinstance(spec, (str, Path, Spec)):
            raise TypeError(f"check(): spec must be a path or a Spec, got {type(spec).__name__}")
        loaded = spec if isinstance(spec, Spec) else load_spec(_spec_path(spec))
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"check(): options must be a mapping, got {type(options).__name__}")
    result: CaseResult = run(loaded, settings, dims, options)
    if result.spec_error:
        raise SpecError(result.error or "the spec cannot run")
    return make_report([result])


def _spec_path(spec: str | Path) -> str | Path:
    """A spec file, or a layer's name as the CLI takes it (``"linear"``: the built-in, or one
    of ``[tool.gradcheck] spec_paths``) when no file of that name is here."""
    if isinstance(spec, Path) or not NAME_RE.fullmatch(spec) or Path(spec).exists():
        return spec
    from .catalogue import lookup
    from .config import load_config

    try:
        return lookup(spec, load_config()).path
    except GradcheckError as exc:
        raise SpecError(str(exc)) from None


def _settings(**values: Any) -> RunSettings:
    """The run settings from check()'s keywords: a wrong type is a TypeError naming the keyword."""
    kinds: dict[str, tuple[type, ...]] = {
        "dtype": (str,),
        "device": (str,),
        "seed": (int,),
        "atol": (int, float, type(None)),
        "rtol": (int, float, type(None)),
        "tolerance": (str, type(None)),
        "ratio": (int, float, type(None)),
        "sweep": (bool,),
        "verbose": (bool,),
        "double": (bool,),
    }
    for key, value in values.items():
        if not isinstance(value, kinds[key]) or (isinstance(value, bool) and bool not in kinds[key]):
            raise TypeError(
                f"check(): {key} must be {' or '.join(k.__name__ for k in kinds[key])}, got {value!r}"
            )
    try:
        return RunSettings(**values)
    except SpecError:
        raise
    except GradcheckError as exc:  # said as the command line says it: name the keyword instead
        raise GradcheckError(re.sub(r"^--([a-z_]+)", r"check(): \1=", str(exc))) from None


def make_report(results: list[CaseResult]) -> Report:
    """A report of these results, with the versions of gradcheck and torch."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    try:
        torch_version = version("torch")
    except PackageNotFoundError:  # pragma: no cover - torch is a dependency
        torch_version = ""
    return Report(results=results, version=__version__, torch=torch_version)
