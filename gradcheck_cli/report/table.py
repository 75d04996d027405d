"""The report as a table: rich on a terminal, aligned plain text otherwise."""

from __future__ import annotations

from typing import Any

from ..result import CaseResult, Check, Report, format_pair

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
STATUS_STYLE = {"pass": "green", "mismatch": "red", "shape_error": "red", "missing": "yellow", "error": "red"}


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def row(check: Check) -> list[str]:
    exp, got = check.shapes_text()
    mismatched = "-" if check.mismatched is None else f"{check.mismatched}/{check.numel}"
    status = check.status.upper() if check.status == "pass" else check.status
    return [
        check.name,
        check.kind,
        exp,
        got,
        _num(check.max_abs_err),
        _num(check.max_rel_err),
        mismatched,
        status,
    ]


def details(check: Check, verbose: bool) -> list[str]:
    """The lines under the table for a failing check: diagnosis, worst element."""
    lines: list[str] = []
    if check.ok and check.diagnosis is None:
        return lines
    label = f"[{check.diagnosis}] " if check.diagnosis else ""
    if check.hint:
        lines.append(f"{check.name}: {label}{check.hint}")
    elif label:
        lines.append(f"{check.name}: {label.strip()}")
    if check.worst_index is not None:
        expected, actual = format_pair(check.expected_value, check.actual_value)
        lines.append(f"{check.name}: worst element {check.worst_index}: expected {expected}, got {actual}")
    if verbose and check.excerpt:
        lines.extend(f"    {line}" for line in check.excerpt.splitlines())
    return lines


def verdict(report: Report) -> str:
    s = report.summary
    word = "PASS" if report.ok else "FAIL"
    parts = [f"{s['passed']} passed"]
    if s["failed"]:
        parts.append(f"{s['failed']} failed")
    if s["errors"]:
        parts.append(f"{s['errors']} errors")
    return f"{word}: " + ", ".join(parts)


def _result_lines(result: CaseResult, verbose: bool) -> tuple[list[str], list[str]]:
    """(lines before the table, lines after it) for one result."""
    after: list[str] = []
    if result.error:
        after.append(f"error: {result.error}")
    for check in result.checks:
        after.extend(details(check, verbose))
    for note in result.notes:
        after.append(f"note: {note}")
    if result.sweep:
        bad = [s for s in result.sweep if s["status"] != "pass"]
        after.append(
            f"sweep: {len(result.sweep)} cases, {len(bad)} not passing; worst shown"
            + ("" if not bad else f" ({', '.join(_sweep_case(s) for s in bad[:3])})")
        )
    return [f"{result.headline()}  ({result.source})"], after


def _sweep_case(s: dict[str, Any]) -> str:
    dims = " ".join(f"{k}={v}" for k, v in s["dims"].items())
    return f"{dims} seed={s['seed']}: {s['status']}"


def render_text(report: Report, verbose: bool = False) -> str:
    """Plain aligned text: what is printed when piped or with NO_COLOR."""
    out: list[str] = []
    for result in report.results:
        before, after = _result_lines(result, verbose)
        out.extend(before)
        if result.checks:
            rows = [list(COLUMNS)] + [row(c) for c in result.checks]
            widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
            for r in rows:
                out.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        out.extend(f"  {line}" for line in after)
        out.append("")
    out.append(verdict(report))
    return "\n".join(out)


def renderable(report: Report, verbose: bool = False) -> Any:
    """A rich renderable: one table per result, then the verdict."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    for result in report.results:
        before, after = _result_lines(result, verbose)
        style = {"pass": "green", "fail": "red", "error": "red"}[result.status]
        title = Text(before[0], style=f"bold {style}")
        parts.append(title)
        if result.checks:
            table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
            for col in COLUMNS:
                numeric = "err" in col or col == "mismatched"
                table.add_column(col, justify="right" if numeric else "left", no_wrap=not numeric)
            for check in result.checks:
                # Text cells: a shape like [batch=5, in=3] is not rich markup.
                cells = [Text(cell) for cell in row(check)]
                cells[-1].stylize(STATUS_STYLE[check.status])
                table.add_row(*cells)
            parts.append(table)
        for line in after:
            parts.append(Text("  " + line, style="yellow" if line.startswith("note") else ""))
        parts.append(Text(""))
    parts.append(Text(verdict(report), style="bold green" if report.ok else "bold red"))
    return Group(*parts)
