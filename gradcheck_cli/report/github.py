"""The report as GitHub Actions workflow commands: each failure annotated on the spec's diff.

One ``::error`` per failing tensor, at that tensor's line of its spec file, and
one per result that raised, could not run, was interrupted, or was expected to
fail and passed (strict, as pytest's ``xfail_strict``); then one ``::notice``
with the run's counts. Passing, skipped and expected-to-fail specs get no
annotation of their own::

    ::error file=specs/dense.yaml,line=8,title=dense%3A b::b: shape_error, expected [out=2], got ...
    ::notice title=gradcheck::FAIL: 1 passed, 1 failed, 0 errors

Paths are relative to the repository, as GitHub needs them to find the file in
the diff: to ``$GITHUB_WORKSPACE`` (where the workflow checked it out, also when
a step runs in a ``working-directory`` below it), or without it to the working
directory; with ``/``. Text is escaped as GitHub's runner reads it: ``%``, CR and
LF in a message; those and ``:`` and ``,`` in a property. A result with no
line of its own (an error, or a tensor whose line is unknown) is annotated at
the spec's first line; one from the Python API, which has no file, at none.
GitHub shows at most 10 error annotations per step; the notice still counts all.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath

from ..result import CaseResult, Report
from .junit import check_message, result_message
from .status import counts_text


def escape_data(text: str) -> str:
    """A command's message: ``%``, CR and LF escaped."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A command's property value: as a message, and ``:`` and ``,`` too."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str, **properties: str | int | None) -> str:
    """``::name key=value,key=value::message``, the properties that are not None, escaped."""
    given = ",".join(
        f"{key}={escape_property(str(value))}" for key, value in properties.items() if value is not None
    )
    return f"::{name}{' ' + given if given else ''}::{escape_data(message)}"


def workspace_path(source: str) -> str | None:
    """The spec file relative to ``$GITHUB_WORKSPACE`` (or the working directory), with ``/``;
    None when there is no file. A file outside it keeps its path as given."""
    if not source or source.startswith("<"):
        return None
    base = Path(os.environ.get("GITHUB_WORKSPACE") or os.getcwd()).resolve()
    path = Path(source)
    try:
        path = path.resolve().relative_to(base)
    except (OSError, ValueError):
        pass
    return PurePath(path).as_posix()


def result_commands(result: CaseResult) -> list[str]:
    """The ``::error`` commands of one result: one per failing tensor, or one for the result."""
    file = workspace_path(result.source)
    first_line = 1 if file is not None else None
    case = result.headline()
    if result.status == "fail":
        return [
            command(
                "error",
                f"{check_message(check)}\n{case}",
                file=file,
                line=check.line if check.line is not None and file is not None else first_line,
                title=f"{result.spec}: {check.name}",
            )
            for check in result.failing
        ]
    if result.status in ("error", "xpass", "interrupted"):
        title = "spec error" if result.spec_error else result.status
        return [
            command(
                "error",
                f"{result_message(result)}\n{case}",
                file=file,
                line=first_line,
                title=f"{result.spec}: {title}",
            )
        ]
    return []


def render_github(report: Report) -> str:
    """Every failure as an ``::error`` workflow command, then a ``::notice`` with the counts."""
    lines = [line for result in report.results for line in result_commands(result)]
    verdict = "PASS" if report.ok else "FAIL"
    lines.append(command("notice", f"{verdict}: {counts_text(report)}", title="gradcheck"))
    return "\n".join(lines)
