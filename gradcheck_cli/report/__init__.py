"""Renderers of a :class:`~gradcheck_cli.result.Report`: table, json, junit, markdown."""

from __future__ import annotations

from ..result import Report

FORMATS = ("table", "json", "junit", "markdown", "github")


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
    raise ValueError(f"unknown format {fmt!r}")
