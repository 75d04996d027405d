"""What every ``gradcheck`` command shares: one-line errors, the run's settings, the report's way
out (stdout, ``--output``) and the exit code. Nothing here imports torch."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from .cli_options import Emit, settings_from
from .config import Config, load_config
from .errors import GradcheckError
from .settings import RunSettings

if TYPE_CHECKING:
    from .result import Report
    from .spec import Spec

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def fail(message: str) -> NoReturn:
    """A usage or spec error: one line on stderr, exit 2."""
    print(f"gradcheck: error: {message}", file=sys.stderr)
    raise typer.Exit(EXIT_USAGE)


def config() -> Config:
    try:
        return load_config()
    except GradcheckError as exc:
        fail(str(exc))


def settings(options: dict[str, Any]) -> tuple[RunSettings, Emit]:
    try:
        return settings_from(options, config())
    except GradcheckError as exc:
        fail(str(exc))


def guard_output(emit: Emit, specs: list[Spec]) -> None:
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


def emit(report: Report, settings: Emit) -> NoReturn:
    """Print the report, write --output, and exit with the report's code."""
    show(report, settings)
    code = report.exit_code
    if settings.exit_zero and code == EXIT_FAIL:
        code = EXIT_OK
    raise typer.Exit(code)


def show(report: Report, settings: Emit) -> None:
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


def progress_wanted(emit: Emit) -> bool:
    """A progress bar goes to stderr: shown when stderr is a terminal, whatever stdout is."""
    return emit.quiet < 2 and sys.stderr.isatty()


def refuse_missing_device(device: str) -> None:
    """``--device cuda`` on a machine without one: one usage error up front, not one per spec."""
    from .suite import cuda_problem

    problem = cuda_problem(device)
    if problem:
        fail(problem)
