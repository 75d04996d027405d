"""The table: one rich renderer for a terminal, a log and a string.

Plain text is the coloured output without its colour; colour follows --color, NO_COLOR
and FORCE_COLOR; a narrow terminal folds the table and never cuts a number; a failing
tensor's error map is under its row; a run of several specs ends with pytest's short
summary; --quiet keeps the failures only.
"""

from __future__ import annotations

import ast
import io
import os
import pickle
import re
import subprocess
import sys

import pytest
from rich.console import Console

from gradcheck_cli import Report, check
from gradcheck_cli.report.table import print_report, render_text, renderable, verdict

from . import mistake_maps
from .conftest import REPO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
NUMBER = re.compile(r"\d\.\d\de[+-]\d\d|\binf\b|\d+/\d+")


def _bias_not_summed():
    return check(REPO / "examples" / "mistakes" / "bias_not_summed.yaml")


def relu_report() -> Report:
    """A ReLU whose backward forgets the mask: its x row fails, with an error map."""
    mistake = mistake_maps.relu_mask(batch=4, features=3)
    out = mistake_maps.passing("out", "output", [4, 3], [None, None])
    return Report(results=[mistake_maps.result_of("relu", out, mistake.check())])


def printed(report: Report, **options) -> str:
    file = io.StringIO()
    print_report(report, file=file, **options)
    return file.getvalue()


@pytest.fixture
def no_colour_env(monkeypatch):
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


# -- the layout -----------------------------------------------------------------------


def test_plain_text_has_the_shapes_with_dim_names_and_the_diagnosis():
    text = render_text(_bias_not_summed())
    assert "[batch=5, in=3]" in text
    assert re.search(r"\[out=4\]\s+\[batch=5, out=4\]", text)  # expected beside got
    assert "bias: [missing_reduction]" in text
    assert text.endswith("FAIL: 0 passed, 1 failed")


def test_the_layout_of_a_result():
    text = render_text(relu_report(), width=120)
    lines = text.splitlines()
    assert lines[0] == "relu dtype=float64 device=cpu seed=0  (specs/relu.yaml)"
    assert lines[1] == (
        "  tensor  kind    expected shape         got shape              max abs err  max rel err"
        "  mismatched  status"
    )
    assert lines[2].split() == [
        "out",
        "output",
        "[4,",
        "3]",
        "[4,",
        "3]",
        "0.00e+00",
        "0.00e+00",
        "0/12",
        "PASS",
    ]
    assert lines[3].startswith("  x       input   [batch=4, features=3]  [batch=4, features=3]  ")
    assert lines[3].endswith("mismatch")
    assert all(line == line.rstrip() for line in lines)  # no trailing spaces from the table's padding


def test_the_rich_renderable_shows_shapes_literally_not_as_markup():
    console = Console(record=True, width=140, color_system=None)
    console.print(renderable(_bias_not_summed()))
    text = console.export_text()
    assert "[batch=5, in=3]" in text  # would vanish if read as a [markup] tag
    assert "[batch=5, out=4]" in text and "shape_error" in text
    assert "bias: [missing_reduction]" in text
    assert "FAIL: 0 passed, 1 failed" in text


def test_printed_by_a_rich_console_long_lines_wrap_instead_of_being_cut():
    console = Console(record=True, width=70, color_system=None)
    console.print(renderable(relu_report()))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 70
    assert "a mask (like ReLU's) is missing" in " ".join(text.split())  # all of it, on two lines


@pytest.mark.parametrize("width", [120, 80, 60, 40])
def test_plain_text_is_the_coloured_output_without_its_colour(no_colour_env, width):
    report = relu_report()
    coloured = printed(report, color="always", width=width)
    assert "\x1b[" in coloured
    assert ANSI.sub("", coloured) == render_text(report, width=width) + "\n"


# -- a narrow terminal folds the table --------------------------------------------------


def _numbers(text: str) -> list[str]:
    return sorted(NUMBER.findall(text))


