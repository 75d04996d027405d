"""`pytest --gradcheck PATH`: specs as pytest items, run by pytest's own machinery.

The plugin is installed with the package (a ``pytest11`` entry point), so
every pytest run loads it; these tests run pytest inside pytest (pytester).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

# An in-process pytester run forgets the modules imported during it, and torch
# cannot be imported twice in one process: import it before any run.
import gradcheck_cli.runner  # noqa: F401

from .ci_suites import write_spec, write_suite
from .junit_schema import STRICT, schema_errors

pytest_plugins = ["pytester"]


@pytest.fixture
def specs(pytester: pytest.Pytester):
    """specs/ with a right layer, a bias never summed, and a weight gradient doubled."""
    return write_suite(pytester.path / "specs", "bias_not_summed", "dense", "weight_doubled")


def test_each_spec_is_one_item_named_after_the_spec(pytester, specs):
    result = pytester.runpytest("--gradcheck", "specs", "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "specs/bias_not_summed.yaml::bias_not_summed",
            "specs/dense.yaml::dense",
            "specs/weight_doubled.yaml::weight_doubled",
            "3 tests collected*",
        ]
    )
    # The implementations next to the specs are not collected, nor are other YAML files.
    (specs / "config.yaml").write_text("settings: {verbose: true}\n")
    assert pytester.runpytest("--gradcheck", "specs", "--collect-only", "-q").ret == 0
    pytester.runpytest("--gradcheck", "specs", "--collect-only", "-q").stdout.no_fnmatch_line("*config*")


def test_a_spec_with_an_upper_case_suffix_is_collected_as_gradcheck_run_finds_it(pytester, specs):
    (specs / "dense.yaml").rename(specs / "DENSE.YAML")
    result = pytester.runpytest("--gradcheck", "specs", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["specs/DENSE.YAML::dense", "3 tests collected*"])


def test_a_failing_spec_shows_the_gradcheck_table(pytester, specs):
    result = pytester.runpytest("--gradcheck", "specs")
    result.assert_outcomes(passed=1, failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    failure = out.split("_ gradcheck spec bias_not_summed _")[1].split("_ gradcheck spec weight_doubled _")[0]
    lines = failure.strip("_\n").splitlines()
    assert lines[0].startswith("b: shape_error, expected [out=2], got [batch=6, out=2] [missing_reduction]")
    assert lines[2].startswith("bias_not_summed [batch=6 in=3 out=2] dtype=float64 device=cpu seed=0")
    assert lines[3].split() == ["tensor", "kind", "expected", "shape", "got", "shape", "max", "abs", "err",
                                "max", "rel", "err", "mismatched", "status"]  # fmt: skip
    assert lines[6].split()[:2] == ["b", "param"] and lines[6].endswith("shape_error")
    assert lines[7].startswith("  b: [missing_reduction]") and "grad.sum(0)" in lines[7]
    result.stdout.fnmatch_lines(["FAILED specs/weight_doubled.yaml::weight_doubled - w: mismatch*"])
    result.stdout.no_fnmatch_line("*Traceback*")


def test_k_selects_specs_by_name(pytester, specs):
    result = pytester.runpytest("--gradcheck", "specs", "-k", "dense or doubled")
    result.assert_outcomes(passed=1, failed=1, deselected=1)


def test_x_stops_at_the_first_failing_spec(pytester, specs):
    result = pytester.runpytest("--gradcheck", "specs", "-x")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])


def test_junit_xml_has_a_testcase_per_spec_with_the_failure(pytester, specs):
    result = pytester.runpytest("--gradcheck", "specs", "--junit-xml", "report.xml")
    result.assert_outcomes(passed=1, failed=2)
    suite = ET.parse(pytester.path / "report.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "2", "0")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"bias_not_summed", "dense", "weight_doubled"}
    assert cases["dense"].find("failure") is None
    failure = cases["bias_not_summed"].find("failure")
    assert failure is not None
    assert failure.get("message", "").startswith("b: shape_error, expected [out=2], got [batch=6, out=2]")
    assert "  b       param  [out=2]" in (failure.text or "")


def test_junit_xml_is_valid_against_the_schema_pytest_tests_it_with(pytester, specs):
    write_spec(specs, "broken")
    pytester.runpytest("--gradcheck", "specs", "--junit-xml", "report.xml").assert_outcomes(
        passed=1, failed=3
    )
    document = (pytester.path / "report.xml").read_text()
    assert schema_errors(STRICT, document) == []
    assert "<properties>" not in document
    # What the plugin used to do, a property on each item, makes the same file invalid.
    pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_call(item):
            item.user_properties.append(("gradcheck_status", "fail"))
            return (yield)
        """
    )
    pytester.runpytest("--gradcheck", "specs", "--junit-xml", "report.xml")
    errors = schema_errors(STRICT, (pytester.path / "report.xml").read_text())
    assert errors and all("Unexpected child with tag 'properties'" in e for e in errors)


