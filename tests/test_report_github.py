"""--format github: GitHub Actions workflow commands, so a failure shows on the spec's diff.

GitHub's runner reads a line ``::error file=F,line=N,title=T::MESSAGE`` from a
step's output as an annotation at line N of F. A failing tensor is annotated at
its own line of the spec; a result that errored at the spec; a passing one not
at all; the run's counts come last as a notice.
"""

from __future__ import annotations

import re

import pytest

import gradcheck_cli
from gradcheck_cli.report import FORMATS, render
from gradcheck_cli.report.github import command, escape_data, escape_property, render_github
from gradcheck_cli.result import Report

from . import report_cases
from .conftest import EXAMPLES

CASE = "[batch=6 in=3 out=2] dtype=float64 device=cpu seed=0"


@pytest.fixture(autouse=True)
def not_in_a_workflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths relative to the working directory, as outside GitHub Actions."""
    monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)


def unescape_data(text: str) -> str:
    """What GitHub's runner makes of an escaped message (actions/runner's ActionCommand)."""
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def unescape_property(text: str) -> str:
    return unescape_data(text.replace("%3A", ":").replace("%2C", ","))


def parse(line: str) -> tuple[str, dict[str, str], str]:
    """A workflow command read the way the runner reads it: ``::name props::message``."""
    match = re.fullmatch(r"::(\w+)(?: ([^:]*))?::(.*)", line)
    assert match, f"not a workflow command: {line!r}"
    name, props, message = match.groups()
    properties = dict(p.split("=", 1) for p in props.split(",")) if props else {}
    return name, {k: unescape_property(v) for k, v in properties.items()}, unescape_data(message)


def test_a_failing_tensor_is_an_error_at_its_line_of_the_spec():
    report = Report(results=[report_cases.result("dense", "fail", report_cases.wrong())])
    assert render_github(report).splitlines() == [
        "::error file=specs/dense.yaml,line=8,title=dense%3A b::"
        "b: shape_error, expected [out=2], got [batch=6, out=2] [missing_reduction]: "
        + report_cases.MISSING_REDUCTION
        + "%0Adense "
        + CASE,
        "::notice title=gradcheck::FAIL: 0 passed, 1 failed, 0 errors",
    ]


def test_each_failing_tensor_is_its_own_annotation_and_passing_ones_none():
    checks = report_cases.wrong()
    checks[1].status, checks[1].mismatched, checks[1].max_abs_err = "mismatch", 6, 0.5
    report = Report(results=[report_cases.result("dense", "fail", checks)])
    errors = [parse(line) for line in render_github(report).splitlines()[:-1]]
    assert [(props["line"], props["title"]) for _, props, _ in errors] == [
        ("7", "dense: w"),
        ("8", "dense: b"),
    ]
    assert errors[0][2].startswith("w: mismatch in 6/6 elements, max abs err 0.5")


def test_an_error_result_is_one_error_at_the_spec_and_a_passing_one_is_silent():
    raised = "ZeroDivisionError: division by zero in my backward"
    report = Report(
        results=[
            report_cases.result("dense", "pass", report_cases.right()),
            report_cases.result("raises", "error", [], error=raised),
        ]
    )
    assert render_github(report).splitlines() == [
        f"::error file=specs/raises.yaml,line=1,title=raises%3A error::{raised}%0Araises {CASE}",
        "::notice title=gradcheck::FAIL: 1 passed, 0 failed, 1 error",
    ]


def test_a_passing_run_is_only_the_notice():
    report = Report(results=[report_cases.result("dense", "pass", report_cases.right())])
    assert render_github(report) == "::notice title=gradcheck::PASS: 1 passed, 0 failed, 0 errors"


def test_a_spec_error_an_xpass_and_an_interruption_are_errors_skips_and_xfails_are_not():
    broken = report_cases.result("broken", "error", [], error="broken.yaml:13: tolerances: unknown key")
    broken.spec_error = True
    report = report_cases.every_status()
    report.results.append(broken)
    commands = [parse(line) for line in render_github(report).splitlines()]
    assert [(name, props.get("title")) for name, props, _ in commands] == [
        ("error", "bias_not_summed: b"),
        ("error", "raises: error"),
        ("error", "fixed_now: xpass"),
        ("error", "cut_short: interrupted"),
        ("error", "broken: spec error"),
        ("notice", "gradcheck"),
    ]
    assert (
        commands[2][2] == f"[XPASS(strict)] bias not summed yet (#12): every tensor passed\nfixed_now {CASE}"
    )
    assert commands[-1][2] == (
        "FAIL: 1 passed, 1 failed, 2 errors, 1 skipped, 1 xfailed, 1 xpassed, 1 interrupted"
    )


def test_messages_and_properties_are_escaped_as_the_runner_reads_them():
    assert escape_data("100% of\r\nrows: a, b") == "100%25 of%0D%0Arows: a, b"
    assert escape_property("100% of\r\nrows: a, b") == "100%25 of%0D%0Arows%3A a%2C b"
    # `%` first: an escaped text never reads back as something else.
    assert escape_data("%0A") == "%250A" and unescape_data(escape_data("%0A")) == "%0A"
    line = command("error", "got 50%\nexpected 1:2, 3", file="specs/a,b.yaml", line=3, title="x: y")
    assert line == "::error file=specs/a%2Cb.yaml,line=3,title=x%3A y::got 50%25%0Aexpected 1:2, 3"
    assert parse(line) == (
        "error",
        {"file": "specs/a,b.yaml", "line": "3", "title": "x: y"},
        "got 50%\nexpected 1:2, 3",
    )


def test_an_error_message_over_several_lines_stays_one_command():
    raised = 'Traceback (most recent call last):\n  File "layer.py", line 3\nValueError: 100% wrong'
    report = Report(results=[report_cases.result("raises", "error", [], error=raised)])
    first, notice = render_github(report).splitlines()
    assert parse(first)[2] == f"{raised}\nraises {CASE}"
    assert notice.startswith("::notice ")


def test_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = report_cases.result("dense", "fail", report_cases.wrong())
    result.source = str(tmp_path / "specs" / "dense.yaml")
    (error, _) = render_github(Report(results=[result])).splitlines()
    assert parse(error)[1]["file"] == "specs/dense.yaml"
    result.source = "<python>"  # the Python API: no file to point at
    (error, _) = render_github(Report(results=[result])).splitlines()
    assert "file" not in parse(error)[1] and "line" not in parse(error)[1]


def test_in_a_workflow_paths_are_relative_to_the_checkout_not_the_step_folder(tmp_path, monkeypatch):
    # A step with `working-directory: examples/ci` of a repository checked out at tmp_path.
    (tmp_path / "examples" / "ci").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "examples" / "ci")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    result = report_cases.result("dense", "fail", report_cases.wrong())  # source specs/dense.yaml
    (error, _) = render_github(Report(results=[result])).splitlines()
    assert parse(error)[1]["file"] == "examples/ci/specs/dense.yaml"


def test_a_real_failing_run_points_at_the_spec_in_the_repository(monkeypatch):
    monkeypatch.chdir(EXAMPLES.parent)
    report = gradcheck_cli.check("examples/ci/failing-suite/dense.yaml")
    (error, notice) = render(report, "github").splitlines()
    name, props, message = parse(error)
    assert (name, props["file"], props["title"]) == (
        "error",
        "examples/ci/failing-suite/dense.yaml",
        "dense: b",
    )
    assert re.fullmatch(r"\d+", props["line"])
    assert message.startswith("b: shape_error, expected [out=3], got [batch=8, out=3] [missing_reduction]")
    assert notice == "::notice title=gradcheck::FAIL: 0 passed, 1 failed, 0 errors"
    assert "github" in FORMATS


def test_a_spec_s_xfail_and_skip_keys_reach_the_annotations(gradcheck, tmp_path, monkeypatch):
    from .report_cases import write_expectations

    monkeypatch.chdir(tmp_path)
    write_expectations(tmp_path / "specs")
    ran = gradcheck("run", "specs", "--format", "github")
    assert ran.exit_code == 1
    (xpass, notice) = [parse(line) for line in ran.stdout.splitlines()]
    assert xpass[:2] == ("error", {"file": "specs/fixed_now.yaml", "line": "1", "title": "fixed_now: xpass"})
    assert notice[2] == "FAIL: 1 passed, 0 failed, 0 errors, 1 skipped, 1 xfailed, 1 xpassed"
