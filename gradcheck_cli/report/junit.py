"""The report as JUnit XML, in the shape pytest writes and CI servers read.

One ``<testcase>`` per spec case, its id unique across folders: ``classname``
is the spec file's path as pytest writes a module's (``examples.ci.failing-suite.dense``)
and ``name`` is the spec with its case. What each result status becomes:

- ``fail``: ``<failure>`` typed by the first failing tensor's status; the
  ``message`` names each failing tensor with its numbers and diagnosis on one line,
  the element's text is the plain table the terminal shows.
- ``xpass`` (an ``xfail:`` spec that passed): ``<failure type="xpass">``, strict,
  as pytest's ``xfail_strict``.
- ``error`` (the checked code raised, or the spec cannot run): ``<error>``.
- ``interrupted`` (Ctrl-C or SIGTERM came before the case finished):
  ``<error type="interrupted" message="interrupted">``. pytest writes no
  testcase for an interrupted test; an error keeps the case visible as not run
  to the end instead of silently absent.
- ``skip`` and ``xfail``: ``<skipped message=REASON>``, the reason also as the
  element's text (GitLab shows the text), as pytest writes ``pytest.skip`` and
  ``pytest.xfail``.

The counts: ``failures`` = fail + xpass, ``errors`` = error + interrupted,
``skipped`` = skip + xfail. The document is valid against the junit-10.xsd
schema pytest tests its own output with, except for the two things the readers
people use (Jenkins, GitLab) read and that schema lacks: the ``<error>`` element
(the schema calls it ``<errors>``) and the testcase's ``file`` attribute::

    <testsuites name="gradcheck" tests="2" failures="1" errors="0" time="0.012">
      <testsuite name="gradcheck" tests="2" failures="1" errors="0" skipped="0" time="0.012">
        <testcase classname="specs.dense" name="dense[batch=8 in=5 out=3 float64 cpu seed=0]"
                  file="specs/dense.yaml" time="0.003">
          <failure type="shape_error" message="b: shape_error, expected [out=3], got ...">...</failure>
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import PurePath

from ..result import CaseResult, Check, Report, format_pair
from .status import reason
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
            f"{check.name}: mismatch in {check.mismatched}/{check.compared} elements,"
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
    """The ``message`` attribute: the error, the reason of a skip, or every failing tensor."""
    if result.status == "interrupted":
        why = reason(result)
        return "interrupted" if why in (None, "", "interrupted") else f"interrupted: {why}"
    if result.status in ("skip", "xfail"):
        return reason(result) or result.status
    if result.status == "xpass":
        why = reason(result)
        return "[XPASS(strict)]" + (f" {why}" if why else "") + ": every tensor passed"
    if result.error is not None:
        return result.error
    return "; ".join(check_message(c) for c in result.failing)


def case_name(result: CaseResult) -> str:
    """``dense[batch=8 in=5 out=3 float64 cpu seed=0]``: the spec and its case."""
    dims = " ".join(f"{k}={v}" for k, v in result.dims.items())
    case = " ".join(part for part in (dims, result.dtype, result.device, f"seed={result.seed}") if part)
    return f"{result.spec}[{case}]"


def class_name(result: CaseResult) -> str:
    """The spec file as pytest names a test module: ``examples/ci/dense.yaml`` -> ``examples.ci.dense``.

    Two specs of one name in different folders get different ids (GitLab keeps
    only the first of two testcases with one classname and name). A spec from
    the Python API has no file: ``gradcheck.<spec>``."""
    if not result.source or result.source.startswith("<"):
        return f"gradcheck.{result.spec}"
    path = PurePath(result.source).with_suffix("")
    parts = path.parts[1:] if path.anchor else path.parts
    return ".".join(parts)


def case_text(result: CaseResult) -> str:
    """The plain table of one result, without the run's verdict line."""
    text = render_text(Report(results=[result]))
    return text.rsplit("\n\n", 1)[0]


def _seconds(value: float | None) -> str:
    return f"{value or 0.0:.3f}"


def _outcome(result: CaseResult) -> tuple[str, str] | None:
    """The (element, type) a result that did not pass gets; None for a pass."""
    if result.status == "pass":
        return None
    if result.status in ("skip", "xfail"):
        return "skipped", result.status
    if result.status == "xpass":
        return "failure", "xpass"
    if result.status == "interrupted":
        return "error", "interrupted"
    if result.status == "error" or result.error is not None:
        return "error", "spec_error" if result.spec_error else "error"
    return "failure", result.failing[0].status if result.failing else "fail"


def render_junit(report: Report) -> str:
    """The report as a JUnit XML document (a string, with its XML declaration)."""
    n = report.summary
    durations = [r.duration for r in report.results if r.duration is not None]
    totals = {
        "tests": str(len(report.results)),
        "failures": str(n["failed"] + n["xpassed"]),
        "errors": str(n["errors"] + n["interrupted"]),
    }
    time = _seconds(sum(durations))
    # junit-10.xsd has no `skipped` on <testsuites>: it is said on the <testsuite>.
    root = ET.Element("testsuites", {"name": "gradcheck", **totals, "time": time})
    suite = ET.SubElement(
        root,
        "testsuite",
        {"name": "gradcheck", **totals, "skipped": str(n["skipped"] + n["xfailed"]), "time": time},
    )
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", {"name": "gradcheck", "value": report.version})
    ET.SubElement(properties, "property", {"name": "torch", "value": report.torch})
    for result in report.results:
        attrs = {"classname": _xml_text(class_name(result)), "name": _xml_text(case_name(result))}
        attrs["file"] = _xml_text(result.source)  # not in junit-10.xsd; GitLab shows it
        if result.duration is not None:
            attrs["time"] = _seconds(result.duration)
        testcase = ET.SubElement(suite, "testcase", attrs)
        outcome = _outcome(result)
        if outcome is None:
            continue
        tag, kind = outcome
        child = ET.SubElement(testcase, tag, {"type": kind, "message": _xml_text(result_message(result))})
        if result.status == "skip":
            child.text = _xml_text(result_message(result))
        elif result.status == "xfail":
            child.text = _xml_text(f"{result_message(result)}\n\n{case_text(result)}")
        else:
            child.text = _xml_text(case_text(result))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")
