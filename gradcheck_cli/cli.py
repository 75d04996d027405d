"""The ``gradcheck`` command: find specs, call the library, render, pick the exit code.

Nothing here imports torch at module level: ``--help``, ``list`` and shell
completion stay fast. Each spec becomes a command of its own (``gradcheck
linear --in 3 --out 4``), built lazily by :class:`LayerGroup`.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
import typer.core
import typer.main

from . import __version__
from .catalogue import Entry, builtin_dir, entries, lookup, warnings
from .config import Config, load_config
from .errors import GradcheckError
from .spec import IDENT_RE, RESERVED_DIMS

if TYPE_CHECKING:
    from .result import CaseResult, Report
    from .runner import Case
    from .spec import Spec
    from .suite import RunOptions

FORMATS = ("table", "json", "junit", "markdown")
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def fail(message: str) -> NoReturn:
    """A usage or spec error: one line on stderr, exit 2."""
    print(f"gradcheck: error: {message}", file=sys.stderr)
    raise typer.Exit(EXIT_USAGE)


def _config() -> Config:
    try:
        return load_config()
    except GradcheckError as exc:
        fail(str(exc))


# -- options shared by every layer command and `run` ---------------------------------

Dtype = Annotated[
    str | None, typer.Option("--dtype", help="float64 (default), float32, bfloat16 or float16.")
]
Device = Annotated[str | None, typer.Option("--device", help="cpu (default) or cuda.")]
Seed = Annotated[int | None, typer.Option("--seed", help="Seed of the random tensors (default 0).")]
Atol = Annotated[float | None, typer.Option("--atol", help="Absolute tolerance (default: per dtype).")]
Rtol = Annotated[float | None, typer.Option("--rtol", help="Relative tolerance (default: per dtype).")]
Format = Annotated[str, typer.Option("--format", "-f", help="table, json, junit or markdown.")]
Output = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write the report in --format to FILE; the table still prints."),
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
    ("atol", Atol, None),
    ("rtol", Rtol, None),
    ("format", Format, "table"),
    ("output", Output, None),
    ("verbose", Verbose, False),
    ("sweep", Sweep, False),
    ("pdb", Pdb, False),
    ("exit_zero", ExitZero, False),
]


class Settings:
    """The common options merged over [tool.gradcheck] and the defaults."""

    def __init__(self, config: Config, **options: Any) -> None:
        self.dtype: str = options["dtype"] or config.dtype or "float64"
        self.device: str = options["device"] or config.device or "cpu"
        self.seed: int = options["seed"] if options["seed"] is not None else (config.seed or 0)
        self.atol: float | None = options["atol"] if options["atol"] is not None else config.atol
        self.rtol: float | None = options["rtol"] if options["rtol"] is not None else config.rtol
        self.format: str = options["format"]
        self.output: Path | None = options["output"]
        self.verbose: bool = options["verbose"]
        self.sweep: bool = options["sweep"]
        self.pdb: bool = options["pdb"]
        self.exit_zero: bool = options["exit_zero"]
        if self.format not in FORMATS:
            fail(f"unknown --format {self.format!r}; choose one of {', '.join(FORMATS)}")
        for name, value in (("atol", self.atol), ("rtol", self.rtol)):
            if value is not None and not value >= 0:  # also rejects NaN
                fail(f"--{name} must be a non-negative number, got {value}")

    def run_options(self) -> RunOptions:
        from .suite import RunOptions

        return RunOptions(
            dtype=self.dtype,
            device=self.device,
            seed=self.seed,
            atol=self.atol,
            rtol=self.rtol,
            verbose=self.verbose,
            sweep=self.sweep,
            pdb=self.pdb,
        )


# -- running and rendering ---------------------------------------------------------


def _make_case(
    spec: Spec, settings: Settings, dims: dict[str, int] | None = None, options: dict[str, Any] | None = None
) -> Case:
    from .runner import make_case

    return make_case(
        spec,
        dims,
        options=options,
        dtype=settings.dtype,
        device=settings.device,
        seed=settings.seed,
        atol=settings.atol,
        rtol=settings.rtol,
    )


def _run_one(case: Case, settings: Settings) -> CaseResult:
    from .runner import run_case, run_sweep

    if settings.sweep:
        return run_sweep(case, verbose=settings.verbose, pdb=settings.pdb)
    return run_case(case, verbose=settings.verbose, pdb=settings.pdb)


def _emit(report: Report, settings: Settings) -> NoReturn:
    """Print the report, write --output, and exit with the report's code."""
    from .report import render

    for result in report.results:
        if result.spec_error:
            print(f"gradcheck: error: {result.error}", file=sys.stderr)
    stdout_format = "table" if settings.output is not None else settings.format
    if stdout_format == "table":
        _print_table(report, settings.verbose)
    else:
        sys.stdout.write(render(report, stdout_format) + "\n")
    if settings.output is not None:
        try:
            settings.output.write_text(render(report, settings.format) + "\n", encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {settings.output}: {exc.strerror}")
    code = report.exit_code
    if settings.exit_zero and code == EXIT_FAIL:
        code = EXIT_OK
    raise typer.Exit(code)


def _rich_terminal() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _print_table(report: Report, verbose: bool) -> None:
    """Rich on a terminal wide enough for every cell; aligned plain text otherwise
    (piped, NO_COLOR, or a narrow terminal where rich would cut the numbers short)."""
    from .report.table import render_text, renderable

    if _rich_terminal():
        from rich.console import Console
        from rich.table import Table

        console = Console()
        group = renderable(report, verbose=verbose)
        unbounded = console.options.update_width(10_000)
        tables = [r for r in group.renderables if isinstance(r, Table)]
        if all(console.measure(t, options=unbounded).maximum <= console.width for t in tables):
            console.print(group)
            return
    print(render_text(report, verbose=verbose))


def _parse_options(items: list[str]) -> dict[str, Any]:
    import yaml

    options: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            fail(f"--option takes NAME=VALUE, got {item!r}")
        try:
            options[name.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            fail(f"--option {name.strip()}: {text!r} is not a YAML value")
    return options


def check_layer(
    entry: Entry, dims: dict[str, int], settings: Settings, options: dict[str, Any] | None = None
) -> NoReturn:
    """``gradcheck LAYER ...``: one spec, one case (or a sweep)."""
    from .api import make_report
    from .errors import SpecError
    from .spec import load_spec

    try:
        spec = load_spec(entry.path)
        case = _make_case(spec, settings, dims, options)
    except SpecError as exc:
        fail(str(exc))
    result = _run_one(case, settings)
    if options:
        result.notes.insert(0, "options set: " + ", ".join(f"{k}={v!r}" for k, v in options.items()))
    _emit(make_report([result]), settings)


def explain(entry: Entry) -> NoReturn:
    """``gradcheck LAYER --explain``: the derivation the spec carries."""
    from .errors import SpecError
    from .spec import load_spec

    try:
        spec = load_spec(entry.path)
    except SpecError as exc:
        fail(str(exc))
    print(f"{spec.name}: {spec.description}")
    if not spec.formulas:
        print("(this spec carries no formulas:)")
    for key, text in spec.formulas.items():
        print(f"\n{key}")
        for line in text.splitlines():
            print(f"    {line}")
    raise typer.Exit(EXIT_OK)


# -- per-layer commands ------------------------------------------------------------


def _dim_option(dim: str) -> str:
    return "--" + dim.replace("_", "-")


def _positive(dim: str, text: str) -> int:
    """A dim's value from the command line: a positive integer, or a one-line error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        fail(f"{_dim_option(dim)} must be a positive integer, got {text!r}")
    return value


def layer_command(entry: Entry) -> Any:
    """A typer command for one spec: its dims become options with their defaults."""

    def command(**kwargs: Any) -> None:
        if kwargs.pop("explain"):
            explain(entry)
        dims = {d: _positive(d, kwargs.pop(f"dim_{d}")) for d in cli_dims}
        options = _parse_options(kwargs.pop("option") or [])
        settings = Settings(_config(), **kwargs)
        check_layer(entry, dims, settings, options)

    # Only dims that can be options; a spec with others fails its validation when run.
    cli_dims = [
        d
        for d, default in entry.dims.items()
        if isinstance(default, int)
        and not isinstance(default, bool)
        and IDENT_RE.match(d)
        and d not in RESERVED_DIMS
    ]
    params = [
        inspect.Parameter(
            f"dim_{dim}",
            inspect.Parameter.KEYWORD_ONLY,
            default=str(default),
            annotation=Annotated[
                str,
                typer.Option(
                    _dim_option(dim), metavar="N", help=f"Size of dim {dim!r}.", rich_help_panel="Dims"
                ),
            ],
        )
        for dim, default in entry.dims.items()
        if dim in cli_dims
    ]
    params.append(
        inspect.Parameter("explain", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Explain)
    )
    params.append(
        inspect.Parameter("option", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=OptionSet)
    )
    params += [
        inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a) for n, a, d in COMMON
    ]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    sub = typer.Typer(add_completion=False, rich_markup_mode=None)
    help_text = f"{entry.description or entry.name}\n\nSpec: {entry.path}"
    sub.command(name=entry.name, help=help_text, context_settings={"help_option_names": ["-h", "--help"]})(
        command
    )
    return typer.main.get_command(sub)


class LayerGroup(typer.core.TyperGroup):
    """The static commands plus one command per known spec, built on demand."""

    def list_commands(self, ctx: Any) -> list[str]:
        static = super().list_commands(ctx)
        try:
            layers = sorted(entries(load_config()))
        except GradcheckError:
            layers = []
        return static + [n for n in layers if n not in static]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        try:
            entry = lookup(cmd_name, load_config())
        except GradcheckError as exc:
            if ctx.resilient_parsing:  # shell completion: stay quiet
                return None
            fail(str(exc))
        return layer_command(entry)


app = typer.Typer(
    cls=LayerGroup,
    name="gradcheck",
    help="Check a hand-written backward pass against PyTorch autograd, tensor by tensor.\n\n"
    "Run a built-in layer by name (gradcheck linear --in 3 --out 4), or your own specs with"
    " 'gradcheck run PATH'. 'gradcheck list' shows the layers.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"gradcheck {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Check a hand-written backward pass against PyTorch autograd."""


@app.command("list")
def list_layers(
    format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """List the built-in layers and those of [tool.gradcheck] spec_paths."""
    config = _config()
    try:
        known = entries(config)
    except GradcheckError as exc:
        fail(str(exc))
    for warning in warnings(config):
        print(f"gradcheck: warning: {warning}", file=sys.stderr)
    if format == "json":
        rows = [{"name": e.name, "description": e.description, "dims": e.dims} for e in known.values()]
        print(json.dumps(rows, indent=2))
        return
    if format != "table":
        fail(f"unknown --format {format!r} for list; choose table or json")
    lines = [(e.name, " ".join(f"{k}={v}" for k, v in e.dims.items()), e) for e in known.values()]
    name_w = max((len(n) for n, _, _ in lines), default=4)
    dims_w = max((len(d) for _, d, _ in lines), default=4)
    for name, dims, e in lines:
        origin = "" if e.builtin else f"  ({e.path})"
        print(f"{name.ljust(name_w)}  {dims.ljust(dims_w)}  {e.description}{origin}".rstrip())


@app.command("show")
def show(layer: Annotated[str, typer.Argument(help="A layer name (see 'gradcheck list').")]) -> None:
    """Print a layer's spec."""
    try:
        entry = lookup(layer, _config())
    except GradcheckError as exc:
        fail(str(exc))
    print(f"# {entry.path}")
    print(entry.path.read_text(encoding="utf-8").rstrip())


@app.command("run")
def run(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Spec files and/or directories (searched recursively).")
    ] = None,
    builtin: Annotated[bool, typer.Option("--builtin", help="Run the whole built-in catalogue.")] = False,
    keyword: Annotated[
        str | None,
        typer.Option("-k", help="Only specs whose name matches EXPR (pytest-style: 'lin and not relu')."),
    ] = None,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", "-x", help="Stop at the first spec that does not pass.")
    ] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Run specs in N worker processes.")] = 1,
    dtype: Dtype = None,
    device: Device = None,
    seed: Seed = None,
    atol: Atol = None,
    rtol: Rtol = None,
    format: Format = "table",
    output: Output = None,
    verbose: Verbose = False,
    sweep: Sweep = False,
    pdb: Pdb = False,
    exit_zero: ExitZero = False,
) -> None:
    """Run spec files and directories; each spec is one result."""
    from .suite import collect, run_suite

    settings = Settings(
        _config(),
        dtype=dtype,
        device=device,
        seed=seed,
        atol=atol,
        rtol=rtol,
        format=format,
        output=output,
        verbose=verbose,
        sweep=sweep,
        pdb=pdb,
        exit_zero=exit_zero,
    )
    targets = list(paths or [])
    if builtin:
        targets.append(builtin_dir())
    if not targets:
        fail("give spec files or directories to run, or --builtin")
    try:
        items = collect(targets, keyword)
    except GradcheckError as exc:
        fail(str(exc))
    if not items:
        fail("no specs found" + (f" matching -k {keyword!r}" if keyword else ""))
    report = run_suite(
        items, settings.run_options(), fail_fast=fail_fast, jobs=jobs, progress=_rich_terminal()
    )
    _emit(report, settings)


@app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="Layer name: [a-z][a-z0-9_]*.")],
    convention: Annotated[
        str,
        typer.Option("--convention", "-c", help="functional, fastai, cs231n, autograd_function or class."),
    ] = "functional",
    directory: Annotated[
        Path, typer.Option("--dir", "-d", help="Where to write NAME.yaml and NAME.py.")
    ] = Path("."),
) -> None:
    """Write NAME.yaml and a NAME.py template to fill in."""
    from .templates import write_template

    try:
        written = write_template(name, convention, directory)
    except GradcheckError as exc:
        fail(str(exc))
    for path in written:
        print(f"wrote {path}")
    print(f"write the backward in {written[1]}, then: gradcheck run {written[0]}")


if __name__ == "__main__":  # pragma: no cover
    app()
