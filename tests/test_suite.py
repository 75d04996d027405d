"""`gradcheck run` on a folder of specs, as a CI job runs it.

Selection (-k), stopping early (-x), worker processes (--jobs), one bad spec
among good ones, report-only jobs (--exit-zero), and --output.
"""

from __future__ import annotations

import json
import re

import pytest

from gradcheck_cli.errors import GradcheckError
from gradcheck_cli.suite import RunOptions, collect, matches, run_item

from .ci_suites import write_spec, write_suite
from .conftest import LAYER_SPECS


def untimed(report_json: str) -> dict:
    """The JSON report without how long each spec took."""
    report = json.loads(report_json)
    for result in report["results"]:
        result.pop("duration_s")
    return report


def results(ran) -> list[tuple[str, str]]:
    return [(r["spec"], r["status"]) for r in json.loads(ran.stdout)["results"]]


def test_a_suite_prints_one_table_per_spec_and_a_summary_line(gradcheck, tmp_path):
    suite = write_suite(tmp_path, "dense", "bias_not_summed", "raises")
    ran = gradcheck("run", str(suite))
    assert ran.exit_code == 1
    headlines = [line.split()[0] for line in ran.stdout.splitlines() if "dtype=float64" in line]
    assert headlines == ["bias_not_summed", "dense", "raises"]
    assert ran.stdout.rstrip().splitlines()[-1] == "FAIL: 1 passed, 1 failed, 1 error"
    assert "checking" not in ran.stderr  # no progress bar when the output is not a terminal


@pytest.mark.parametrize(
    ("expr", "selected"),
    [
        ("dense", ["dense"]),
        ("summed or doubled", ["bias_not_summed", "weight_doubled"]),
        ("not dense and not raises", ["bias_not_summed", "weight_doubled"]),
        ("(bias or weight) and not doubled", ["bias_not_summed"]),
    ],
)
def test_k_selects_specs_by_name_like_pytest(gradcheck, tmp_path, expr, selected):
    suite = write_suite(tmp_path, "dense", "bias_not_summed", "weight_doubled", "raises")
    ran = gradcheck("run", str(suite), "-k", expr, "--format", "json")
    assert [name for name, _ in results(ran)] == selected


def test_k_that_selects_nothing_or_does_not_parse_is_a_usage_error(gradcheck, tmp_path):
    suite = write_suite(tmp_path, "dense")
    ran = gradcheck("run", str(suite), "-k", "relu")
    assert ran.exit_code == 2 and "no specs found matching -k 'relu'" in ran.stderr
    ran = gradcheck("run", str(suite), "-k", "dense and (")
    assert ran.exit_code == 2 and "not a valid expression" in ran.stderr
    with pytest.raises(GradcheckError):
        matches("__import__('os')", "dense")


def test_fail_fast_stops_at_the_first_spec_that_does_not_pass(gradcheck, tmp_path):
    write_spec(tmp_path, "a_dense", like="dense")
    suite = write_suite(tmp_path, "bias_not_summed", "dense", "weight_doubled")
    for flag in ("-x", "--fail-fast"):
        ran = gradcheck("run", str(suite), flag, "--format", "json")
        assert ran.exit_code == 1
        assert results(ran) == [("a_dense", "pass"), ("bias_not_summed", "fail")]
    # -x wins over --jobs: the same results as serial, not whatever finished first.
    ran = gradcheck("run", str(suite), "-x", "--jobs", "2", "--format", "json")
    assert results(ran) == [("a_dense", "pass"), ("bias_not_summed", "fail")]


def test_a_broken_or_raising_spec_never_stops_the_others(gradcheck, tmp_path):
    suite = write_suite(tmp_path, "broken", "dense", "exits", "raises", "weight_doubled")
    ran = gradcheck("run", str(suite), "--format", "json")
    assert ran.exit_code == 2  # the broken spec: a spec error outranks a failed check
    assert results(ran) == [
        ("broken", "error"),
        ("dense", "pass"),
        ("exits", "error"),  # sys.exit(3) in the checked code
        ("raises", "error"),
        ("weight_doubled", "fail"),
    ]
    errors = {r["spec"]: r["error"] for r in json.loads(ran.stdout)["results"]}
    assert "unknown key" in errors["broken"]
    assert "SystemExit" in errors["exits"]
    assert "ZeroDivisionError" in errors["raises"]


