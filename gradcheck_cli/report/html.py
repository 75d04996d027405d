"""The report as HTML: one self-contained page (``--format html``) and a notebook's view.

:func:`render_html` writes a whole page: inline CSS and SVG, no script, nothing fetched,
so it opens from disk and works as a CI artifact. It has the run's summary (the verdict,
the counts, the failing specs linked to their sections), then every result: its table,
error, diagnoses and hints, notes, and for each failing tensor with an error map three
heatmaps (expected, got, error; see :mod:`.svg`). Failing results come first.

:func:`report_fragment` is the same results as one ``<div>`` with inline styles only (a
notebook may drop a ``<style>`` element), in the report's order: Jupyter shows it for
``_repr_html_``.
"""

from __future__ import annotations

import itertools
from html import escape

from ..result import CaseResult, Check, Report
from .errormap import axes_text
from .status import verdict
from .svg import SVG_LIMITS, heatmaps
from .table import FAILING, columns, details, header, row, status_line, summary_line, summary_lines

STATUS_COLOUR = {
    "pass": "#1a7f37",
    "fail": "#cf222e",
    "error": "#cf222e",
    "skip": "#9a6700",
    "xfail": "#9a6700",
    "xpass": "#cf222e",
    "interrupted": "#9a6700",
}
CHECK_COLOUR = {"pass": "#1a7f37", "mismatch": "#cf222e", "shape_error": "#cf222e", "missing": "#9a6700"}
MONO = "font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace"
SANS = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif"
CELL = "padding:2px 10px 2px 0;text-align:left;white-space:nowrap"

_VIEWS = itertools.count(1)  # ids unique among the views of one notebook page

PAGE_CSS = """
body { margin: 2em auto; max-width: 1100px; padding: 0 1.5em; background: #fff; color: #1f2328;
       font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; line-height: 1.4; }
h1 { font-size: 1.5em; margin: 0 0 .3em; }
.summary { margin: 0 0 1.5em; }
.summary ul { margin: .4em 0; padding-left: 1.2em; font-family: ui-monospace, Menlo, Consolas, monospace;
              font-size: 13px; }
a { color: #0969da; }
footer { margin-top: 2em; color: #656d76; font-size: 12px; }
"""