def test_at_80_columns_the_columns_fold_into_two_tables_with_every_number_whole(no_colour_env):
    report = relu_report()
    wide, narrow = render_text(report), render_text(report, width=80)
    assert "\n  tensor  kind    expected shape         got shape              status\n" in narrow
    assert "\n  tensor  max abs err  max rel err  mismatched\n" in narrow
    assert "\n  x       1.46e+00     inf          7/12\n" in narrow
    table = narrow.split("\n  x: ")[0]
    assert max(len(line) for line in table.splitlines()[1:]) <= 80
    assert _numbers(table) == _numbers(wide.split("\n  x: ")[0])
    assert "…" not in narrow


def test_narrower_the_shapes_wrap_at_their_spaces_and_narrower_still_each_tensor_is_a_few_lines():
    report = relu_report()
    wide = render_text(report).split("\n  x: ")[0]
    at_60 = render_text(report, width=60)
    assert "  x       input   [batch=4,        [batch=4,        mismatch" in at_60
    assert "                  features=3]      features=3]" in at_60
    at_40 = render_text(report, width=40)
    assert "  x  input  mismatch\n    expected shape  [batch=4, features=3]\n" in at_40
    assert "    max abs err     1.46e+00\n" in at_40
    for text in (at_60, at_40):
        table = text.split("\n  x: ")[0]
        assert _numbers(table) == _numbers(wide) and "…" not in text


