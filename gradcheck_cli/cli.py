"""The ``gradcheck`` command: find specs, call the library, render, pick the exit code.

Nothing here imports torch at module level: ``--help``, ``list`` and shell
completion stay fast. Each spec becomes a command of its own (``gradcheck
linear --in 3 --out 4``), built lazily by :class:`LayerGroup`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
import typer.core
import typer.main

from . import __version__
from .catalogue import Entry, builtin_dir, builtin_entries, entries, lookup, warnings
from .cli_options import (
    OWN_OPTIONS,
    RUN_OPTIONS,
    Emit,
    Explain,
    OptionSet,
    keyword,
    settings_from,
    with_common_options,
)
from .config import Config, load_config
from .errors import GradcheckError
from .names import IDENT_RE
from .settings import RunSettings
from .spec.model import MAX_DIM

if TYPE_CHECKING:
    from .result import Report
    from .spec import Spec

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


def _settings(options: dict[str, Any]) -> tuple[RunSettings, Emit]:
    try:
        return settings_from(options, _config())
    except GradcheckError as exc:
        fail(str(exc))


def _guard_output(emit: Emit, specs: list[Spec]) -> None:
    """Refuse an --output that is a file a checked spec reads (its spec, implementation or reference)."""
    if emit.output is None:
        return
    target = emit.output.resolve()
    if target.is_dir():
        fail(f"--output {emit.output} is a directory; give a file name")
    for spec in specs:
        for key, path in spec.files_read().items():
            if path.resolve() == target:
                fail(f"--output {emit.output} is {spec.name}'s {key}: gradcheck will not overwrite it")


def _emit(report: Report, settings: Emit) -> NoReturn:
    """Print the report, write --output, and exit with the report's code."""
    _show(report, settings)
    code = report.exit_code
    if settings.exit_zero and code == EXIT_FAIL:
        code = EXIT_OK
    raise typer.Exit(code)


def _show(report: Report, settings: Emit) -> None:
    """Print the report and write --output."""
    from .report import render

    for result in report.results:
        if result.spec_error:
            print(f"gradcheck: error: {result.error}", file=sys.stderr)
    stdout_format = "table" if settings.output is not None else settings.format
    if stdout_format == "table":
        from .report.table import print_report

        print_report(report, color=settings.color, verbose=settings.verbose, quiet=settings.quiet)
    else:
        sys.stdout.write(render(report, stdout_format) + "\n")
    if settings.output is not None:
        try:
            settings.output.write_text(render(report, settings.format) + "\n", encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {settings.output}: {exc.strerror}")


def _progress_wanted(emit: Emit) -> bool:
    """A progress bar goes to stderr: shown when stderr is a terminal, whatever stdout is."""
    return emit.quiet < 2 and sys.stderr.isatty()


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
    entry: Entry, dims: dict[str, int], options: dict[str, Any], shared: dict[str, Any]
) -> NoReturn:
    """``gradcheck LAYER ...``: one spec, one case (or a sweep), in a worker process."""
    from .api import make_report
    from .case import case_for
    from .errors import SpecError
    from .spec import load_spec
    from .suite import Item, run_supervised, supervisor

    settings, emit = _settings(shared)
    supervisor(1, isolate=not settings.pdb)  # the worker server's torch import overlaps what follows
    try:
        spec = load_spec(entry.path)
        _guard_output(emit, [spec])
        case_for(spec, settings, dims, options)  # a wrong dim, option or tolerance: exit 2 now
        _refuse_missing_device(settings.device)
    except SpecError as exc:
        fail(str(exc))
    result = run_supervised(Item(entry.path, spec), settings, dims, options)
    if result.spec_error and not result.checks:
        fail(result.error or "the spec cannot run")
    report = make_report([result])
    interrupted = supervisor(1, isolate=not settings.pdb).interrupted
    report.interrupted = int(interrupted) if interrupted else None
    _emit(report, emit)


def _refuse_missing_device(device: str) -> None:
    """``--device cuda`` on a machine without one: one usage error up front, not one per spec."""
    from .suite import cuda_problem

    problem = cuda_problem(device)
    if problem:
        fail(problem)


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
    if value > MAX_DIM:
        fail(f"{_dim_option(dim)} is {value}: larger than any tensor can be (at most {MAX_DIM})")
    return value


