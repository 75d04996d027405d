"""The command line's options: declared once, shared by every layer command and ``run``.

Each shared option is an ``Annotated`` type and an entry of :data:`COMMON`;
:func:`with_common_options` gives a command function the signature typer
reads (its own options, then the shared ones), and :func:`settings_from`
turns the values given into the run's settings and where the report goes.
Nothing here imports torch.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from .config import Config
from .errors import GradcheckError
from .report import FORMATS
from .settings import DEFAULT_TIMEOUT, RunSettings

COLORS = ("auto", "always", "never")
# The longest --timeout: a poll of the worker's pipes waits at most 2**31 - 1 ms (about 24 days);
# longer, and the wait itself overflows.
MAX_TIMEOUT = 1_000_000.0


def timeout_problem(value: object, name: str) -> str | None:
    """Why a timeout in seconds (``name`` says where it was given) cannot be waited for, if it cannot."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None  # no timeout, or not a number: RunSettings says so
    if MAX_TIMEOUT < value < math.inf:  # inf and nan: not a number of seconds, as RunSettings says
        return f"{name} is {value:g} seconds: at most {MAX_TIMEOUT:.0f} (about 11 days) can be waited for"
    return None


# -- options shared by every layer command and `run` ---------------------------------

Dtype = Annotated[
    str | None, typer.Option("--dtype", help="float64 (default), float32, bfloat16 or float16.")
]
Device = Annotated[str | None, typer.Option("--device", help="cpu (default) or cuda.")]
Seed = Annotated[int | None, typer.Option("--seed", help="Seed of the random tensors (default 0).")]
Tolerance = Annotated[
    str | None,
    typer.Option(
        "--tolerance",
        metavar="MODE",
        help="calibrated (against a float64 truth, PyTorch's own error the measure; the default for"
        " float32, bfloat16, float16) or absolute (atol + rtol * |expected|; float64's).",
    ),
]
Ratio = Annotated[
    float | None,
    typer.Option("--ratio", help="Calibrated: how many times PyTorch's own error the code may be off (2)."),
]
Atol = Annotated[
    float | None, typer.Option("--atol", help="Absolute tolerance (default: per dtype); implies absolute.")
]
Rtol = Annotated[
    float | None, typer.Option("--rtol", help="Relative tolerance (default: per dtype); implies absolute.")
]
Format = Annotated[str, typer.Option("--format", "-f", help=f"{', '.join(FORMATS[:-1])} or {FORMATS[-1]}.")]
Color = Annotated[
    str,
    typer.Option(
        "--color", metavar="WHEN", help="auto (a terminal, FORCE_COLOR; not NO_COLOR), always or never."
    ),
]
Timeout = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        help=f"Stop a spec that runs longer (default {DEFAULT_TIMEOUT:g}; or [tool.gradcheck] timeout,"
        " or a spec's timeout:).",
    ),
]
Numerical = Annotated[
    bool,
    typer.Option(
        "--numerical",
        help="Also check the reference against its own finite differences (specs without a reference"
        " are checked by finite differences of the forward anyway).",
    ),
]
Samples = Annotated[
    int | None,
    typer.Option(
        "--samples",
        metavar="N",
        help="Finite differences: check a seeded sample of N elements of each bigger tensor, and a few"
        " random directions (default 4096; 0 checks every element).",
    ),
]
Quiet = Annotated[
    int,
    typer.Option(
        "--quiet", "-q", count=True, help="Failing results in full and a line per passing spec; -qq: none."
    ),
]
Output = Annotated[
    Path | None,
    typer.Option(
        "--output", "-o", help="Write the report in --format to FILE, the table still printing; - for stdout."
    ),
]
Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show expected vs got around the worst element.")
]
Sweep = Annotated[
    bool,
    typer.Option("--sweep", help="Also run other seeds and distinct non-square sizes; report the worst."),
]
Pdb = Annotated[
    bool, typer.Option("--pdb", help="Open a post-mortem debugger where the checked code raised.")
]
Double = Annotated[
    bool,
    typer.Option("--double", help="Also check an autograd.Function's double backward (gradgradcheck)."),
]
ExitZero = Annotated[
    bool, typer.Option("--exit-zero", help="Exit 0 even when checks fail (report-only jobs).")
]
OptionSet = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-O",
        metavar="NAME=VALUE",
        help="Override a spec option (VALUE is YAML: 1, [3, 2], true).",
    ),
]
Explain = Annotated[bool, typer.Option("--explain", help="Print the derivation of each gradient and exit.")]

