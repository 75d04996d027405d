"""The table: plain text when piped, a rich table on a terminal, both showing the same cells."""

from __future__ import annotations

import re

from rich.console import Console

from gradcheck_cli import check
from gradcheck_cli.report.table import render_text, renderable

from .conftest import REPO


def _bias_not_summed():
    return check(REPO / "examples" / "mistakes" / "bias_not_summed.yaml")


def test_plain_text_has_the_shapes_with_dim_names_and_the_diagnosis():
    text = render_text(_bias_not_summed())
    assert "[batch=5, in=3]" in text
    assert re.search(r"\[out=4\]\s+\[batch=5, out=4\]", text)  # expected beside got
    assert "bias: [missing_reduction]" in text
    assert text.endswith("FAIL: 0 passed, 1 failed")


def test_rich_table_shows_shapes_literally_not_as_markup():
    console = Console(record=True, width=140, color_system=None)
    console.print(renderable(_bias_not_summed()))
    text = console.export_text()
    assert "[batch=5, in=3]" in text  # would vanish if read as a [markup] tag
    assert "[batch=5, out=4]" in text and "shape_error" in text
    assert "bias: [missing_reduction]" in text
    assert "FAIL: 0 passed, 1 failed" in text


def test_a_terminal_too_narrow_for_the_rich_table_gets_the_plain_one(monkeypatch, capsys):
    from gradcheck_cli import cli

    monkeypatch.setattr(cli, "_rich_terminal", lambda: True)
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    report = _bias_not_summed()

    monkeypatch.setenv("COLUMNS", "200")
    cli._print_table(report, verbose=False)
    wide = capsys.readouterr().out
    assert "────" in wide and "[batch=5, out=4]" in wide  # rich's table rule

    monkeypatch.setenv("COLUMNS", "80")
    cli._print_table(report, verbose=False)
    narrow = capsys.readouterr().out
    assert "────" not in narrow
    assert narrow == render_text(report) + "\n"  # every number whole, none cut to "…"