def test_run_item_turns_anything_the_run_raises_into_an_error_result(tmp_path, monkeypatch):
    (item,) = collect([write_spec(tmp_path, "dense")])

    def runner_bug(*args, **kwargs):
        raise RuntimeError("a bug in gradcheck itself")

    monkeypatch.setattr("gradcheck_cli.runner.run_case", runner_bug)
    result = run_item(item, RunOptions())
    assert result.status == "error" and not result.spec_error
    assert result.error == "gradcheck could not run this spec: RuntimeError: a bug in gradcheck itself"
    assert result.dims == {"batch": 6, "in": 3, "out": 2}


def test_jobs_gives_the_serial_results_in_the_serial_order(gradcheck, tmp_path):
    suite = write_suite(tmp_path, "bias_not_summed", "broken", "dense", "exits", "raises", "weight_doubled")
    serial = gradcheck("run", str(LAYER_SPECS), str(suite), "--format", "json")
    parallel = gradcheck("run", str(LAYER_SPECS), str(suite), "--jobs", "2", "--format", "json")
    assert parallel.exit_code == serial.exit_code == 2
    assert len(json.loads(serial.stdout)["results"]) > 20
    assert untimed(parallel.stdout) == untimed(serial.stdout)


def test_a_worker_that_dies_takes_down_only_its_own_spec(gradcheck, tmp_path):
    # os._exit in the checked code is refused; the run goes on with the others.
    write_spec(tmp_path, "crashes")
    suite = write_suite(tmp_path, "bias_not_summed", "dense", "weight_doubled")
    ran = gradcheck("run", str(suite), "--jobs", "2", "--format", "json")
    assert ran.exit_code == 1
    assert results(ran) == [
        ("bias_not_summed", "fail"),
        ("crashes", "error"),
        ("dense", "pass"),
        ("weight_doubled", "fail"),
    ]
    report = json.loads(ran.stdout)
    assert report["results"][1]["error"].startswith("backward backward() called os._exit(7) at ")


def test_exit_zero_reports_failures_but_exits_0(gradcheck, tmp_path):
    suite = write_suite(tmp_path, "dense", "bias_not_summed", "raises")
    ran = gradcheck("run", str(suite), "--exit-zero")
    assert ran.exit_code == 0
    assert "FAIL: 1 passed, 1 failed, 1 error" in ran.stdout
    # A spec that cannot load is a broken job, not a finding: still 2.
    write_spec(tmp_path, "broken")
    assert gradcheck("run", str(suite), "--exit-zero").exit_code == 2


@pytest.mark.parametrize(("fmt", "start"), [("json", "{"), ("junit", "<?xml"), ("markdown", "## ❌")])
def test_output_writes_the_format_and_still_prints_the_table(gradcheck, tmp_path, fmt, start):
    suite = write_suite(tmp_path / "specs", "dense", "bias_not_summed")
    out = tmp_path / f"report.{fmt}"
    ran = gradcheck("run", str(suite), "--format", fmt, "--output", str(out))
    assert ran.exit_code == 1
    assert out.read_text().startswith(start)
    assert ran.stdout.splitlines()[0].startswith("bias_not_summed [batch=6 in=3 out=2]")
    assert ran.stdout.rstrip().endswith("FAIL: 1 passed, 1 failed")


def test_output_to_a_folder_that_does_not_exist_is_a_usage_error(gradcheck, tmp_path):
    suite = write_suite(tmp_path, "dense")
    ran = gradcheck("run", str(suite), "--format", "json", "--output", str(tmp_path / "no" / "r.json"))
    assert ran.exit_code == 2 and "cannot write" in ran.stderr


def test_a_spec_that_does_not_load_is_labelled_with_its_yaml_name(gradcheck, tmp_path):
    (tmp_path / "file_stem.yaml").write_text("name: spec_name\nreference: x\nimplementation: {bad: 1}\n")
    (tmp_path / "no_name.yaml").write_text("reference: x\nimplementation:\n")
    (tmp_path / "not_yaml.yaml").write_text("name: [unclosed\nreference: x\n")
    ran = gradcheck("run", str(tmp_path), "--format", "json")
    assert ran.exit_code == 2
    assert [name for name, _ in results(ran)] == ["spec_name", "no_name", "not_yaml"]
    assert [item.name for item in collect([tmp_path])] == ["spec_name", "no_name", "not_yaml"]


