"""What every ``gradcheck`` command shares: one-line errors, the run's settings, the report's way
out (stdout, ``--output``) and the exit code. Nothing here imports torch."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from .cli_options import Emit, settings_from
from .config import Config, load_config
from .errors import GradcheckError
from .settings import RunSettings

if TYPE_CHECKING:
    from .result import Report
    from .spec import Spec
    from .suite import Item

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


def guard_output(emit: Emit, files: Iterable[tuple[str, Path]]) -> None:
    """Refuse an --output that is a file the run reads: ``files`` gives (what it is, its path); the
    config file (``[tool.gradcheck]``'s pyproject.toml) is always one."""
    if emit.output is None:
        return
    target = emit.output.resolve()
    if target.is_dir():
        fail(f"--output {emit.output} is a directory; give a file name")
    if not target.parent.is_dir():  # said now, not after every spec has run
        fail(f"cannot write --output {emit.output}: no directory {target.parent}")
    settings_file = config().path  # the pyproject.toml whose [tool.gradcheck] this run read
    for what, path in [*files, *([("the config file", settings_file)] if settings_file else [])]:
        if _same_file(path, target):
            fail(f"--output {emit.output} is {what}: gradcheck will not overwrite it")


def _same_file(path: Path, target: Path) -> bool:
    """The same file by its resolved path, or (a hard link) by its device and inode."""
    if path.resolve() == target:
        return True
    try:
        return os.path.samefile(path, target)
    except OSError:
        return False


def files_read(found: Iterable[Item], selected: Iterable[Item] | None = None) -> list[tuple[str, Path]]:
    """Every file a run may read, described: each spec file found and the code files it names.
    A spec that runs (in ``selected``, all of ``found`` by default) is said by its name; one that
    ``-k`` left out or that did not load, by its path (the code files of one that did not load:
    those its YAML names)."""
    found = list(found)
    running = {item.path for item in (found if selected is None else selected) if item.spec is not None}
    described: list[tuple[str, Path]] = []
    for item in found:
        if item.spec is not None and item.path in running:
            described += [(f"{item.spec.name}'s {key}", file) for key, file in item.spec.files_read().items()]
            continue
        described.append((f"the spec file {item.path}", item.path))
        named = item.declared_files if item.spec is None else _code_files(item.spec)
        described += [(f"the {key} file {item.path} names", file) for key, file in named.items()]
    return described


def _code_files(spec: Spec) -> dict[str, Path]:
    """A loaded spec's code files, by section (``implementation``, ``reference``)."""
    return {key.removesuffix(" file"): file for key, file in spec.files_read().items() if key != "spec file"}


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