def _table(result: CaseResult) -> str:
    heads = columns(result)
    with_truth = len(heads) > 8
    out = [f'<table style="border-collapse:collapse;{MONO};font-size:12.5px;margin:.4em 0">']
    out.append(
        "<tr>"
        + "".join(f'<th style="{CELL};border-bottom:1px solid #d0d7de">{escape(h)}</th>' for h in heads)
    )
    out.append("</tr>")
    for check in result.checks:
        cells = row(check, with_truth)
        background = "" if check.ok else "background:#fff1f0;"
        colour = CHECK_COLOUR.get(check.status, "#cf222e")
        tds = [f'<td style="{CELL}">{escape(c)}</td>' for c in cells[:-1]]
        tds.append(f'<td style="{CELL};color:{colour};font-weight:600">{escape(cells[-1])}</td>')
        out.append(f'<tr style="{background}">' + "".join(tds) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _maps(check: Check, uid: str) -> str:
    if check.ok or check.error_map is None:
        return ""
    svgs = heatmaps(check.name, check.error_map, check.worst_index, uid=uid)
    emap = check.error_map
    axes = axes_text(emap.coarsen(*SVG_LIMITS))
    caption = (
        f"{escape(check.name)}: where it is wrong. Each cell is the element with the largest error"
        f" in its block ({escape(axes)}); the outlined cell holds the worst element."
    )
    heading = f"{escape(check.name)} {escape(emap.dims_text())}"
    return (
        '<figure style="margin:.6em 0 1em">'
        f'<div style="{MONO};font-size:12.5px;font-weight:600;margin-bottom:.2em">{heading}</div>'
        f'<div style="display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start">{"".join(svgs)}</div>'
        f'<figcaption style="{SANS};font-size:12px;color:#57606a">{caption}</figcaption></figure>'
    )


def result_html(result: CaseResult, anchor: str) -> str:
    """One result: its header, table, error, diagnoses, notes and heatmaps."""
    colour = STATUS_COLOUR.get(result.status, "#cf222e")
    word = result.status.upper()
    out = [f'<section id="{anchor}" style="margin:1.2em 0;padding-left:.8em;border-left:4px solid {colour}">']
    out.append(
        f'<div style="{MONO};font-size:13px"><span style="color:{colour};font-weight:700">{word}</span> '
        f"{escape(header(result))}</div>"
    )
    status = status_line(result)
    if status:
        out.append(f'<div style="{SANS};color:{colour}">{escape(status)}</div>')
    if result.checks:
        out.append(_table(result))
    if result.error and result.status != "skip":
        label = "error (the spec cannot run)" if result.spec_error else "error"
        out.append(
            f'<div style="{SANS};font-weight:600;margin-top:.4em">{label}</div>'
            f'<pre style="{MONO};font-size:12px;background:#f6f8fa;padding:.6em;overflow:auto;margin:.2em 0">'
            f"{escape(result.error)}</pre>"
        )
    items = []
    for check in result.checks:
        lines = details(check, verbose=False)
        if lines:
            items.append(f'<li style="margin:.2em 0">{"<br>".join(escape(line) for line in lines)}</li>')
    items += [
        f'<li style="margin:.2em 0;color:#9a6700">note: {escape(n)}</li>' for n in result.notes_to_show()
    ]
    if result.sweep:
        bad = sum(s["status"] != "pass" for s in result.sweep)
        items.append(f"<li>sweep: {len(result.sweep)} cases run, {bad} not passing; the worst is shown</li>")
    if items:
        out.append(
            f'<ul style="{SANS};font-size:13.5px;margin:.4em 0;padding-left:1.2em">{"".join(items)}</ul>'
        )
    for n, check in enumerate(result.checks):
        out.append(_maps(check, f"{anchor}-{n}"))
    out.append("</section>")
    return "".join(out)


def report_fragment(report: Report) -> str:
    """The results and the verdict as one ``<div>`` (inline styles only): the notebook view."""
    colour = STATUS_COLOUR["pass" if report.ok else "fail"]
    parts = [f'<div style="{SANS};background:#fff;color:#1f2328;padding:.2em .4em">']
    view = next(_VIEWS)
    parts += [result_html(r, f"gradcheck-{view}-{n}") for n, r in enumerate(report.results)]
    summary = summary_lines(report)
    if summary:
        parts.append(
            f'<pre style="{MONO};font-size:12.5px;color:#cf222e">{escape(chr(10).join(summary))}</pre>'
        )
    parts.append(f'<div style="{MONO};font-weight:700;color:{colour}">{escape(verdict(report))}</div></div>')
    return "".join(parts)


def render_html(report: Report) -> str:
    """The whole report as one HTML page (a string), failing results first."""
    word = "PASS" if report.ok else "FAIL"
    colour = STATUS_COLOUR["pass" if report.ok else "fail"]
    order = sorted(range(len(report.results)), key=lambda n: report.results[n].status not in FAILING)
    anchors = {n: f"result-{n}" for n in order}
    versions = " · ".join(
        v
        for v in (
            f"gradcheck {report.version}" if report.version else "",
            f"torch {report.torch}" if report.torch else "",
        )
        if v
    )
    names = [r.spec for r in report.results]
    failing = []
    for n, result in enumerate(report.results):
        line = summary_line(result, qualified=names.count(result.spec) > 1)
        if line is not None:
            kind, rest = line.split(" ", 1)
            failing.append(f'<li><a href="#{anchors[n]}">{escape(kind)}</a> {escape(rest)}</li>')
    body = [
        f'<h1><span style="color:{colour}">{word}</span> gradcheck</h1>',
        '<div class="summary">',
        f'<div style="{MONO};font-weight:700;color:{colour}">{escape(verdict(report))}</div>',
    ]
    if versions:
        body.append(f'<div style="color:#656d76;font-size:13px">{escape(versions)}</div>')
    if failing:
        body.append(f"<ul>{''.join(failing)}</ul>")
    body.append("</div>")
    body += [result_html(report.results[n], anchors[n]) for n in order]
    body.append(
        "<footer>Made by gradcheck: a hand-written backward checked against PyTorch autograd.</footer>"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>gradcheck: {word}</title>\n<style>{PAGE_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
