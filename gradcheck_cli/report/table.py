"""The report as a table: one rich renderer for a terminal, a log and a string.

:func:`print_report` prints it, in colour or not: ``color="auto"`` lets rich decide
(a terminal, ``FORCE_COLOR``), ``NO_COLOR`` turns colour off, ``"always"`` and
``"never"`` override both. :func:`render_text` is the same output without colour, as a
string (``str(report)``, JUnit and Markdown bodies).

The layout does not depend on colour. On a terminal the table fits its width: when one
row per tensor is too wide, the columns fold into two tables (what the tensor is, then
its numbers), then shapes wrap at their spaces, then each tensor becomes a few lines; a
number is never cut. Output that is not a terminal is not folded (a log keeps one row
per tensor), nor is any line of text wrapped: a hint stays on one line to be searched.
"""

from __future__ import annotations

import io
import os
import re
import sys
from typing import IO, Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ..result import CaseResult, Check, Report, format_pair
from .errormap import map_lines
from .status import verdict

COLUMNS = (
    "tensor",
    "kind",
    "expected shape",
    "got shape",
    "max abs err",
    "max rel err",
    "mismatched",
    "status",
)
# With a calibrated tolerance the verdict is against a float64 truth: the errors of the
# checked code and of torch itself in the checked dtype, and their ratio.
CALIBRATED_COLUMNS = (
    "tensor",
    "kind",
    "expected shape",
    "got shape",
    "vs truth",
    "torch vs truth",
    "ratio",
    "mismatched",
    "status",
)
NUMBERS = frozenset({"max abs err", "max rel err", "vs truth", "torch vs truth", "ratio", "mismatched"})
STATUS_STYLE = {"pass": "green", "mismatch": "red", "shape_error": "red", "missing": "yellow", "error": "red"}
RESULT_STYLE = {
    "pass": "bold green",
    "fail": "bold red",
    "error": "bold red",
    "skip": "yellow",
    "xfail": "yellow",
    "xpass": "bold red",
    "interrupted": "bold yellow",
}
# Results that are shown in full under --quiet and listed in the short summary.
FAILING = {"fail": "FAILED", "error": "ERROR", "xpass": "XPASS", "interrupted": "INTERRUPTED"}
# The one line of a result that is not failing, under --quiet.
QUIET_WORD = {"pass": "PASSED", "skip": "SKIPPED", "xfail": "XFAIL"}
COLORS = ("auto", "always", "never")
UNBOUNDED = 100_000  # the width of output that is not folded
INDENT = 2
GAP = 2  # spaces between columns


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def calibrated(result: CaseResult) -> bool:
    """Whether any tensor of the result was measured against a float64 truth."""
    return any(
        c.truth_error is not None or c.reference_error is not None or c.error_ratio is not None
        for c in result.checks
    )


def columns(result: CaseResult) -> tuple[str, ...]:
    return CALIBRATED_COLUMNS if calibrated(result) else COLUMNS


def row(check: Check, with_truth: bool = False) -> list[str]:
    """The cells of one tensor's row, in the order of :func:`columns`."""
    exp, got = check.shapes_text()
    mismatched = "-" if check.mismatched is None else f"{check.mismatched}/{check.compared}"
    status = check.status.upper() if check.status == "pass" else check.status
    if with_truth:  # the error against the truth is max abs err, against the float64 truth
        errors = [_num(check.truth_error), _num(check.reference_error), _ratio(check.error_ratio)]
    else:
        errors = [_num(check.max_abs_err), _num(check.max_rel_err)]
    return [check.name, check.kind, exp, got, *errors, mismatched, status]


def details(check: Check, verbose: bool) -> list[str]:
    """The lines under the table for a failing check: diagnosis, worst element."""
    lines: list[str] = []
    if not check.ok or verbose:
        if check.unstable:
            lines.append(f"{check.name}: {check.unstable} elements at a kink, not compared")
        if check.sampled:
            s = check.sampled
            lines.append(
                f"{check.name}: sampled {s.get('elements')} of {s.get('numel')} elements"
                + (f", {s['directions']} directions" if s.get("directions") else "")
            )
    if check.ok and check.diagnosis is None:
        return lines
    label = f"[{check.diagnosis}] " if check.diagnosis else ""
    if check.hint:
        lines.insert(0, f"{check.name}: {label}{check.hint}")
    elif label:
        lines.insert(0, f"{check.name}: {label.strip()}")
    if check.worst_index is not None:
        expected, actual = format_pair(check.expected_value, check.actual_value)
        lines.append(f"{check.name}: worst element {check.worst_index}: expected {expected}, got {actual}")
    return lines