def test_skip_and_xfail_specs_are_pytest_outcomes_with_their_reason(pytester):
    from .report_cases import write_expectations

    write_expectations(pytester.path / "specs")
    result = pytester.runpytest(
        "--gradcheck", "specs", "-rsx", "--junit-xml", "report.xml", "-k", "not fixed"
    )
    result.assert_outcomes(passed=1, skipped=1, xfailed=1, deselected=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "SKIPPED [1] specs/not_on_cpu.yaml:1: needs cuda",
            "XFAIL specs/known_bad.yaml::known_bad - bias not summed yet (#12)",
        ]
    )
    document = (pytester.path / "report.xml").read_text()
    assert schema_errors(STRICT, document) == []
    suite = ET.fromstring(document).find("testsuite")
    assert suite is not None and suite.get("skipped") == "2"


def test_an_xfail_spec_that_passes_fails_the_run(pytester):
    from .report_cases import write_expectations

    write_expectations(pytester.path / "specs")
    result = pytester.runpytest("--gradcheck", "specs", "-k", "fixed")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(["[[]XPASS(strict)[]] bias not summed yet (#12): every tensor passed"])
    result.stdout.fnmatch_lines(
        ["FAILED specs/fixed_now.yaml::fixed_now - [[]XPASS(strict)[]] bias not summed*"]
    )


# Ctrl-C in the middle of a spec, as the runner reports it: an `interrupted` result in place
# of the real one, around each call (the plugin sees only CaseResult.status).
INTERRUPTED_CONFTEST = """
import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    import gradcheck_cli.suite as suite

    real = suite.run_supervised

    def run_supervised(entry, options):
        result = real(entry, options)
        if result.spec == "bias_not_summed":
            result.status = "interrupted"
        return result

    suite.run_supervised = run_supervised
    try:
        yield
    finally:
        suite.run_supervised = real
"""


def test_an_interrupted_result_stops_the_session_as_ctrl_c_does(pytester, specs):
    pytester.makeconftest(INTERRUPTED_CONFTEST)
    result = pytester.runpytest("--gradcheck", "specs", no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["specs/bias_not_summed.yaml*", "*! KeyboardInterrupt !*", "*no tests ran*"])
    result.stdout.no_fnmatch_line("specs/dense.yaml*")  # the specs after it never run


def test_runs_under_xdist(pytester, specs):
    result = pytester.runpytest("--gradcheck", "specs", "-n", "2", "-p", "xdist")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*gradcheck spec bias_not_summed*", "*shape_error*"])


def test_a_spec_that_cannot_load_fails_alone_and_the_others_run(pytester, specs):
    write_spec(specs, "broken")
    write_spec(specs, "raises")
    result = pytester.runpytest("--gradcheck", "specs")
    result.assert_outcomes(passed=1, failed=4)  # no collection error stops the session
    result.stdout.fnmatch_lines(["*broken.yaml:13: tolerances: unknown key*"])
    result.stdout.fnmatch_lines(["*ZeroDivisionError: division by zero in my backward*"])


def test_specs_outside_testpaths_join_the_tests_pytest_collects(pytester, specs):
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    pytester.mkdir("tests")
    pytester.path.joinpath("tests", "test_unit.py").write_text("def test_unit():\n    pass\n")
    result = pytester.runpytest("--gradcheck", "specs", "--gradcheck", "specs/dense.yaml")
    result.assert_outcomes(passed=2, failed=2)  # test_unit, and each spec once
    assert pytester.runpytest().parseoutcomes() == {"passed": 1}


def test_dtype_and_device_options_reach_the_specs(pytester, specs):
    result = pytester.runpytest("--gradcheck", "specs", "--gradcheck-dtype", "float32", "-k", "bias")
    assert "bias_not_summed [batch=6 in=3 out=2] dtype=float32 device=cpu" in result.stdout.str()
    result = pytester.runpytest("--gradcheck", "specs", "--gradcheck-device", "cuda:99", "-k", "dense")
    result.assert_outcomes(failed=1)


def test_a_missing_path_is_a_usage_error(pytester):
    result = pytester.runpytest("--gradcheck", "nowhere")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--gradcheck nowhere: no such file or directory*"])


