"""--format markdown: a report for a CI job summary or a pull-request comment.

A reviewer opening the summary sees the verdict first, then what broke, open,
and what passed, folded away.
"""

from __future__ import annotations

import re

from gradcheck_cli.report.markdown import render_markdown
from gradcheck_cli.result import Report

from . import report_cases
from .ci_suites import write_spec, write_suite

COLUMNS = ["tensor", "kind", "expected", "got", "max abs err", "mismatched", "status"]


def cells(line: str) -> list[str]:
    """The cells of a Markdown table row; ``\\|`` is a pipe inside a cell."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def section(markdown: str, heading: str) -> str:
    """The text from ``heading`` to the next heading or fold."""
    start = markdown.index(heading)
    rest = markdown[start + len(heading) :]
    ends = [i for i in (rest.find("\n### "), rest.find("\n<details>")) if i >= 0]
    return rest[: min(ends)] if ends else rest


def render(gradcheck, *args: str) -> tuple[int, str]:
    ran = gradcheck("run", *args, "--format", "markdown")
    return ran.exit_code, ran.stdout


def test_headline_and_summary_line_give_the_verdict(gradcheck, tmp_path):
    suite = write_suite(tmp_path, "dense", "bias_not_summed", "raises")
    code, markdown = render(gradcheck, str(suite))
    assert code == 1
    lines = markdown.splitlines()
    assert lines[0] == "## ❌ gradcheck: FAIL"
    assert lines[2].startswith("**1 passed, 1 failed, 1 error** of 3 spec cases · gradcheck ")
    assert "· torch " in lines[2]
    assert lines[-1] == "FAIL: 1 passed, 1 failed, 1 error"

    code, markdown = render(gradcheck, str(write_suite(tmp_path / "good", "dense")))
    assert code == 0
    assert markdown.splitlines()[0] == "## ✅ gradcheck: PASS"


def test_a_failing_result_is_open_with_its_table_and_diagnosis(gradcheck, tmp_path):
    suite = write_suite(tmp_path, "dense", "bias_not_summed")
    _, markdown = render(gradcheck, str(suite))
    text = section(markdown, "### ❌ bias_not_summed: fail")
    rows = [cells(line) for line in text.splitlines() if line.startswith("|")]
    assert rows[0] == COLUMNS
    assert all(len(row) == len(COLUMNS) for row in rows)
    by_tensor = {row[0]: row for row in rows[2:]}
    assert by_tensor["b"] == ["b", "param", "[out=2]", "[batch=6, out=2]", "-", "-", "❌ shape_error"]
    assert by_tensor["w"][-1] == "✅ pass"
    assert "- **b** `missing_reduction`: b gradient has shape [batch=6, out=2]" in text
    assert "<details>" not in markdown.split("### ❌ bias_not_summed")[0]


def test_a_mismatch_shows_its_numbers_and_worst_element(gradcheck, tmp_path):
    _, markdown = render(gradcheck, str(write_suite(tmp_path, "weight_doubled")))
    text = section(markdown, "### ❌ weight_doubled: fail")
    row = next(cells(line) for line in text.splitlines() if line.startswith("| w "))
    assert row[4] != "-" and float(row[4]) > 0  # max abs err
    assert row[5] == "6/6" and row[6] == "❌ mismatch"
    assert re.search(r"  - worst element \[\d, \d\]: expected -?[\d.]+, got -?[\d.]+", text)


def test_passing_results_are_folded_after_the_failing_ones(gradcheck, tmp_path):
    write_spec(tmp_path, "a_dense", like="dense")  # passing, and before the failing one
    suite = write_suite(tmp_path, "bias_not_summed", "dense")
    _, markdown = render(gradcheck, str(suite))
    assert [line for line in markdown.splitlines() if line.startswith("### ")] == [
        "### ❌ bias_not_summed: fail"
    ]
    fail_at = markdown.index("### ❌ bias_not_summed")
    for name in ("a_dense", "dense"):
        fold = f"<details><summary>✅ {name}: pass</summary>"
        assert fold in markdown and markdown.index(fold) > fail_at
    # Each fold is closed and holds that result's table.
    folded = markdown.split("<details><summary>✅ dense: pass</summary>")[1].split("</details>")[0]
    assert "| b | param | [out=2] | [out=2] |" in folded


def test_an_error_message_is_shown_verbatim_and_cannot_break_the_page(gradcheck, tmp_path):
    # The message holds a pipe, an HTML tag and a run of three backticks.
    _, markdown = render(gradcheck, str(write_suite(tmp_path, "raises_markup")))
    text = section(markdown, "### 💥 raises_markup: error")
    fence = re.search(r"^(`{4,})text$", text, re.M)
    assert fence, "the error's own ``` must not close its code block"
    block = text.split(fence.group(0) + "\n")[1].split("\n" + fence.group(1))[0]
    assert "ValueError: a | b <tag> & " in block


def test_a_spec_error_says_the_spec_cannot_run(gradcheck, tmp_path):
    code, markdown = render(gradcheck, str(write_suite(tmp_path, "broken", "dense")))
    assert code == 2
    text = section(markdown, "### 💥 broken: error")
    assert "**error** (the spec cannot run):" in text
    assert "unknown key" in text


def test_output_file_is_markdown_and_the_terminal_still_shows_the_table(gradcheck, tmp_path):
    suite = write_suite(tmp_path / "specs", "dense", "bias_not_summed")
    summary = tmp_path / "summary.md"
    ran = gradcheck("run", str(suite), "--format", "markdown", "--output", str(summary))
    assert ran.exit_code == 1
    assert ran.stdout.rstrip().endswith("FAIL: 1 passed, 1 failed") and "## " not in ran.stdout
    assert summary.read_text().startswith("## ❌ gradcheck: FAIL")


def test_counts_say_one_error_and_two_errors():
    def summary_line(report: Report) -> str:
        return render_markdown(report).splitlines()[2]

    raised = [report_cases.result(f"raises_{i}", "error", [], error="ValueError") for i in range(2)]
    assert summary_line(Report(results=raised[:1])).startswith(
        "**0 passed, 0 failed, 1 error** of 1 spec case"
    )
    assert summary_line(Report(results=raised)).startswith("**0 passed, 0 failed, 2 errors** of 2 spec cases")


def test_skips_expected_failures_and_interruptions_are_counted_and_shown():
    markdown = render_markdown(report_cases.every_status())
    lines = markdown.splitlines()
    assert lines[2] == (
        "**1 passed, 1 failed, 1 error, 1 skipped, 1 xfailed, 1 xpassed, 1 interrupted** of 7 spec cases"
        " · gradcheck 0.1.0 · torch 2.13.0+cpu"
    )
    assert lines[-1] == "FAIL: 1 passed, 1 failed, 1 error, 1 skipped, 1 xfailed, 1 xpassed, 1 interrupted"
    # What fails the run is open, in run order; an xfail spec that passed is one of them.
    assert [line for line in lines if line.startswith("### ")] == [
        "### ❌ bias_not_summed: fail",
        "### 💥 raises: error",
        "### ❌ fixed_now: xpass",
        "### ⏹️ cut_short: interrupted",
    ]
    assert "expected to fail (bias not summed yet (#12)), but every tensor passed" in section(
        markdown, "### ❌ fixed_now: xpass"
    )
    assert "interrupted before it finished" in section(markdown, "### ⏹️ cut_short: interrupted")
    # A skip and an expected failure are folded with their reason, after what failed.
    folds = [line for line in lines if line.startswith("<details>")]
    assert folds == [
        "<details><summary>✅ dense: pass</summary>",
        "<details><summary>⏭️ not_on_cpu: skip (needs cuda)</summary>",
        "<details><summary>❎ known_bad: xfail (bias not summed yet (#12))</summary>",
    ]
    known_bad = markdown.split(folds[2])[1].split("</details>")[0]
    assert "expected to fail: bias not summed yet (#12)" in known_bad
    assert "| b | param | [out=2] | [batch=6, out=2] | - | - | ❌ shape_error |" in known_bad
    assert "not run: needs cuda" in markdown.split(folds[1])[1].split("</details>")[0]


def test_a_run_of_passes_skips_and_expected_failures_opens_nothing():
    report = report_cases.every_status()
    report.results = [r for r in report.results if r.status in ("pass", "skip", "xfail")]
    markdown = render_markdown(report)
    assert "### " not in markdown
    assert markdown.splitlines()[2].startswith("**1 passed, 0 failed, 0 errors, 1 skipped, 1 xfailed** of 3")


def test_a_spec_s_xfail_and_skip_keys_reach_the_markdown_report(gradcheck, tmp_path):
    code, markdown = render(gradcheck, str(report_cases.write_expectations(tmp_path)))
    assert code == 1  # the xfail spec that passed
    lines = markdown.splitlines()
    assert lines[2].startswith("**1 passed, 0 failed, 0 errors, 1 skipped, 1 xfailed, 1 xpassed** of 4")
    assert [line for line in lines if line.startswith("### ")] == ["### ❌ fixed_now: xpass"]
    assert "<details><summary>⏭️ not_on_cpu: skip (needs cuda)</summary>" in lines
    assert "<details><summary>❎ known_bad: xfail (bias not summed yet (#12))</summary>" in lines
