"""The ``gradcheck`` command: find specs, call the library, render, pick the exit code.

Nothing here imports torch at module level: ``--help``, ``list`` and shell
completion stay fast. Each spec becomes a command of its own (``gradcheck
linear --in 3 --out 4``), built lazily by :class:`LayerGroup`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.core
import typer.main

from . import __version__
from . import cli_common as common
from .catalogue import builtin_dir, entries, lookup, warnings
from .cli_layers import LayerGroup
from .cli_options import (
    RUN_OPTIONS,
    keyword,
    with_common_options,
)
from .errors import GradcheckError
from .templates import CONVENTIONS as TEMPLATE_CONVENTIONS

if TYPE_CHECKING:
    pass

common.EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


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
        raise typer.Exit(common.EXIT_OK)


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
    config = common.config()
    try:
        known = entries(config)
    except GradcheckError as exc:
        common.fail(str(exc))
    for warning in warnings(config):
        print(f"gradcheck: warning: {warning}", file=sys.stderr)
    if format == "json":
        rows = [{"name": e.name, "description": e.description, "dims": e.dims} for e in known.values()]
        print(json.dumps(rows, indent=2))
        return
    if format != "table":
        common.fail(f"unknown --format {format!r} for list; choose table or json")
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
        entry = lookup(layer, common.config())
    except GradcheckError as exc:
        common.fail(str(exc))
    from .spec import read_spec_text

    try:
        text = read_spec_text(entry.path)
    except GradcheckError as exc:
        common.fail(str(exc))
    print(f"# {entry.path}")
    print(text.rstrip())


def run(**kwargs: Any) -> None:
    """Run spec files and directories; each spec is one result."""
    from .suite import collect_all, run_suite, select, supervisor

    paths, builtin, keyword = kwargs.pop("paths"), kwargs.pop("builtin"), kwargs.pop("keyword")
    fail_fast, jobs, watching = kwargs.pop("fail_fast"), kwargs.pop("jobs"), kwargs.pop("watch")
    settings, emit = common.settings(kwargs)
    supervisor(jobs, isolate=not settings.pdb)  # the worker server's torch import overlaps what follows
    targets = list(paths or [])
    if builtin:
        targets.append(builtin_dir())
    if not targets:
        common.fail("give spec files or directories to run, or --builtin")
    try:
        found = collect_all(targets)
        items = select(found, keyword)
    except GradcheckError as exc:
        common.fail(str(exc))
    if not items:
        common.fail("no specs found" + (f" matching -k {keyword!r}" if keyword else ""))
    common.guard_output(emit, common.files_read(found, items))  # every spec found, deselected ones too
    common.refuse_missing_device(settings.device)
    report = run_suite(items, settings, fail_fast=fail_fast, jobs=jobs, progress=common.progress_wanted(emit))
    if not watching:
        common.emit(report, emit)
    from .watch import watch

    common.show(report, emit)
    try:
        watch(targets, keyword, items, lambda again: common.show(run_suite(again, settings, jobs=jobs), emit))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


app.command("run")(with_common_options(run, [keyword(n, a, d) for n, a, d in RUN_OPTIONS]))


@app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="Layer name: [a-z][a-z0-9_]*.")],
    convention: Annotated[
        str,
        typer.Option(
            "--convention",
            "-c",
            help=f"{', '.join(TEMPLATE_CONVENTIONS[:-1])} or {TEMPLATE_CONVENTIONS[-1]}.",
        ),
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
        common.fail(str(exc))
    for path in written:
        print(f"wrote {path}")
    print(f"write the backward in {written[1]}, then: gradcheck run {written[0]}")


if __name__ == "__main__":  # pragma: no cover
    app()