def tolerance_text(tolerance: dict[str, Any] | None) -> str:
    """``atol=1e-07 rtol=1e-07 (default)``, ``ratio<=4 vs float64 truth (spec)``; '' when unknown."""
    if not tolerance:
        return ""
    if tolerance.get("mode") == "calibrated" and tolerance.get("ratio") is not None:
        text = f"ratio<={tolerance['ratio']:g} vs float64 truth"
    else:
        parts = [f"{k}={tolerance[k]:g}" for k in ("atol", "rtol") if tolerance.get(k) is not None]
        if not parts:
            return ""
        text = " ".join(parts)
    source = tolerance.get("source")
    if isinstance(source, dict):
        source = ", ".join(f"{k}: {v}" for k, v in source.items())
    return f"{text} ({source})" if source else text


def header(result: CaseResult) -> str:
    """The result's first line: spec, case, tolerance (and a reference that is not one), where the spec is."""
    tolerance = tolerance_text(result.tolerance)
    numerical = result.reference if (result.reference or "").startswith("numerical") else ""
    extra = " ".join(part for part in (tolerance, f"reference: {numerical}" if numerical else "") if part)
    return f"{result.headline()}{' ' + extra if extra else ''}  ({result.source})"


def _reason(result: CaseResult) -> str | None:
    reason = result.reason
    return str(reason) if reason else None


def status_line(result: CaseResult) -> str | None:
    """What a skip, xfail, xpass or interruption means, under the header."""
    reason = _reason(result)
    if result.status == "skip":
        return f"skipped: {reason or result.error or 'the spec says skip'}"
    if result.status == "xfail":
        return "xfail: failed, as the spec expects" + (f" ({reason})" if reason else "")
    if result.status == "xpass":
        return "xpass: passed, but the spec expects it to fail" + (f" ({reason})" if reason else "")
    if result.status == "interrupted":
        return "interrupted: the run was stopped before this spec finished"
    return None


def _sweep_case(s: dict[str, Any]) -> str:
    dims = " ".join(f"{k}={v}" for k, v in s["dims"].items())
    return f"{dims} seed={s['seed']}: {s['status']}"


def _case(result: CaseResult) -> str:
    dims = " ".join(f"{k}={v}" for k, v in result.dims.items())
    case = " ".join(p for p in (dims, result.dtype, result.device, f"seed={result.seed}") if p)
    return f"{result.spec}[{case}]"


def summary_line(result: CaseResult, qualified: bool = False) -> str | None:
    """``FAILED dense (specs/dense.yaml): b shape_error [missing_reduction]``; None for a
    result that did not fail. ``qualified`` adds the case (a spec run more than once)."""
    word = FAILING.get(result.status)
    if word is None:
        return None
    name = _case(result) if qualified else result.spec
    if result.status == "fail":
        reason = ", ".join(
            f"{c.name} {c.status}" + (f" [{c.diagnosis}]" if c.diagnosis else "") for c in result.failing
        )
    elif result.status == "error" and result.error and result.error.strip():
        reason = result.error.strip().splitlines()[0]
    else:
        reason = (status_line(result) or "").split(": ", 1)[-1]
    return f"{word} {name} ({result.source})" + (f": {reason}" if reason else "")


def summary_lines(report: Report) -> list[str]:
    """pytest's short summary: a line per result that did not pass, for a run of several
    (one result's table is just above)."""
    if len(report.results) < 2:
        return []
    names = [r.spec for r in report.results]
    lines = (summary_line(r, qualified=names.count(r.spec) > 1) for r in report.results)
    return [line for line in lines if line is not None]


# -- the table, folded to a width ----------------------------------------------------


def _words(text: str) -> int:
    return max((cell_len(w) for w in text.split()), default=0)


def _fit_widths(natural: list[int], minimum: list[int], room: int) -> list[int] | None:
    """Column widths summing to at most ``room``: the widest narrowed first, none below its
    longest word; None when even that is too wide."""
    if sum(natural) <= room:
        return natural
    if sum(minimum) > room:
        return None
    widths = list(natural)
    while sum(widths) > room:
        slack = [(w, i) for i, (w, m) in enumerate(zip(widths, minimum)) if w > m]
        _, i = max(slack)
        widths[i] -= 1
    return widths