def layer_command(entry: Entry) -> Any:
    """A typer command for one spec: its dims become options with their defaults."""

    def command(**kwargs: Any) -> None:
        if kwargs.pop("explain"):
            explain(entry)
        for dim in clashing:
            where = (
                f"{entry.path}:{entry.lines[f'dims.{dim}']}" if f"dims.{dim}" in entry.lines else entry.path
            )
            fail(f"{where}: dims.{dim}: {dim!r} clashes with gradcheck's own {_dim_option(dim)} option")
        dims = {d: _positive(d, kwargs.pop(f"dim_{d}")) for d in cli_dims}
        options = _parse_options(kwargs.pop("option") or [])
        check_layer(entry, dims, options, kwargs)

    # Only dims that can be options; a spec with others fails its validation when run.
    usable = [
        d
        for d, v in entry.dims.items()
        if isinstance(v, int) and not isinstance(v, bool) and IDENT_RE.match(d)
    ]
    clashing = [d for d in usable if d in OWN_OPTIONS]
    cli_dims = [d for d in usable if d not in OWN_OPTIONS]
    dim_options = [
        keyword(
            f"dim_{dim}",
            Annotated[
                str,
                typer.Option(
                    _dim_option(dim), metavar="N", help=f"Size of dim {dim!r}.", rich_help_panel="Dims"
                ),
            ],
            str(entry.dims[dim]),
        )
        for dim in cli_dims
    ]
    with_common_options(
        command, [*dim_options, keyword("explain", Explain, False), keyword("option", OptionSet, None)]
    )
    sub = typer.Typer(add_completion=False, rich_markup_mode=None)
    help_text = f"{entry.description or entry.name}\n\nSpec: {entry.path}"
    sub.command(name=entry.name, help=help_text, context_settings={"help_option_names": ["-h", "--help"]})(
        command
    )
    return typer.main.get_command(sub)


def _short(text: str, limit: int) -> str:
    """The first line of ``text``, cut at a word to fit ``limit`` (``...`` when cut), as click does."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    if len(line) <= limit:
        return line
    cut = line[: max(limit - 3, 0)].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "..."


class LayerGroup(typer.core.TyperGroup):
    """The static commands plus one command per known spec, built on demand."""

    def list_commands(self, ctx: Any) -> list[str]:
        static = super().list_commands(ctx)
        try:
            layers = sorted(entries(load_config()))
        except GradcheckError:
            layers = []
        return static + [n for n in layers if n not in static]

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """``--help``: the commands and the built-in layers; configured specs are not read."""
        group = typer.core.TyperGroup
        static = [(n, group.get_command(self, ctx, n)) for n in group.list_commands(self, ctx)]
        commands = [(n, c.get_short_help_str(limit=999)) for n, c in static if c is not None and not c.hidden]
        commands += [(e.name, e.description) for e in sorted(builtin_entries(), key=lambda e: e.name)]
        limit = formatter.width - 6 - max(len(name) for name, _ in commands)
        rows = [(name, _short(text, limit)) for name, text in commands]
        with formatter.section("Commands"):
            formatter.write_dl(rows)
        with formatter.section("Your specs"):
            formatter.write_text(
                "The specs of [tool.gradcheck] spec_paths run by name too: 'gradcheck list' shows them all."
            )

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
    for stream in (sys.stdout, sys.stderr):
        # Whatever the checked code's messages hold (a lone surrogate), a report still prints.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


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
    from .spec import read_spec_text

    try:
        text = read_spec_text(entry.path)
    except GradcheckError as exc:
        fail(str(exc))
    print(f"# {entry.path}")
    print(text.rstrip())


def run(**kwargs: Any) -> None:
    """Run spec files and directories; each spec is one result."""
    from .suite import collect, run_suite, supervisor

    paths, builtin, keyword = kwargs.pop("paths"), kwargs.pop("builtin"), kwargs.pop("keyword")
    fail_fast, jobs, watching = kwargs.pop("fail_fast"), kwargs.pop("jobs"), kwargs.pop("watch")
    settings, emit = _settings(kwargs)
    supervisor(jobs, isolate=not settings.pdb)  # the worker server's torch import overlaps what follows
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
    _guard_output(emit, [item.spec for item in items if item.spec is not None])
    _refuse_missing_device(settings.device)
    report = run_suite(items, settings, fail_fast=fail_fast, jobs=jobs, progress=_progress_wanted(emit))
    if not watching:
        _emit(report, emit)
    from .watch import watch

    _show(report, emit)
    try:
        watch(targets, keyword, items, lambda again: _show(run_suite(again, settings, jobs=jobs), emit))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


app.command("run")(with_common_options(run, [keyword(n, a, d) for n, a, d in RUN_OPTIONS]))


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
