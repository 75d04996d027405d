"""The report as GitHub-flavoured Markdown, for a CI job summary or a PR comment.

A headline with the verdict, a summary line, then one section per result: a
table of its tensors and the diagnosis of each failing one. Results that fail
the run (fail, error, xpass, interrupted) come first and open; passing, skipped
and expected-to-fail results are folded into ``<details>``, the reason of a skip
or an expected failure in the fold's line, so a reviewer sees what broke without
scrolling. Append it to the job summary
with ``gradcheck run specs --format markdown >> "$GITHUB_STEP_SUMMARY"``.
"""

from __future__ import annotations

import html

from ..result import CaseResult, Check, Report, format_pair
from .status import NOT_OK, counts_text, reason, verdict

COLUMNS = ("tensor", "kind", "expected", "got", "max abs err", "mismatched", "status")
ALIGN = ("---", "---", "---", "---", "---:", "---:", "---")
# xfail: failed as the spec says it does (a crossed box, not a red cross); xpass: a failure (strict).
MARK = {
    "pass": "✅",
    "fail": "❌",
    "error": "💥",
    "skip": "⏭️",
    "xfail": "❎",
    "xpass": "❌",
    "interrupted": "⏹️",
}
CHECK_MARK = {"pass": "✅", "mismatch": "❌", "shape_error": "❌", "missing": "❌", "error": "💥"}


def cell(text: str) -> str:
    """Text safe inside a table cell: no HTML, no column breaks, one line."""
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", "<br>")


def fenced(text: str) -> list[str]:
    """A fenced text block that no run of backticks inside ``text`` can close."""
    fence = "`" * max(3, _longest_backtick_run(text) + 1)
    return [f"{fence}text", text, fence]


def _longest_backtick_run(text: str) -> int:
    best = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        best = max(best, run)
    return best


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def table_row(check: Check) -> str:
    expected, got = check.shapes_text()
    mismatched = "-" if check.mismatched is None else f"{check.mismatched}/{check.compared}"
    status = f"{CHECK_MARK[check.status]} {check.status}"
    cells = [check.name, check.kind, expected, got, _num(check.max_abs_err), mismatched, status]
    return "| " + " | ".join(cell(c) for c in cells) + " |"


def diagnosis_lines(check: Check) -> list[str]:
    """A bullet per failing tensor: its diagnosis, the hint, the worst element."""
    if check.ok and check.diagnosis is None:
        return []
    parts = [f"**{cell(check.name)}**"]
    if check.diagnosis:
        parts.append(f"`{check.diagnosis}`")
    text = " ".join(parts)
    if check.hint:
        text += f": {cell(check.hint)}"
    elif not check.diagnosis:
        text += f": {check.status} (no known mistake fits these numbers)"
    lines = [f"- {text}"]
    if check.worst_index is not None and check.expected_value is not None and check.actual_value is not None:
        expected, actual = format_pair(check.expected_value, check.actual_value)
        lines.append(f"  - worst element {check.worst_index}: expected {expected}, got {actual}")
    return lines


def result_body(result: CaseResult) -> list[str]:
    """The case line, the table, the error, the diagnoses and the notes of one result."""
    dims = " ".join(f"{k}={v}" for k, v in result.dims.items())
    case = " · ".join(p for p in (dims, result.dtype, result.device, f"seed={result.seed}") if p)
    lines = [f"{cell(case)} · `{cell(result.source)}`", ""]
    why = reason(result) if result.status in ("skip", "xfail", "xpass", "interrupted") else None
    if result.status == "skip":
        lines += [f"not run: {cell(why or 'the spec says skip')}", ""]
    elif result.status == "xfail":
        lines += [f"expected to fail: {cell(why or 'the spec says xfail')}", ""]
    elif result.status == "xpass":
        lines += [f"expected to fail ({cell(why or 'the spec says xfail')}), but every tensor passed", ""]
    elif result.status == "interrupted":
        lines += ["interrupted before it finished" + (f": {cell(why)}" if why else ""), ""]
    if result.checks:
        lines.append("| " + " | ".join(COLUMNS) + " |")
        lines.append("| " + " | ".join(ALIGN) + " |")
        lines.extend(table_row(c) for c in result.checks)
        lines.append("")
    if result.error is not None and result.status in ("error", "xfail"):
        lines.append("**error**" + (" (the spec cannot run)" if result.spec_error else "") + ":")
        lines.append("")
        lines.extend(fenced(result.error))
        lines.append("")
    bullets = [line for c in result.checks for line in diagnosis_lines(c)]
    bullets += [f"- note: {cell(note)}" for note in result.notes_to_show()]
    if result.sweep:
        bad = [s for s in result.sweep if s["status"] != "pass"]
        bullets.append(f"- sweep: {len(result.sweep)} cases run, {len(bad)} not passing; the worst is shown")
    if bullets:
        lines.extend(bullets)
        lines.append("")
    return lines


def render_markdown(report: Report) -> str:
    """The whole report as Markdown: failing results first and open, passing ones folded."""
    word = "PASS" if report.ok else "FAIL"
    lines = [f"## {'✅' if report.ok else '❌'} gradcheck: {word}", ""]
    total = len(report.results)
    about = f"{total} spec case{'s' if total != 1 else ''}"
    versions = " · ".join(
        v
        for v in (
            f"gradcheck {report.version}" if report.version else "",
            f"torch {report.torch}" if report.torch else "",
        )
        if v
    )
    summary = f"**{counts_text(report)}** of {about}"
    lines += [summary + (f" · {versions}" if versions else ""), ""]
    failing = [r for r in report.results if r.status in NOT_OK]
    folded = [r for r in report.results if r.status not in NOT_OK]
    for result in failing:
        lines.append(f"### {MARK.get(result.status, '❌')} {cell(result.spec)}: {result.status}")
        lines.append("")
        lines.extend(result_body(result))
    for result in folded:
        why = reason(result) if result.status in ("skip", "xfail") else None
        about_it = f"{result.status} ({cell(why)})" if why else result.status
        lines.append(
            f"<details><summary>{MARK.get(result.status, '')} {cell(result.spec)}: {about_it}</summary>"
        )
        lines.append("")
        lines.extend(result_body(result))
        lines.append("</details>")
        lines.append("")
    lines.append(verdict(report))
    return "\n".join(lines)
