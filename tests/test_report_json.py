"""--format json: the report's fixed contract, checked against its schema.

The schema below is the documented one written as data; ``violations`` walks
a report and names every field that is missing, extra, or of the wrong type.
"""

from __future__ import annotations

import json
from typing import Any

from .ci_suites import write_suite

NUMBER = (int, float)
NONE = type(None)
SHAPE = (list, NONE)  # a list of ints, or null when there is no tensor

REPORT = {"schema_version": int, "version": str, "torch": str, "results": list, "summary": dict}
SUMMARY = {
    "passed": int,
    "failed": int,
    "errors": int,
    "skipped": int,
    "xfailed": int,
    "xpassed": int,
    "interrupted": int,
}
RESULT = {
    "spec": str,
    "source": str,
    "dims": dict,
    "dtype": str,
    "device": str,
    "seed": int,
    "status": str,
    "error": (str, NONE),
    "checks": list,
    "notes": list,
    "reason": (str, NONE),
    "reference": (str, NONE),
    "tolerance": (dict, NONE),
    "duration_s": (*NUMBER, NONE),
}
RESULT_OPTIONAL = {"sweep": list}
CHECK = {
    "name": str,
    "kind": str,
    "expected_shape": SHAPE,
    "actual_shape": SHAPE,
    "status": str,
    "max_abs_err": (*NUMBER, NONE),
    "max_rel_err": (*NUMBER, NONE),
    "mismatched": (int, NONE),
    "numel": (int, NONE),
    "diagnosis": (str, NONE),
    "hint": (str, NONE),
    "worst_index": (list, NONE),
    "expected_value": (*NUMBER, NONE),
    "actual_value": (*NUMBER, NONE),
    "truth_error": (*NUMBER, NONE),
    "reference_error": (*NUMBER, NONE),
    "error_ratio": (*NUMBER, NONE),
    "unstable": (int, NONE),
    "sampled": (dict, NONE),
}
SUMMARY_OF = {
    "passed": "pass",
    "failed": "fail",
    "errors": "error",
    "skipped": "skip",
    "xfailed": "xfail",
    "xpassed": "xpass",
    "interrupted": "interrupted",
}
ENUMS = {
    ("result", "status"): {"pass", "fail", "error", "skip", "xfail", "xpass", "interrupted"},
    ("check", "status"): {"pass", "mismatch", "shape_error", "missing", "error"},
    ("check", "kind"): {"input", "param", "output"},
}


def _fields(
    where: str, data: Any, schema: dict[str, Any], optional: dict[str, Any] | None = None
) -> list[str]:
    """Missing keys, keys the schema does not have, and values of the wrong type."""
    if not isinstance(data, dict):
        return [f"{where}: not an object"]
    optional = optional or {}
    problems = [f"{where}.{key}: missing" for key in schema if key not in data]
    problems += [f"{where}.{key}: not in the schema" for key in data if key not in {**schema, **optional}]
    for key, kind in {**schema, **optional}.items():
        if key in data and (isinstance(data[key], bool) or not isinstance(data[key], kind)):
            problems.append(f"{where}.{key}: {data[key]!r} is not {kind}")
    return problems


def violations(report: Any) -> list[str]:
    """Every way ``report`` breaks the documented schema (empty when it keeps it)."""
    problems = _fields("report", report, REPORT)
    if problems:
        return problems
    problems += _fields("summary", report["summary"], SUMMARY)
    for i, result in enumerate(report["results"]):
        where = f"results[{i}]"
        found = _fields(where, result, RESULT, RESULT_OPTIONAL)
        problems += found
        if found:
            continue
        if result["status"] not in ENUMS["result", "status"]:
            problems.append(f"{where}.status: {result['status']!r}")
        if (result["status"] == "error") != (result["error"] is not None):
            problems.append(f"{where}: status {result['status']!r} with error {result['error']!r}")
        if not all(isinstance(k, str) and type(v) is int for k, v in result["dims"].items()):
            problems.append(f"{where}.dims: {result['dims']!r} is not names to ints")
        if not all(isinstance(n, str) for n in result["notes"]):
            problems.append(f"{where}.notes: not a list of strings")
        for j, check in enumerate(result["checks"]):
            at = f"{where}.checks[{j}]"
            found = _fields(at, check, CHECK)
            problems += found
            if found:
                continue
            for key in ("status", "kind"):
                if check[key] not in ENUMS["check", key]:
                    problems.append(f"{at}.{key}: {check[key]!r}")
            for key in ("expected_shape", "actual_shape", "worst_index"):
                if check[key] is not None and not all(type(n) is int for n in check[key]):
                    problems.append(f"{at}.{key}: {check[key]!r} is not a list of ints")
    statuses = [r.get("status") for r in report["results"]]
    counted = {key: statuses.count(status) for key, status in SUMMARY_OF.items()}
    if report["summary"] != counted:
        problems.append(f"summary: {report['summary']!r} does not count the results ({counted!r})")
    return problems