def test_without_the_option_the_plugin_is_inert_and_torch_stays_unimported(pytester, specs):
    pytester.makepyfile(
        test_probe="""
        import sys

        def test_torch_was_not_imported():
            assert "torch" not in sys.modules
            assert "gradcheck_cli.runner" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:xdist")
    result.assert_outcomes(passed=1)  # the probe; no spec is collected
    result.stdout.fnmatch_lines(["*plugins:*gradcheck*"])  # loaded, and doing nothing


def test_a_spec_that_ends_its_process_fails_its_item_and_never_the_session(pytester, specs):
    write_spec(specs, "crashes")  # os._exit(7) in the backward
    (specs / "exits0.yaml").write_text(
        (specs / "dense.yaml")
        .read_text()
        .replace("name: dense", "name: exits0")
        .replace("dense.py", "exits0.py")
    )
    (specs / "exits0.py").write_text(  # under Python's os._exit, which is refused: the process ends
        "import ctypes\n\ndef backward(grad_out, x, w, b):\n    ctypes.CDLL(None)._exit(0)\n"
    )
    result = pytester.runpytest("--gradcheck", "specs")  # no xdist: one pytest process
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, failed=4)
    result.stdout.fnmatch_lines(["*the checked code ended the process: exit code 0*"])
    result.stdout.fnmatch_lines(["*backward backward() called os._exit(7) at *crashes.py:2*"])


def test_the_plugin_reads_tool_gradcheck_as_the_command_line_does(pytester, specs):
    (specs / "spins.yaml").write_text(
        (specs / "dense.yaml")
        .read_text()
        .replace("name: dense", "name: spins")
        .replace("dense.py", "spins.py")
    )
    (specs / "spins.py").write_text("def backward(grad_out, x, w, b):\n    while True:\n        pass\n")
    pytester.path.joinpath("pyproject.toml").write_text("[tool.gradcheck]\ntimeout = 1\nratio = 3\n")
    result = pytester.runpytest("--gradcheck", "specs", "--gradcheck-dtype", "float32")
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines(
        ["*timed out after 1 s; the checked code was at *spins.py:[23] (in backward)*"]
    )


@pytest.mark.parametrize(
    "args, pyproject, message",
    [
        (["--gradcheck-timeout", "soon"], None, "argument --gradcheck-timeout: invalid float value: 'soon'"),
        (
            ["--gradcheck-timeout", "-1"],
            None,
            "--gradcheck-timeout must be a positive number of seconds, got -1.0",
        ),
        (
            ["--gradcheck-timeout", "nan"],
            None,
            "--gradcheck-timeout must be a positive number of seconds, got nan",
        ),
        (["--gradcheck-timeout", "1e10"], None, "--gradcheck-timeout is 1e+10 seconds: at most 1000000"),
        (["--gradcheck-dtype", "float8"], None, "unknown dtype 'float8'"),
        (["--gradcheck-device", "tpu"], None, "unknown device 'tpu'"),
        ([], "timeout = 1e10", "[tool.gradcheck] timeout is 1e+10 seconds: at most 1000000"),
        ([], "timeout = -1", "[tool.gradcheck] timeout must be a positive number of seconds, got -1"),
        ([], "atol = nan", "[tool.gradcheck] atol must be a non-negative number, got nan"),
        ([], 'tolerance = "loose"', "[tool.gradcheck] tolerance must be absolute or calibrated, got 'loose'"),
        (
            [],
            'ratio = "x"',
            "[tool.gradcheck] ratio must be a positive number (a multiple of PyTorch's own error), got 'x'",
        ),
        (
            [],
            "seed = 99999999999999999999999",
            "[tool.gradcheck] seed must be an integer from 0 to 2**63 - 1",
        ),
        ([], "atoll = 1", "[tool.gradcheck]: unknown key 'atoll'"),
    ],
)
def test_bad_settings_are_pytest_usage_errors_not_internal_errors(pytester, specs, args, pyproject, message):
    if pyproject is not None:
        pytester.path.joinpath("pyproject.toml").write_text(f"[tool.gradcheck]\n{pyproject}\n")
    result = pytester.runpytest_subprocess("--gradcheck", "specs", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output and "Traceback" not in output
    assert message in result.stderr.str()


def test_a_spec_tolerance_outranks_tool_gradcheck_in_the_plugin_as_in_gradcheck_run(pytester, gradcheck):
    """[tool.gradcheck] would let a doubled weight gradient pass; the spec's own tolerance says no."""
    specs = write_suite(pytester.path / "specs", "weight_doubled")
    with (specs / "weight_doubled.yaml").open("a") as spec:
        spec.write("tolerance: {atol: 1.0e-9, rtol: 0}\n")
    pytester.path.joinpath("pyproject.toml").write_text("[tool.gradcheck]\natol = 100.0\nrtol = 100.0\n")
    ran = gradcheck("run", str(specs), "-f", "json")  # the config is read from here, as pytest's rootdir
    assert ran.exit_code == 1
    assert '"source": "spec"' in ran.stdout
    result = pytester.runpytest("--gradcheck", "specs")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*w: mismatch in 6/6 elements*", "*atol=1e-09 rtol=0 (spec)*"])
    # Without the spec's word, the config decides, in both.
    (specs / "weight_doubled.yaml").write_text(
        (specs / "weight_doubled.yaml").read_text().replace("tolerance: {atol: 1.0e-9, rtol: 0}\n", "")
    )
    assert gradcheck("run", str(specs)).exit_code == 0
    pytester.runpytest("--gradcheck", "specs").assert_outcomes(passed=1)
