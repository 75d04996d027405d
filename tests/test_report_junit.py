"""--format junit: the XML a CI server reads, one testcase per spec case.

What a CI page shows comes from here: the counts in the header, one testcase
per spec, and for a failing one a message naming each wrong tensor with its
numbers and diagnosis.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .ci_suites import write_suite


def run_junit(gradcheck, *args: str) -> tuple[int, ET.Element]:
    ran = gradcheck("run", *args, "--format", "junit")
    return ran.exit_code, ET.fromstring(ran.stdout)


def cases_by_spec(root: ET.Element) -> dict[str, ET.Element]:
    return {case.get("classname", ""): case for case in root.iter("testcase")}


def test_counts_in_the_header_match_the_testcases(gradcheck, tmp_path):
    suite = write_suite(tmp_path, "dense", "bias_not_summed", "weight_doubled", "raises", "broken")
    code, root = run_junit(gradcheck, str(suite))
    assert code == 2  # a broken spec is a spec error, whatever else failed
    assert root.tag == "testsuites"
    (testsuite,) = root.findall("testsuite")
    for element in (root, testsuite):
        assert element.get("name") == "gradcheck"
        assert element.get("tests") == "5"
        assert element.get("failures") == "2"
        assert element.get("errors") == "2"
        assert element.get("skipped") == "0"
        assert float(element.get("time", "x")) >= 0
    cases = testsuite.findall("testcase")
    assert len(cases) == 5
    assert len(testsuite.findall("testcase/failure")) == 2
    assert len(testsuite.findall("testcase/error")) == 2
    versions = {p.get("name"): p.get("value") for p in testsuite.iter("property")}
    assert versions["gradcheck"] and versions["torch"]


def test_a_testcase_is_named_after_its_spec_and_case(gradcheck, tmp_path):
    suite = write_suite(tmp_path, "dense")
    code, root = run_junit(gradcheck, str(suite), "--seed", "4")
    assert code == 0
    case = cases_by_spec(root)["gradcheck.dense"]
    assert case.get("name") == "dense[batch=6 in=3 out=2 float64 cpu seed=4]"
    assert case.get("file", "").endswith("dense.yaml")
    assert float(case.get("time", "x")) >= 0
    assert list(case) == []  # a passing testcase has no failure child


def test_a_failure_message_names_the_tensor_the_numbers_and_the_diagnosis(gradcheck, tmp_path):
    suite = write_suite(tmp_path, "dense", "bias_not_summed", "weight_doubled")
    _, root = run_junit(gradcheck, str(suite))
    cases = cases_by_spec(root)

    (failure,) = cases["gradcheck.bias_not_summed"].findall("failure")
    assert failure.get("type") == "shape_error"
    message = failure.get("message", "")
    assert message.startswith("b: shape_error, expected [out=2], got [batch=6, out=2] [missing_reduction]")
    assert "grad.sum(0)" in message
    assert "w:" not in message and "x:" not in message  # only the failing tensors

    (failure,) = cases["gradcheck.weight_doubled"].findall("failure")
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
    _, root = run_junit(gradcheck, str(suite))
    cases = cases_by_spec(root)
    (error,) = cases["gradcheck.raises"].findall("error")
    assert error.get("type") == "error"
    assert "ZeroDivisionError: division by zero in my backward" in error.get("message", "")
    assert cases["gradcheck.raises"].findall("failure") == []
    (error,) = cases["gradcheck.broken"].findall("error")
    assert error.get("type") == "spec_error"
    assert "tolerances" in error.get("message", "")


def test_text_that_xml_cannot_hold_still_gives_a_valid_file(gradcheck, tmp_path):
    # The checked code raises with an ANSI colour code and a NUL byte in its message.
    suite = write_suite(tmp_path, "raises_markup")
    ran = gradcheck("run", str(suite), "--format", "junit")
    root = ET.fromstring(ran.stdout)  # raises ParseError on an invalid document
    (error,) = root.iter("error")
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
