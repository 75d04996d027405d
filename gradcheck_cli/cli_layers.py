"""A command per spec: ``gradcheck linear --in 3 --out 4``, its dims as options, built on demand.

:class:`LayerGroup` lists the static commands and the known specs (``--help`` reads only the
built-in ones) and builds a spec's command when it is asked for; the command checks its dims
and options here, then runs the spec in a worker.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

import typer
import typer.core
import typer.main

from . import cli_common as common
from .catalogue import Entry, builtin_entries, entries, lookup
from .cli_options import OWN_OPTIONS, Explain, OptionSet, keyword, with_common_options
from .config import load_config
from .errors import GradcheckError
from .names import IDENT_RE
from .spec.model import MAX_DIM


def _parse_options(items: list[str]) -> dict[str, Any]:
    import yaml

    options: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            common.fail(f"--option takes NAME=VALUE, got {item!r}")
        try:
            options[name.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            common.fail(f"--option {name.strip()}: {text!r} is not a YAML value")
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

    settings, emit = common.settings(shared)
    supervisor(1, isolate=not settings.pdb)  # the worker server's torch import overlaps what follows
    try:
        spec = load_spec(entry.path)
        common.guard_output(emit, common.files_read([Item(entry.path, spec)]))
        case_for(spec, settings, dims, options)  # a wrong dim, option or tolerance: exit 2 now
        common.refuse_missing_device(settings.device)
    except SpecError as exc:
        common.fail(str(exc))
    result = run_supervised(Item(entry.path, spec), settings, dims, options)
    if result.spec_error and not result.checks:
        common.fail(result.error or "the spec cannot run")
    report = make_report([result])
    interrupted = supervisor(1, isolate=not settings.pdb).interrupted
    report.interrupted = int(interrupted) if interrupted else None
    common.emit(report, emit)


def explain(entry: Entry) -> NoReturn:
    """``gradcheck LAYER --explain``: the derivation the spec carries."""
    from .errors import SpecError
    from .spec import load_spec

    try:
        spec = load_spec(entry.path)
    except SpecError as exc:
        common.fail(str(exc))
    print(f"{spec.name}: {spec.description}")
    if not spec.formulas:
        print("(this spec carries no formulas:)")
    for key, text in spec.formulas.items():
        print(f"\n{key}")
        for line in text.splitlines():
            print(f"    {line}")
    raise typer.Exit(common.EXIT_OK)


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
        common.fail(f"{_dim_option(dim)} must be a positive integer, got {text!r}")
    if value > MAX_DIM:
        common.fail(f"{_dim_option(dim)} is {value}: larger than any tensor can be (at most {MAX_DIM})")
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
            common.fail(
                f"{where}: dims.{dim}: {dim!r} clashes with gradcheck's own {_dim_option(dim)} option"
            )
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


def _usage_message(exc: Exception) -> str:
    """A usage error's message on one line, with the command's help to turn to."""
    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else str(exc)
    message = " ".join(str(message).split())
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None)
    return f"{message} (see '{path} -h')" if path else message


def _short(text: str, limit: int) -> str:
    """The first line of ``text``, cut at a word to fit ``limit`` (``...`` when cut), as click does."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    if len(line) <= limit:
        return line
    cut = line[: max(limit - 3, 0)].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "..."


# click's ClickException, the base of every usage error, reached through typer's own BadParameter:
# typer >= 0.26 bundles click (where it derives from typer.TyperException), older typer uses click's.
_USAGE_ERRORS: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class LayerGroup(typer.core.TyperGroup):
    """The static commands plus one command per known spec, built on demand."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **kwargs: Any,
    ) -> Any:
        """typer's main, with a usage error (a bad option value, an unknown option, a missing
        argument) said on one line, as gradcheck's own errors are: ``gradcheck: error: ...``."""
        if not windows_expand_args:  # passed on only when given: typer < 0.26 has no such argument
            kwargs["windows_expand_args"] = False
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **kwargs)
        try:
            code = super().main(args, prog_name, complete_var, False, **kwargs)
        except typer.Abort:
            print("Aborted!", file=sys.stderr)
            sys.exit(1)
        except _USAGE_ERRORS as exc:
            show = getattr(exc, "show", None)
            if type(exc).__name__ == "NoArgsIsHelpError" and callable(show):  # its message is the help
                show()
                sys.exit(getattr(exc, "exit_code", common.EXIT_USAGE))
            print(f"gradcheck: error: {_usage_message(exc)}", file=sys.stderr)
            sys.exit(getattr(exc, "exit_code", common.EXIT_USAGE))
        sys.exit(code if isinstance(code, int) else common.EXIT_OK)

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
            common.fail(str(exc))
        return layer_command(entry)