def test_the_schema_check_itself_catches_a_broken_report():
    empty = dict.fromkeys(SUMMARY, 0)
    good = {"schema_version": 2, "version": "0.1.0", "torch": "2.x", "results": [], "summary": empty}
    assert violations(good) == []
    check = dict.fromkeys(CHECK)
    check.update(name="b", kind="param", status="shape_error", expected_shape=[2], actual_shape=[6, 2])
    result = {
        "spec": "s", "source": "s.yaml", "dims": {"n": 2}, "dtype": "float64", "device": "cpu", "seed": 0,
        "status": "fail", "error": None, "checks": [check], "notes": [], "reason": None,
        "reference": "x @ w", "tolerance": None, "duration_s": 0.01,
    }  # fmt: skip
    report = {**good, "results": [result], "summary": {**empty, "failed": 1}}
    assert violations(report) == []
    assert violations({**report, "summary": {**empty, "passed": 1}})
    assert violations({**report, "results": [{**result, "status": "failed"}]})
    assert violations({**report, "results": [{**result, "seed": "0"}]})
    assert violations({**report, "results": [{**result, "dims": {"n": 2.0}}]})
    assert violations({**report, "results": [{**result, "checks": [{**check, "kind": "weight"}]}]})
    assert violations({**report, "results": [{**result, "checks": [{**check, "numel": True}]}]})
    renamed = {("max_abs_error" if k == "max_abs_err" else k): v for k, v in check.items()}
    assert violations({**report, "results": [{**result, "checks": [renamed]}]})


def test_a_failing_suite_keeps_the_schema_in_every_kind_of_result(gradcheck, tmp_path):
    names = ("dense", "bias_not_summed", "weight_doubled", "raises", "broken")
    ran = gradcheck("run", str(write_suite(tmp_path, *names)), "--format", "json")
    assert ran.exit_code == 2
    report = json.loads(ran.stdout)
    assert violations(report) == []
    statuses = {r["spec"]: r["status"] for r in report["results"]}
    assert statuses == {
        "bias_not_summed": "fail",
        "broken": "error",
        "dense": "pass",
        "raises": "error",
        "weight_doubled": "fail",
    }
    checks = {(r["spec"], c["name"]): c for r in report["results"] for c in r["checks"]}
    b = checks["bias_not_summed", "b"]
    assert (b["status"], b["expected_shape"], b["actual_shape"]) == ("shape_error", [2], [6, 2])
    assert b["diagnosis"] == "missing_reduction"
    w = checks["weight_doubled", "w"]
    assert (w["status"], w["mismatched"], w["numel"]) == ("mismatch", 6, 6)
    assert w["actual_value"] == 2 * w["expected_value"]


def test_every_builtin_layer_and_sweep_keep_the_schema(gradcheck):
    ran = gradcheck("run", "--builtin", "-k", "linear or relu or mse", "--format", "json", "--sweep")
    assert ran.exit_code == 0
    report = json.loads(ran.stdout)
    assert violations(report) == []
    assert {r["spec"] for r in report["results"]} >= {"linear", "relu", "mse"}
    assert all(r["sweep"] for r in report["results"])


def test_output_file_is_json_and_the_terminal_still_shows_the_table(gradcheck, tmp_path):
    suite = write_suite(tmp_path / "specs", "dense", "bias_not_summed")
    out = tmp_path / "report.json"
    ran = gradcheck("run", str(suite), "--format", "json", "--output", str(out))
    assert ran.exit_code == 1
    assert ran.stdout.rstrip().endswith("FAIL: 1 passed, 1 failed") and "{" not in ran.stdout
    assert violations(json.loads(out.read_text())) == []
