"""The report as JUnit XML, in the shape pytest writes and CI servers read.

One ``<testcase>`` per spec case. A result that does not pass gets a
``<failure>`` (a gradient or output mismatch) or an ``<error>`` (the checked
code raised, or the spec could not run). The ``message`` attribute names each
failing tensor with its status, numbers and diagnosis on one line, and the
element's text is the same plain table the terminal shows::

    <testsuites name="gradcheck" tests="2" failures="1" errors="0" skipped="0" time="0.012">
      <testsuite name="gradcheck" tests="2" failures="1" errors="0" skipped="0" time="0.012">
        <testcase classname="gradcheck.dense" name="dense[batch=8 in=5 out=3 float64 cpu seed=0]" ...>
          <failure type="shape_error" message="b: shape_error, expected [out=3], got ...">...</failure>
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ..result import CaseResult, Check, Report, format_pair
from .table import render_text

# Characters XML 1.0 cannot carry at all (most C0 controls, lone surrogates, U+FFFE/U+FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """``text`` with characters XML cannot hold written as ``\\xNN`` (an ANSI escape, a NUL)."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def check_message(check: Check) -> str:
    """One failing tensor on one line: status, the numbers, the diagnosis."""
    expected, got = check.shapes_text()
    if check.status == "mismatch":
        text = (
            f"{check.name}: mismatch in {check.mismatched}/{check.numel} elements,"
            f" max abs err {_num(check.max_abs_err)}, max rel err {_num(check.max_rel_err)}"
        )
        if (
            check.worst_index is not None
            and check.expected_value is not None
            and check.actual_value is not None
        ):
            expected, actual = format_pair(check.expected_value, check.actual_value)
            worst = f"expected {expected}, got {actual}"
            text += f", worst {check.worst_index}: {worst}"
    elif check.status == "shape_error":
        text = f"{check.name}: shape_error, expected {expected}, got {got}"
    else:
        text = f"{check.name}: {check.status}"
    if check.diagnosis:
        text += f" [{check.diagnosis}]"
    if check.hint:
        text += f": {check.hint}"
    return text


def result_message(result: CaseResult) -> str:
    """The ``message`` attribute: the error, or every failing tensor."""
    if result.error is not None:
        return result.error
    return "; ".join(check_message(c) for c in result.failing)


def case_name(result: CaseResult) -> str:
    """``dense[batch=8 in=5 out=3 float64 cpu seed=0]``: the spec and its case."""
    dims = " ".join(f"{k}={v}" for k, v in result.dims.items())
    case = " ".join(part for part in (dims, result.dtype, result.device, f"seed={result.seed}") if part)
    return f"{result.spec}[{case}]"


def case_text(result: CaseResult) -> str:
    """The plain table of one result, without the run's verdict line."""
    text = render_text(Report(results=[result]))
    return text.rsplit("\n\n", 1)[0]


def _seconds(value: float | None) -> str:
    return f"{value or 0.0:.3f}"


def render_junit(report: Report) -> str:
    """The report as a JUnit XML document (a string, with its XML declaration)."""
    summary = report.summary
    durations = [r.duration for r in report.results if r.duration is not None]
    counts = {
        "tests": str(len(report.results)),
        "failures": str(summary["failed"]),
        "errors": str(summary["errors"]),
        "skipped": "0",
        "time": _seconds(sum(durations)),
    }
    root = ET.Element("testsuites", {"name": "gradcheck", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": "gradcheck", **counts})
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", {"name": "gradcheck", "value": report.version})
    ET.SubElement(properties, "property", {"name": "torch", "value": report.torch})
    for result in report.results:
        attrs = {"classname": f"gradcheck.{result.spec}", "name": _xml_text(case_name(result))}
        attrs["file"] = _xml_text(result.source)
        if result.duration is not None:
            attrs["time"] = _seconds(result.duration)
        testcase = ET.SubElement(suite, "testcase", attrs)
        if result.status == "pass":
            continue
        tag = "error" if result.status == "error" else "failure"
        kind = (
            "spec_error" if result.spec_error else (result.failing[0].status if tag == "failure" else "error")
        )
        child = ET.SubElement(testcase, tag, {"type": kind, "message": _xml_text(result_message(result))})
        child.text = _xml_text(case_text(result))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")
