"""--format junit: the XML a CI server reads, one testcase per spec case.

What a CI page shows comes from here: the counts in the header, one testcase
per spec, and for a failing one a message naming each wrong tensor with its
numbers and diagnosis.

Every document is validated against junit-10.xsd with the two relaxations
tests/junit_schema.py documents (the ``<error>`` element and the testcase's
``file`` attribute, which Jenkins and GitLab read and that schema lacks), and
against junit-10.xsd itself, asserting that it rejects only those two.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gradcheck_cli.report.junit import render_junit

from . import report_cases
from .ci_suites import write_spec, write_suite
from .junit_schema import READERS, STRICT, assert_valid, schema_errors, undocumented_errors


def run_junit(gradcheck, *args: str) -> tuple[int, str]:
    ran = gradcheck("run", *args, "--format", "junit")
    return ran.exit_code, ran.stdout


def cases_by_spec(root: ET.Element) -> dict[str, ET.Element]:
    return {case.get("name", "").split("[")[0]: case for case in root.iter("testcase")}


def test_the_schema_check_catches_what_the_readers_do_not_accept():
    good = render_junit(report_cases.every_status())
    assert_valid(good)
    # The old header, a `skipped` count on <testsuites>, and a testcase with no name.
    bad_header = good.replace('<testsuites name="gradcheck"', '<testsuites skipped="2" name="gradcheck"', 1)
    assert any("'skipped' attribute not allowed" in e for e in schema_errors(READERS, bad_header))
    assert undocumented_errors(bad_header)
    nameless = good.replace(' name="dense[', ' label="dense[', 1)
    assert schema_errors(READERS, nameless)
    # An element no reader knows, under a testcase.
    unknown = good.replace("<skipped ", "<skip ", 1).replace("</skipped>", "</skip>", 1)
    assert schema_errors(READERS, unknown)
    # The strict schema's two complaints are the documented ones and only those.
    assert schema_errors(STRICT, good) and undocumented_errors(good) == []


def test_a_suite_with_every_kind_of_result_is_valid(gradcheck, tmp_path):
    suite = write_suite(tmp_path, "dense", "bias_not_summed", "weight_doubled", "raises", "broken")
    write_spec(tmp_path, "raises_markup")  # text XML cannot hold
    code, document = run_junit(gradcheck, str(suite))
    assert code == 2
    assert_valid(document)
    assert_valid(render_junit(report_cases.every_status()))


def test_counts_in_the_header_match_the_testcases(gradcheck, tmp_path):
    suite = write_suite(tmp_path, "dense", "bias_not_summed", "weight_doubled", "raises", "broken")
    code, document = run_junit(gradcheck, str(suite))
    assert code == 2  # a broken spec is a spec error, whatever else failed
    root = ET.fromstring(document)
    assert root.tag == "testsuites"
    (testsuite,) = root.findall("testsuite")
    for element in (root, testsuite):
        assert element.get("name") == "gradcheck"
        assert element.get("tests") == "5"
        assert element.get("failures") == "2"
        assert element.get("errors") == "2"
        assert float(element.get("time", "x")) >= 0
    assert testsuite.get("skipped") == "0"
    assert root.get("skipped") is None  # not an attribute of <testsuites> in junit-10.xsd
    cases = testsuite.findall("testcase")
    assert len(cases) == 5
    assert len(testsuite.findall("testcase/failure")) == 2
    assert len(testsuite.findall("testcase/error")) == 2
    versions = {p.get("name"): p.get("value") for p in testsuite.iter("property")}
    assert versions["gradcheck"] and versions["torch"]


def test_skips_expected_failures_and_interruptions_are_counted_as_pytest_counts_them():
    root = ET.fromstring(render_junit(report_cases.every_status()))
    (testsuite,) = root.findall("testsuite")
    # pass, fail, error, skip, xfail, xpass, interrupted
    assert (testsuite.get("tests"), testsuite.get("failures"), testsuite.get("errors")) == ("7", "2", "2")
    assert testsuite.get("skipped") == "2"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("7", "2", "2")
    assert root.get("time") == testsuite.get("time") == "1.750"
    children = {name: [child.tag for child in case] for name, case in cases_by_spec(root).items()}
    assert children == {
        "dense": [],
        "bias_not_summed": ["failure"],
        "raises": ["error"],
        "not_on_cpu": ["skipped"],
        "known_bad": ["skipped"],
        "fixed_now": ["failure"],
        "cut_short": ["error"],
    }


def test_a_skip_and_an_expected_failure_are_skipped_with_their_reason():
    cases = cases_by_spec(ET.fromstring(render_junit(report_cases.every_status())))
    skipped = cases["not_on_cpu"].find("skipped")
    assert skipped is not None
    assert (skipped.get("type"), skipped.get("message"), skipped.text) == ("skip", "needs cuda", "needs cuda")
    xfailed = cases["known_bad"].find("skipped")
    assert xfailed is not None
    assert (xfailed.get("type"), xfailed.get("message")) == ("xfail", "bias not summed yet (#12)")
    # GitLab shows the element's text as the reason: the reason, then what failed as expected.
    text = xfailed.text or ""
    assert text.startswith("bias not summed yet (#12)\n\nknown_bad [batch=6 in=3 out=2] dtype=float64")
    assert "shape_error" in text


def test_an_expected_failure_that_passes_is_a_failure_and_an_interrupted_case_an_error():
    cases = cases_by_spec(ET.fromstring(render_junit(report_cases.every_status())))
    xpass = cases["fixed_now"].find("failure")
    assert xpass is not None
    assert xpass.get("type") == "xpass"
    assert xpass.get("message") == "[XPASS(strict)] bias not summed yet (#12): every tensor passed"
    interrupted = cases["cut_short"].find("error")
    assert interrupted is not None
    assert (interrupted.get("type"), interrupted.get("message")) == ("interrupted", "interrupted")


def test_a_testcase_is_named_after_its_spec_file_and_case(gradcheck, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_suite(tmp_path / "specs", "dense")
    code, document = run_junit(gradcheck, "specs", "--seed", "4")
    assert code == 0
    (case,) = ET.fromstring(document).iter("testcase")
    assert case.get("classname") == "specs.dense"  # as pytest names specs/test_dense.py
    assert case.get("name") == "dense[batch=6 in=3 out=2 float64 cpu seed=4]"
    assert case.get("file") == "specs/dense.yaml"
    assert float(case.get("time", "x")) >= 0
    assert list(case) == []  # a passing testcase has no failure child


def test_two_specs_of_one_name_in_two_folders_are_two_testcases(gradcheck, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_spec(tmp_path / "attention", "dense")
    write_spec(tmp_path / "mlp", "dense", like="bias_not_summed")
    code, document = run_junit(gradcheck, "attention", "mlp")
    assert code == 1
    cases = list(ET.fromstring(document).iter("testcase"))
    ids = [(case.get("classname"), case.get("name")) for case in cases]
    assert ids == [
        ("attention.dense", "dense[batch=6 in=3 out=2 float64 cpu seed=0]"),
        ("mlp.dense", "dense[batch=6 in=3 out=2 float64 cpu seed=0]"),
    ]
    assert [child.tag for case in cases for child in case] == ["failure"]  # the mlp one


def test_a_failure_message_names_the_tensor_the_numbers_and_the_diagnosis(gradcheck, tmp_path):
    suite = write_suite(tmp_path, "dense", "bias_not_summed", "weight_doubled")
    _, document = run_junit(gradcheck, str(suite))
    cases = cases_by_spec(ET.fromstring(document))

    (failure,) = cases["bias_not_summed"].findall("failure")
    assert failure.get("type") == "shape_error"
    message = failure.get("message", "")
    assert message.startswith("b: shape_error, expected [out=2], got [batch=6, out=2] [missing_reduction]")
    assert "grad.sum(0)" in message
    assert "w:" not in message and "x:" not in message  # only the failing tensors

    (failure,) = cases["weight_doubled"].findall("failure")
    assert failure.get("type") == "mismatch"
    message = failure.get("message", "")
    assert message.startswith("w: mismatch in 6/6 elements, max abs err ")
    assert "max rel err 1, worst [" in message
    # The element's text is the table a terminal shows, every tensor included.
    body = failure.text or ""
    assert body.startswith("weight_doubled [batch=6 in=3 out=2] dtype=float64")
    for tensor in ("x", "w", "b"):
        assert any(line.split()[:1] == [tensor] for line in body.splitlines()), tensor
    assert "FAIL:" not in body  # the run's verdict is not part of one testcase


def test_an_exception_in_the_checked_code_is_an_error_not_a_failure(gradcheck, tmp_path):
    suite = write_suite(tmp_path, "raises", "broken")
    _, document = run_junit(gradcheck, str(suite))
    cases = cases_by_spec(ET.fromstring(document))
    (error,) = cases["raises"].findall("error")
    assert error.get("type") == "error"
    assert "ZeroDivisionError: division by zero in my backward" in error.get("message", "")
    assert cases["raises"].findall("failure") == []
    (error,) = cases["broken"].findall("error")
    assert error.get("type") == "spec_error"
    assert "tolerances" in error.get("message", "")


def test_text_that_xml_cannot_hold_still_gives_a_valid_file(gradcheck, tmp_path):
    # The checked code raises with an ANSI colour code and a NUL byte in its message.
    suite = write_suite(tmp_path, "raises_markup")
    ran = gradcheck("run", str(suite), "--format", "junit")
    assert_valid(ran.stdout)
    (error,) = ET.fromstring(ran.stdout).iter("error")
    message = error.get("message", "")
    assert "a | b <tag> & \\x1b[31mred\\x00" in message


def test_output_file_is_junit_and_the_terminal_still_shows_the_table(gradcheck, tmp_path):
    suite = write_suite(tmp_path / "specs", "dense", "bias_not_summed")
    report = tmp_path / "gradcheck.xml"
    ran = gradcheck("run", str(suite), "--format", "junit", "--output", str(report))
    assert ran.exit_code == 1
    assert "shape_error" in ran.stdout and ran.stdout.rstrip().endswith("FAIL: 1 passed, 1 failed")
    assert "<testsuite" not in ran.stdout
    root = ET.parse(report).getroot()
    assert root.get("tests") == "2" and root.get("failures") == "1"


def test_a_spec_s_xfail_and_skip_keys_reach_the_junit_report(gradcheck, tmp_path):
    code, document = run_junit(gradcheck, str(report_cases.write_expectations(tmp_path)))
    assert code == 1  # the xfail spec that passed
    assert_valid(document)
    (testsuite,) = ET.fromstring(document).findall("testsuite")
    counts = [testsuite.get(key) for key in ("tests", "failures", "errors", "skipped")]
    assert counts == ["4", "1", "0", "2"]
    cases = cases_by_spec(ET.fromstring(document))
    assert [(c.tag, c.get("type"), c.get("message")) for c in cases["not_on_cpu"]] == [
        ("skipped", "skip", "needs cuda")
    ]
    assert [(c.tag, c.get("type")) for c in cases["known_bad"]] == [("skipped", "xfail")]
    (xpass,) = cases["fixed_now"]
    assert (xpass.tag, xpass.get("type")) == ("failure", "xpass")