def test_output_that_is_not_a_terminal_is_not_folded(no_colour_env, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    report = relu_report()
    assert printed(report) == render_text(report) + "\n"  # a log keeps one row per tensor


# -- colour: --color, NO_COLOR, FORCE_COLOR --------------------------------------------


def test_color_always_and_force_color_give_colour_at_80_columns(no_colour_env, monkeypatch):
    report = relu_report()
    assert "\x1b[31m" in printed(report, color="always", width=80)  # a failing status in red
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert "\x1b[31m" in printed(report, width=80)
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[31m" in printed(report, color="always", width=80)  # the flag beats the environment


def test_no_color_and_never_give_none(no_colour_env, monkeypatch):
    report = relu_report()
    assert "\x1b[" not in printed(report, color="never", width=80)
    assert "\x1b[" not in printed(report, width=80)  # not a terminal
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert "\x1b[" not in printed(report, color="never", width=80)
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in printed(report, width=80)  # NO_COLOR beats FORCE_COLOR: no bold either


def test_an_unknown_color_is_an_error():
    with pytest.raises(ValueError, match="auto, always, never"):
        printed(relu_report(), color="sometimes")


def _in_a_terminal(argv: list[str], columns: int = 80) -> str:
    """What ``argv`` prints to a real pseudo-terminal ``columns`` wide."""
    import fcntl
    import pty
    import struct
    import termios

    env = {k: v for k, v in os.environ.items() if k not in {"NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES"}}
    env.pop("TERMINAL_WIDTH", None)
    env.pop("TTY_COMPATIBLE", None)
    env["TERM"] = "xterm-256color"
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(master)
    return b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


def test_under_a_real_terminal_a_table_at_80_columns_has_colour(tmp_path):
    saved = tmp_path / "report.pickle"
    saved.write_bytes(pickle.dumps(relu_report()))
    code = (
        "import pickle, sys; from gradcheck_cli.report.table import print_report;"
        f" print_report(pickle.loads(open({str(saved)!r}, 'rb').read()))"
    )
    out = _in_a_terminal([sys.executable, "-c", code], columns=80)
    assert "\x1b[1;31mrelu dtype=float64" in out and "\x1b[31mmismatch" in out
    text = ANSI.sub("", out)
    assert "\n  tensor  max abs err  max rel err  mismatched\n" in text  # folded to the terminal's 80
    assert max(len(line) for line in text.split("\n  x: ")[0].splitlines()) <= 80


def test_the_cli_under_a_real_terminal_at_80_columns_has_colour():
    out = _in_a_terminal([sys.executable, "-m", "gradcheck_cli", "run", "examples/mistakes/relu_mask.yaml"])
    assert "\x1b[" in out and "mismatch" in out
    text = ANSI.sub("", out)
    assert "2.63e+00" in text and "7/12" in text and "…" not in text


# -- what is shown ----------------------------------------------------------------------


def test_a_failing_tensor_with_a_pattern_has_its_map_under_the_table():
    mistake = mistake_maps.relu_mask(batch=4, features=3)
    x, worst = mistake.inputs["x"], mistake.check().worst_index
    lines = render_text(relu_report()).splitlines()
    start = lines.index(f"  x: error map, error / tolerance: · <=1  ▒ <=10  █ >10  X worst {worst}")
    assert lines[start - 1].startswith(f"  x: worst element {worst}")
    assert lines[start + 1] == "    rows: batch 0–3, one per cell; columns: features 0–2, one per cell"
    cells = [line[7:] for line in lines[start + 2 : start + 6]]
    wrong = [["██" if v else "· " for v in row] for row in (x <= 0).tolist()]
    wrong[worst[0]][worst[1]] = "XX"
    assert cells == ["".join(row).rstrip() for row in wrong]
    assert lines[start + 6] == ""  # the result ends there


def test_no_map_for_a_passing_tensor_and_a_uniform_one_only_with_verbose():
    uniform = mistake_maps.bias_reshaped(out=8).check()
    passed = mistake_maps.passing("x", "input", [4, 3], ["a", "b"])
    passed.error_map = mistake_maps.relu_mask(batch=4, features=3).error_map()  # set, but the check passed
    report = Report(results=[mistake_maps.result_of("lin", passed, uniform)])
    assert "error map" not in render_text(report)
    verbose = render_text(report, verbose=True)
    assert "bias: error map" in verbose and "x: error map" not in verbose
    assert "\n    " + "██" * 7 + "XX\n" in verbose  # every element far over; the worst is the last


def test_the_tolerance_used_is_in_the_header_line():
    report = relu_report()
    result = report.results[0]
    result.tolerance = {
        "mode": "absolute",
        "atol": 1e-7,
        "rtol": 1e-7,
        "ratio": None,
        "source": "float64 default",
    }
    assert render_text(report).splitlines()[0] == (
        "relu dtype=float64 device=cpu seed=0 atol=1e-07 rtol=1e-07 (float64 default)  (specs/relu.yaml)"
    )
    result.tolerance = {"mode": "calibrated", "atol": None, "rtol": None, "ratio": 4, "source": "spec"}
    assert " ratio<=4 vs float64 truth (spec)  (specs/relu.yaml)" in render_text(report)
    result.tolerance = None
    assert render_text(report).splitlines()[0] == "relu dtype=float64 device=cpu seed=0  (specs/relu.yaml)"


def test_a_calibrated_check_shows_its_error_and_torchs_against_the_truth():
    check_ = mistake_maps.passing("x", "input", [4, 3], ["a", "b"])
    check_.max_abs_err, check_.truth_error, check_.reference_error, check_.error_ratio = 3e-7, 4e-7, 2e-7, 2.0
    text = render_text(Report(results=[mistake_maps.result_of("gelu", check_)]))
    header, row = text.splitlines()[1:3]
    assert re.split(r"\s{2,}", header.strip())[4:] == [
        "vs truth",
        "torch vs truth",
        "ratio",
        "mismatched",
        "status",
    ]
    assert row.split()[-5:] == ["4.00e-07", "2.00e-07", "2", "0/12", "PASS"]
    assert "max rel err" not in text and "max abs err" not in text  # vs truth is the error


def test_skips_expected_failures_and_interruptions_say_what_they_are():
    skip = mistake_maps.result_of("a", status="skip", reason="no cuda here")
    xfail = mistake_maps.result_of("b", mistake_maps.relu_mask().check(), status="xfail", reason="known bug")
    xpass = mistake_maps.result_of("c", status="xpass", reason="known bug")
    stopped = mistake_maps.result_of("d", status="interrupted")
    text = render_text(Report(results=[skip, xfail, xpass, stopped]))
    assert "a dtype=float64 device=cpu seed=0  (specs/a.yaml)\n  skipped: no cuda here\n" in text
    assert "  xfail: failed, as the spec expects (known bug)\n" in text
    assert "  xpass: passed, but the spec expects it to fail (known bug)\n" in text
    assert "  interrupted: the run was stopped before this spec finished\n" in text
    assert "XPASS c (specs/c.yaml): passed, but the spec expects it to fail (known bug)\n" in text
    assert "INTERRUPTED d (specs/d.yaml): the run was stopped before this spec finished\n" in text
    assert "FAILED b" not in text and "SKIPPED" not in text  # like pytest: only failures are listed


# -- the end of a run: short summary, counts --------------------------------------------


def suite() -> Report:
    ok = mistake_maps.result_of("scale", mistake_maps.passing("x", "input", [8, 4], ["batch", "features"]))
    bias = mistake_maps.relu_mask().check()
    bias.name, bias.status, bias.diagnosis = "b", "shape_error", "missing_reduction"
    dense = mistake_maps.result_of("dense", bias)
    broken = mistake_maps.result_of(
        "broken", error="ImportError: no module named 'layers'\n  (at layers.py:1)"
    )
    return Report(results=[dense, ok, broken])


def test_a_run_of_several_specs_ends_with_a_short_summary_of_the_failing_ones():
    lines = render_text(suite()).splitlines()
    assert lines[-4:] == [
        "",
        "FAILED dense (specs/dense.yaml): b shape_error [missing_reduction]",
        "ERROR broken (specs/broken.yaml): ImportError: no module named 'layers'",
        "FAIL: 1 passed, 1 failed, 1 error",
    ]


def test_a_spec_run_twice_is_named_with_its_case_in_the_summary():
    first, second = mistake_maps.result_of("relu", mistake_maps.relu_mask().check()), None
    second = mistake_maps.result_of("relu", mistake_maps.relu_mask().check())
    second.dtype = "float32"
    text = render_text(Report(results=[first, second]))
    assert "FAILED relu[float64 cpu seed=0] (specs/relu.yaml): x mismatch [partial]" in text
    assert "FAILED relu[float32 cpu seed=0] (specs/relu.yaml): x mismatch [partial]" in text


def test_one_result_has_no_short_summary_its_table_is_just_above():
    assert "FAILED" not in render_text(relu_report())


def test_quiet_shows_failures_in_full_and_a_line_per_passing_spec_or_none():
    report = suite()
    quiet = render_text(report, quiet=1).splitlines()
    assert "PASSED scale (specs/scale.yaml)" in quiet
    assert not any(line.startswith("scale ") for line in quiet)  # no table for it
    assert quiet[0] == "dense dtype=float64 device=cpu seed=0  (specs/dense.yaml)"  # in full
    assert "  error: ImportError: no module named 'layers'" in quiet
    very = render_text(report, quiet=2)
    assert "scale" not in very and "dense dtype=float64" in very
    assert very.endswith("FAIL: 1 passed, 1 failed, 1 error")


class _Summary(Report):
    counts: dict[str, int] = {}

    @property
    def summary(self) -> dict[str, int]:
        return self.counts


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({"passed": 3, "failed": 0, "errors": 1}, "FAIL: 3 passed, 1 error"),
        ({"passed": 0, "failed": 2, "errors": 2}, "FAIL: 0 passed, 2 failed, 2 errors"),
        (
            {
                "passed": 1,
                "failed": 1,
                "errors": 0,
                "skipped": 2,
                "xfailed": 1,
                "xpassed": 1,
                "interrupted": 1,
            },
            "FAIL: 1 passed, 1 failed, 2 skipped, 1 xfailed, 1 xpassed, 1 interrupted",
        ),
    ],
)
def test_counts_with_their_grammar(counts, expected):
    report = _Summary(results=[mistake_maps.result_of("x", mistake_maps.relu_mask().check())])
    report.counts = counts
    assert verdict(report) == expected


# -- results are data -------------------------------------------------------------------


def test_results_do_not_import_their_renderer_but_still_display():
    tree = ast.parse((REPO / "gradcheck_cli" / "result.py").read_text(encoding="utf-8"))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not any("report" in m or "rich" in m for m in imported), imported

    report = relu_report()
    assert str(report) == report.render() == render_text(report)
    assert repr(report).startswith("<Report passed=0 failed=1 errors=0>\nrelu dtype=float64")
    assert "x: error map" in report.render(verbose=True)
    assert report._repr_html_().count("<svg") == 3
