"""Renderers of a :class:`~gradcheck_cli.result.Report`: table, json, junit, markdown, html.

Importing this package also gives :class:`~gradcheck_cli.result.Report` its display
(``render()``, ``str``, ``repr``, rich's ``__rich__`` and Jupyter's ``_repr_html_``): results
are plain data, and how they look lives here. ``gradcheck_cli`` imports it, so a report
from ``gradcheck_cli.check`` always has them. Nothing heavy is imported until one is used.
"""

from __future__ import annotations

from typing import Any

from ..result import Report

FORMATS = ("table", "json", "junit", "markdown", "github", "html")


def render(report: Report, fmt: str, verbose: bool = False) -> str:
    """The report as text in one of :data:`FORMATS`."""
    if fmt == "table":
        from .table import render_text

        return render_text(report, verbose=verbose)
    if fmt == "json":
        return report.to_json()
    if fmt == "junit":
        from .junit import render_junit

        return render_junit(report)
    if fmt == "markdown":
        from .markdown import render_markdown

        return render_markdown(report)
    if fmt == "github":
        from .github import render_github

        return render_github(report)
    if fmt == "html":
        from .html import render_html

        return render_html(report)
    raise ValueError(f"unknown format {fmt!r}")


# -- the display of a Report ---------------------------------------------------------


def _render(self: Report, verbose: bool = False) -> str:
    """The plain table (what ``print(report)`` shows)."""
    from .table import render_text

    return render_text(self, verbose=verbose)


def _str(self: Report) -> str:
    return _render(self)


def _repr(self: Report) -> str:
    s = self.summary
    return f"<Report passed={s['passed']} failed={s['failed']} errors={s['errors']}>\n{_render(self)}"


def _rich(self: Report) -> Any:
    from .table import renderable

    return renderable(self)


def _repr_html(self: Report) -> str:
    """Jupyter's view: the coloured table and, for each failing tensor, its heatmaps."""
    from .html import report_fragment

    return report_fragment(self)


for _name, _method in (
    ("render", _render),
    ("__str__", _str),
    ("__repr__", _repr),
    ("__rich__", _rich),
    ("_repr_html_", _repr_html),
):
    setattr(Report, _name, _method)