def test_k_is_case_insensitive_and_matches_paths_as_pytest_does(gradcheck, tmp_path, monkeypatch):
    write_suite(tmp_path / "layers", "dense")
    write_suite(tmp_path / "broken_ones", "raises")
    monkeypatch.chdir(tmp_path)
    assert [n for n, _ in results(gradcheck("run", ".", "-k", "DENSE", "--format", "json"))] == ["dense"]
    assert [n for n, _ in results(gradcheck("run", ".", "-k", "broken_ones", "--format", "json"))] == [
        "raises"
    ]
    assert [
        n for n, _ in results(gradcheck("run", ".", "-k", "Layers and not raises", "--format", "json"))
    ] == ["dense"]
    assert [n for n, _ in results(gradcheck("run", "--builtin", "-k", "LIN", "--format", "json"))] == [
        "lin",
        "linear",
    ]


def test_output_dash_writes_the_format_to_stdout(gradcheck, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = write_suite(tmp_path / "specs", "dense")
    ran = gradcheck("run", str(suite), "--format", "json", "--output", "-")
    assert ran.exit_code == 0
    assert json.loads(ran.stdout)["summary"]["passed"] == 1
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize(
    ("backward", "mark", "status", "code"),
    [
        ("bias_not_summed", "xfail: 'the bias sum is issue 12'", "xfail", 0),
        ("dense", "xfail: 'the bias sum is issue 12'", "xpass", 1),  # strict, as pytest's xfail_strict
        ("raises", "xfail: {reason: 'not written yet', dtype: [float64]}", "xfail", 0),
        ("bias_not_summed", "xfail: {reason: 'only in half precision', dtype: [bfloat16]}", "fail", 1),
        ("raises", "skip: 'needs a GPU kernel'", "skip", 0),
        ("raises", "skip: {reason: 'cuda only', device: [cuda]}", "error", 1),
    ],
)
def test_xfail_and_skip_are_counted_apart(gradcheck, tmp_path, backward, mark, status, code):
    spec = write_spec(tmp_path, "layer", like=backward)
    spec.write_text(spec.read_text() + mark + "\n")
    ran = gradcheck("run", str(tmp_path), "--format", "json")
    assert ran.exit_code == code
    (result,) = json.loads(ran.stdout)["results"]
    assert result["status"] == status
    if status in ("xfail", "xpass", "skip"):
        assert result["reason"] == mark.split("'")[1]
    summary = json.loads(ran.stdout)["summary"]
    key = {"xfail": "xfailed", "xpass": "xpassed", "skip": "skipped", "fail": "failed", "error": "errors"}[
        status
    ]
    assert summary[key] == 1


def test_xfail_with_an_unknown_dtype_is_a_spec_error_at_its_line(gradcheck, tmp_path):
    spec = write_spec(tmp_path, "dense")
    spec.write_text(spec.read_text() + "xfail: {reason: r, dtype: [float8]}\n")
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2
    assert f"{spec}:13: xfail.dtype: unknown dtype 'float8'" in ran.stderr


def _run_with_stderr_on_a_pty(args: list[str], env: dict[str, str], cwd) -> tuple[int, str, bytes]:
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "gradcheck_cli", *args],
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, **env, "COLUMNS": "100"},
        cwd=cwd,
    )
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        seen += chunk
    stdout, _ = process.communicate(timeout=120)
    os.close(master)
    return process.returncode, stdout.decode(), seen


@pytest.mark.parametrize("no_color", [False, True])
def test_the_progress_bar_goes_to_a_terminal_stderr_even_when_stdout_is_redirected(tmp_path, no_color):
    suite = write_suite(tmp_path / "specs", "dense", "bias_not_summed", "weight_doubled")
    env = {"NO_COLOR": "1"} if no_color else {"FORCE_COLOR": "1"}
    if no_color:
        env["FORCE_COLOR"] = ""
    code, stdout, stderr = _run_with_stderr_on_a_pty(["run", str(suite), "--format", "json"], env, tmp_path)
    assert code == 1
    assert json.loads(stdout)["summary"]["failed"] == 2  # stdout is the report, untouched by the bar
    assert b"checking" in stderr or b"dense" in stderr  # the bar was drawn on the terminal
    colours = re.findall(rb"\x1b\[[0-9;]*m", stderr)
    coloured = [c for c in colours if re.search(rb"\[(3[0-7]|38|9[0-7])", c)]
    assert (not coloured) if no_color else coloured


def test_no_progress_bar_when_stderr_is_not_a_terminal_or_with_qq(gradcheck, tmp_path):
    suite = write_suite(tmp_path, "dense")
    ran = gradcheck("run", str(suite))
    assert "checking" not in ran.stderr