def _table(heads: list[str], rows: list[list[Text]], widths: list[int]) -> RenderableType:
    table = Table(box=None, padding=(0, GAP // 2), pad_edge=False, show_edge=False, header_style="bold")
    for head, width in zip(heads, widths):
        table.add_column(head, width=width, no_wrap=False, overflow="fold")
    for cells in rows:
        table.add_row(*cells)
    return Padding(table, (0, 0, 0, INDENT), expand=False)


def _cells(check: Check, with_truth: bool) -> list[Text]:
    cells = [Text(c) for c in row(check, with_truth)]  # Text: a shape like [batch=5] is not markup
    cells[-1].stylize(STATUS_STYLE.get(check.status, ""))
    return cells


def table_parts(result: CaseResult, width: int) -> list[RenderableType]:
    """The result's table, folded to ``width``: one table, two, or a few lines per tensor."""
    with_truth = calibrated(result)
    heads = list(columns(result))
    texts = [row(c, with_truth) for c in result.checks]
    cells = [_cells(c, with_truth) for c in result.checks]
    natural = [max(cell_len(t) for t in [h] + [r[i] for r in texts]) for i, h in enumerate(heads)]
    minimum = [max(_words(t) for t in [h] + [r[i] for r in texts]) for i, h in enumerate(heads)]

    def room(n: int) -> int:
        return width - INDENT - GAP * (n - 1)

    if sum(natural) <= room(len(heads)):
        return [_table(heads, cells, natural)]
    what = [i for i, h in enumerate(heads) if h not in NUMBERS]
    numbers = [0] + [i for i, h in enumerate(heads) if h in NUMBERS]
    parts: list[RenderableType] = []
    for group in (what, numbers):
        widths = _fit_widths([natural[i] for i in group], [minimum[i] for i in group], room(len(group)))
        if widths is None:
            return _cards(result, heads, texts, cells)
        parts.append(_table([heads[i] for i in group], [[r[i] for i in group] for r in cells], widths))
    return parts


def _cards(
    result: CaseResult, heads: list[str], texts: list[list[str]], cells: list[list[Text]]
) -> list[RenderableType]:
    """Too narrow for any table: each tensor as its name, kind and status, then a line a field."""
    label_w = max(cell_len(h) for h in heads[2:-1])
    parts: list[RenderableType] = []
    for text, cell in zip(texts, cells):
        first = Text(" " * INDENT + f"{text[0]}  {text[1]}  ")
        first.append_text(cell[-1])
        parts.append(_line(first))
        for head, value in zip(heads[2:-1], text[2:-1]):
            parts.append(_line(Text(" " * (INDENT + 2) + f"{head.ljust(label_w)}  {value}")))
    return parts


def _line(text: Text | str, style: str = "") -> Text:
    """A line that is never wrapped nor cut (the terminal wraps it if it must)."""
    line = text if isinstance(text, Text) else Text(text, style=style)
    line.no_wrap = True
    line.overflow = "ignore"
    return line


class ReportView:
    """The report as a rich renderable; the layout adapts to the width rich renders it at."""

    def __init__(self, report: Report, verbose: bool = False, quiet: int = 0, wrap: bool = False) -> None:
        self.report = report
        self.verbose = verbose
        self.quiet = int(quiet)
        self.wrap = wrap  # wrap long lines at the width (for a rich console that crops them)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for part in self.parts(options.max_width, not options.encoding.lower().startswith("utf")):
            if self.wrap and isinstance(part, Text):
                part.no_wrap, part.overflow = False, "fold"
            yield part

    def parts(self, width: int, ascii: bool) -> RenderResult:
        """The lines and tables of the report, laid out for ``width``."""
        for result in self.report.results:
            if self.quiet and result.status not in FAILING:
                if self.quiet == 1:
                    word = QUIET_WORD.get(result.status, result.status.upper())
                    reason = status_line(result) if result.status == "skip" else None
                    text = f"{word} {result.spec} ({result.source})"
                    yield _line(
                        text + (f": {reason.split(': ', 1)[1]}" if reason else ""),
                        RESULT_STYLE.get(result.status, ""),
                    )
                continue
            yield from self.result(result, width, ascii)
        if self.quiet == 1 and any(r.status not in FAILING for r in self.report.results):
            yield _line("")
        for line in summary_lines(self.report):
            yield _line(line, "red")
        yield _line(verdict(self.report), "bold green" if self.report.ok else "bold red")

    def result(self, result: CaseResult, width: int, ascii: bool) -> RenderResult:
        yield _line(header(result), RESULT_STYLE.get(result.status, ""))
        status = status_line(result)
        if status:
            yield _line(" " * INDENT + status, RESULT_STYLE.get(result.status, ""))
        if result.checks:
            yield from table_parts(result, width)
        indent = " " * INDENT
        if result.error and result.status != "skip":
            yield _line(f"{indent}error: {result.error}")
        for check in result.checks:
            for line in details(check, self.verbose):
                yield _line(indent + line)
            if self.verbose and check.excerpt and (not check.ok or check.diagnosis):
                for line in check.excerpt.splitlines():
                    yield _line(f"{indent}    {line}")
            if check.error_map is not None and not check.ok:
                lines = map_lines(
                    check.name,
                    check.error_map,
                    worst=check.worst_index,
                    verbose=self.verbose,
                    width=width,
                    ascii=ascii,
                )
                for text in lines:
                    yield _line(text)
        for note in result.notes_to_show(self.verbose):
            yield _line(f"{indent}note: {note}", "yellow")
        if result.sweep:
            bad = [s for s in result.sweep if s["status"] != "pass"]
            yield _line(
                f"{indent}sweep: {len(result.sweep)} cases, {len(bad)} not passing; worst shown"
                + ("" if not bad else f" ({', '.join(_sweep_case(s) for s in bad[:3])})")
            )
        yield _line("")


def renderable(report: Report, verbose: bool = False, quiet: int = 0) -> Group:
    """The report as a rich renderable (``rich.print(report)`` uses it): long lines wrap at
    the console's width, since a console prints a renderable cropped to it."""
    return Group(ReportView(report, verbose=verbose, quiet=quiet, wrap=True))


_TRAILING = re.compile(r"[ \t]+((?:\x1b\[[0-9;]*m)*)$", re.M)


def _render(console: Console, view: ReportView) -> str:
    with console.capture() as captured:
        console.print(view, crop=False)
    return _TRAILING.sub(r"\1", captured.get())


def make_console(file: IO[str] | None = None, color: str = "auto", width: int | None = None) -> Console:
    """A console writing to ``file`` (stdout), coloured as ``color`` says.

    ``auto``: rich decides (colour on a terminal or with ``FORCE_COLOR``), and a non-empty
    ``NO_COLOR`` turns it off; ``always`` and ``never`` override both. ``width`` is the
    width to fold to; without it, the terminal's, or none when the output is not a terminal.
    """
    if color not in COLORS:
        raise ValueError(f"unknown color {color!r}; choose one of {', '.join(COLORS)}")
    target = file if file is not None else sys.stdout
    if width is None and not _isatty(target):
        width = UNBOUNDED
    common: dict[str, Any] = {
        "file": target,
        "width": width,
        "highlight": False,
        "markup": False,
        "emoji": False,
    }
    if color == "always":
        console = Console(force_terminal=True, no_color=False, **common)
        if console.color_system is None:  # TERM=dumb: still colour, as asked
            console = Console(force_terminal=True, no_color=False, color_system="standard", **common)
        return console
    if color == "never" or os.environ.get("NO_COLOR"):
        return Console(color_system=None, **common)
    return Console(**common)


def _isatty(file: IO[str]) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):
        return False


def print_report(
    report: Report,
    *,
    file: IO[str] | None = None,
    color: str = "auto",
    verbose: bool = False,
    quiet: int = 0,
    width: int | None = None,
) -> None:
    """Print the table of ``report`` to ``file`` (stdout): see :func:`make_console`."""
    console = make_console(file, color, width)
    text = _render(console, ReportView(report, verbose=verbose, quiet=quiet))
    console.file.write(text)
    console.file.flush()


def render_text(report: Report, verbose: bool = False, *, quiet: int = 0, width: int | None = None) -> str:
    """The table as plain text, no colour: folded to ``width`` if given, else one row per tensor."""
    console = Console(
        file=io.StringIO(),
        width=width or UNBOUNDED,
        color_system=None,
        force_terminal=False,
        highlight=False,
        markup=False,
        emoji=False,
    )
    return _render(console, ReportView(report, verbose=verbose, quiet=quiet)).rstrip("\n")