COMMON: list[tuple[str, Any, Any]] = [
    ("dtype", Dtype, None),
    ("device", Device, None),
    ("seed", Seed, None),
    ("tolerance", Tolerance, None),
    ("ratio", Ratio, None),
    ("atol", Atol, None),
    ("rtol", Rtol, None),
    ("format", Format, "table"),
    ("output", Output, None),
    ("verbose", Verbose, False),
    ("sweep", Sweep, False),
    ("pdb", Pdb, False),
    ("double", Double, False),
    ("exit_zero", ExitZero, False),
    ("numerical", Numerical, False),
    ("samples", Samples, None),
    ("timeout", Timeout, None),
    ("color", Color, "auto"),
    ("quiet", Quiet, 0),
]


@dataclass(frozen=True)
class Emit:
    """Where and how the report goes: the format, --output, --exit-zero, --verbose, --color, --quiet."""

    format: str = "table"
    output: Path | None = None
    exit_zero: bool = False
    verbose: bool = False
    color: str = "auto"
    quiet: int = 0


def settings_from(options: dict[str, Any], config: Config) -> tuple[RunSettings, Emit]:
    """The shared options merged over [tool.gradcheck] and the defaults (raises GradcheckError)."""
    fmt = options.pop("format")
    if fmt not in FORMATS:
        raise GradcheckError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    color, quiet = options.pop("color"), options.pop("quiet")
    if color not in COLORS:
        raise GradcheckError(f"unknown --color {color!r}; choose one of {', '.join(COLORS)}")
    output = options.pop("output")
    if output is not None and str(output) == "-":  # --output -: the format goes to stdout
        output = None
    elif output is not None:  # absolute now: checked code that changes directory cannot move it
        output = output.absolute()
    emit = Emit(fmt, output, options.pop("exit_zero"), options["verbose"], color, quiet)
    for value, name in ((options.get("timeout"), "--timeout"), (config.timeout, "[tool.gradcheck] timeout")):
        problem = timeout_problem(value, name)
        if problem:
            raise GradcheckError(problem)
    return RunSettings.merged(config, **options), emit


def keyword(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def with_common_options(func: Any, specific: list[inspect.Parameter]) -> Any:
    """``func(**kwargs)`` with a signature of its own options followed by the shared ones."""
    func.__signature__ = inspect.Signature([*specific, *(keyword(n, a, d) for n, a, d in COMMON)])
    return func


# A dim cannot become an option that the layer's command already has.
OWN_OPTIONS = {n for n, _, _ in COMMON} | {"explain", "option", "help"}


PathsArg = Annotated[
    list[Path] | None, typer.Argument(help="Spec files and/or directories (searched recursively).")
]
Builtin = Annotated[bool, typer.Option("--builtin", help="Run the whole built-in catalogue.")]
Keyword = Annotated[
    str | None,
    typer.Option(
        "-k",
        help="Only specs whose name or path matches EXPR, as pytest's -k: 'lin and not relu' (any case).",
    ),
]
FailFast = Annotated[
    bool, typer.Option("--fail-fast", "-x", help="Stop at the first spec that does not pass.")
]
Jobs = Annotated[int, typer.Option("--jobs", "-j", min=1, help="Run specs in N worker processes.")]
Watch = Annotated[
    bool,
    typer.Option(
        "--watch", "-w", help="After the run, run again the specs whose files change (Ctrl-C ends)."
    ),
]
RUN_OPTIONS: list[tuple[str, Any, Any]] = [
    ("paths", PathsArg, None),
    ("builtin", Builtin, False),
    ("keyword", Keyword, None),
    ("fail_fast", FailFast, False),
    ("jobs", Jobs, 1),
    ("watch", Watch, False),
]
