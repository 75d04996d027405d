"""The published JSON Schemas (docs/) say what gradcheck reads and writes.

docs/spec.schema.json is what an editor checks a spec against as you type
(docs/editor.md): every spec this repository ships keeps it, and a spec that
gradcheck rejects for its shape (an unknown key, a shape that is not a list)
the schema rejects too. docs/report.schema.json is the JSON report's layout:
real runs keep it.
"""

from __future__ import annotations

import json
import re
import textwrap
from typing import Any

import jsonschema
import pytest
import yaml

from gradcheck_cli.errors import SpecError
from gradcheck_cli.spec import find_spec_files, load_spec

from . import report_cases
from .ci_suites import SPEC, write_suite
from .conftest import EXAMPLES, LAYER_SPECS, REPO

DOCS = REPO / "docs"
SPEC_SCHEMA = json.loads((DOCS / "spec.schema.json").read_text())
REPORT_SCHEMA = json.loads((DOCS / "report.schema.json").read_text())
SPECS = jsonschema.Draft7Validator(SPEC_SCHEMA)
REPORTS = jsonschema.Draft7Validator(REPORT_SCHEMA)

SHIPPED = find_spec_files([LAYER_SPECS, EXAMPLES, REPO / "tests" / "zoo"])


def problems(validator: jsonschema.Draft7Validator, data: Any) -> list[str]:
    """``path: message`` for each error, and for a oneOf/anyOf that failed, the errors of its branches."""

    def leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
        return [error] + [leaf for sub in error.context or [] for leaf in leaves(sub)]

    return [
        f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}"
        for top in validator.iter_errors(data)
        for e in leaves(top)
    ]


def test_the_schemas_are_valid_json_schemas():
    jsonschema.Draft7Validator.check_schema(SPEC_SCHEMA)
    jsonschema.Draft7Validator.check_schema(REPORT_SCHEMA)


def test_every_shipped_spec_keeps_the_spec_schema():
    assert len(SHIPPED) >= 80  # the built-ins, the examples and the zoo
    assert {p.parent.name for p in SHIPPED} >= {"layer_specs", "functional", "cs231n", "lstm", "zoo", "specs"}
    broken = {str(p.relative_to(REPO)): problems(SPECS, yaml.safe_load(p.read_text())) for p in SHIPPED}
    assert {path: found for path, found in broken.items() if found} == {}


# A right spec (the CI suites' dense layer), and one way each to get it wrong.
DENSE = yaml.safe_load(SPEC.format(name="dense"))


def changed(**keys: Any) -> dict[str, Any]:
    spec = json.loads(json.dumps(DENSE))
    for path, value in keys.items():
        *parents, last = path.split("__")
        node = spec
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return spec


WRONG = {
    "an unknown key": (
        changed(tolerances={"atol": 1}),
        "Additional properties are not allowed ('tolerances'",
    ),
    "a shape that is not a list": (
        changed(inputs__x="batch, in"),
        "inputs/x: 'batch, in' is not of type 'array'",
    ),
    "a name that is not a command name": (changed(name="Dense"), "name: 'Dense' does not match"),
    "a dim that is not a positive integer": (
        changed(dims__batch=0),
        "dims/batch: 0 is less than the minimum",
    ),
    "a shape size of 0": (changed(inputs__x=["batch", 0]), "inputs/x/1: 0 is less than the minimum of 1"),
    "a shape size past any tensor": (
        changed(inputs__x=["batch", 10**12]),
        "inputs/x/1: 1000000000000 is greater than the maximum of 2147483648",
    ),
    "a dim past any tensor": (
        changed(dims__batch=10**30),
        "dims/batch: 1000000000000000000000000000000 is greater than the maximum",
    ),
    "a dim named like a module in scope": (changed(dims__torch=2), "dims: 'torch' should not be valid"),
    "both module and file": (
        changed(implementation__module="layers"),
        "is valid under each of {'required': ['file']}",
    ),
    "no implementation at all": (changed(implementation=None), "'implementation' is a required property"),
    "an integer input without its bounds": (
        changed(inputs__y={"shape": ["batch"], "dtype": "int64", "grad": False}),
        "inputs/y: 'low' is a required property",
    ),
    "a negative tolerance": (changed(tolerance={"atol": -1}), "tolerance/atol: -1 is less than the minimum"),
    "an xfail without its reason": (
        changed(xfail={"dtype": ["bfloat16"]}),
        "'reason' is a required property",
    ),
    "an xfail for an unknown dtype": (
        changed(xfail={"reason": "x", "dtype": ["float8"]}),
        "'float8' is not one of",
    ),
    "a skip on an unknown device": (changed(skip={"reason": "x", "device": "tpu"}), "'tpu' does not match"),
    "an unknown backend": (
        changed(implementation__backend="jax"),
        "implementation/backend: 'jax' is not one of",
    ),
}


@pytest.mark.parametrize("case", list(WRONG))
def test_a_wrong_spec_breaks_the_schema_and_gradcheck_rejects_it_too(case, tmp_path):
    spec, message = WRONG[case]
    found = problems(SPECS, spec)
    assert any(message in p for p in found), found
    # The schema is not stricter than gradcheck: gradcheck refuses the same spec.
    (tmp_path / "dense.py").write_text("def backward(grad_out, x, w, b):\n    return x, w, b\n")
    path = tmp_path / "dense.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError):
        load_spec(path)


# Keys gradcheck is growing (issue 14 and its neighbours): the schema already accepts them.
COMING = textwrap.dedent(
    """\
    name: gather_rows
    dims: {n: 6, d: 3}
    inputs:
      x: [n, d]
      perm: {permutation: n, dtype: int64}
      inverse: "perm.argsort()"
      labels: {shape: [n], dtype: int64, low: 0, high: d, grad: false}
    reference: {numerical: {samples: 32}}
    implementation:
      file: rows.ipynb
      cells: [2, 3]
      class: "Rows()"
      forward: "gather(x, perm) -> out"
      set: {training: "True"}
      step: "sgd_step(x)"
      learning_rate: 0.1
    tolerance: {mode: calibrated, ratio: 4}
    constraints: ["n >= d"]
    double: true
    timeout: 30
    xfail: {reason: "bfloat16 rounding", dtype: [bfloat16], device: [cuda]}
    skip: "needs a GPU"
    """
)


def test_the_keys_gradcheck_is_growing_are_accepted():
    assert problems(SPECS, yaml.safe_load(COMING)) == []
    assert problems(SPECS, changed(reference=None)) == []  # reference may be absent (numerical)
    assert problems(SPECS, changed(reference="numerical")) == []
    assert problems(SPECS, changed(reference_grads={"x": "grad_out * 2"})) == []
    assert problems(SPECS, changed(xfail="bias not summed yet")) == []
    assert problems(SPECS, changed(skip={"reason": "needs cuda", "device": "cpu", "dtype": "float64"})) == []
    assert problems(SPECS, changed(tolerance={"mode": "absolute", "atol": 1e-6, "rtol": 1e-5})) == []


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("tolerance", {"mode": "relative"}, "'relative' is not one of"),
        ("timeout", 0, "0 is less than or equal to the minimum"),
        ("reference", {"numerical": {"samples": -1}}, "is not valid under any of the given schemas"),
        ("numerical", {"samples": 32}, "Additional properties are not allowed"),
        (
            "implementation",
            {"file": "dense.py", "cells": [1], "backward": "b(grad_out) -> x"},
            "does not match",
        ),
    ],
)
def test_the_coming_keys_are_checked_too(key, value, message):
    found = problems(SPECS, changed(**{key: value}))
    assert any(message in p for p in found), found


def test_the_example_spec_names_the_schema_for_editors():
    spec = EXAMPLES / "ci" / "specs" / "dense.yaml"
    (comment,) = [line for line in spec.read_text().splitlines() if "yaml-language-server" in line]
    match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", comment)
    assert match, comment
    assert (spec.parent / match.group(1)).resolve() == (DOCS / "spec.schema.json").resolve()
    assert match.group(1) in (DOCS / "editor.md").read_text()


# -- the report ------------------------------------------------------------------------------

# Fields the result model is growing: defined in the schema, not yet required. Once
# Check.to_dict() writes them, move each into the check's "required" list and empty this.
NOT_YET_REQUIRED = {
    "report": set(),
    "result": set(),
    "check": set(),
    "summary": set(),
}
OPTIONAL = {"result": {"sweep"}}  # present only with --sweep


def test_the_report_schema_requires_every_field_but_the_documented_ones():
    parts = {
        "report": REPORT_SCHEMA,
        **{k: REPORT_SCHEMA["definitions"][k] for k in ("result", "check", "summary")},
    }
    for name, part in parts.items():
        not_required = set(part["properties"]) - set(part["required"])
        assert not_required == NOT_YET_REQUIRED[name] | OPTIONAL.get(name, set()), name


def run_json(gradcheck, *args: str) -> dict[str, Any]:
    ran = gradcheck("run", *args, "--format", "json")
    assert ran.exit_code in (0, 1, 2), ran.stderr
    data: dict[str, Any] = json.loads(ran.stdout)
    return data


def test_the_failing_suite_keeps_the_report_schema(gradcheck, monkeypatch):
    monkeypatch.chdir(REPO)
    report = run_json(gradcheck, "examples/ci/failing-suite")
    assert problems(REPORTS, report) == []
    assert [r["status"] for r in report["results"]] == ["fail", "pass"]


def test_every_kind_of_result_keeps_the_report_schema(gradcheck, tmp_path):
    names = ("dense", "bias_not_summed", "weight_doubled", "raises", "raises_markup", "broken")
    report = run_json(gradcheck, str(write_suite(tmp_path, *names)))
    assert problems(REPORTS, report) == []
    assert {r["status"] for r in report["results"]} == {"pass", "fail", "error"}
    built = report_cases.every_status().to_dict()
    assert problems(REPORTS, built) == []


def test_a_sweep_of_builtin_layers_keeps_the_report_schema(gradcheck):
    report = run_json(gradcheck, "--builtin", "-k", "linear or relu", "--sweep")
    assert problems(REPORTS, report) == []
    assert all(r["sweep"] for r in report["results"])


def test_the_report_schema_catches_a_broken_report(gradcheck, tmp_path):
    report = run_json(gradcheck, str(write_suite(tmp_path, "bias_not_summed")))
    result = report["results"][0]
    check = result["checks"][0]
    assert problems(REPORTS, {**report, "results": [{**result, "status": "failed"}]})
    assert problems(REPORTS, {**report, "results": [{**result, "seed": "0"}]})
    assert problems(REPORTS, {**report, "results": [{**result, "dims": {"batch": 6.5}}]})
    assert problems(REPORTS, {**report, "results": [{**result, "status": "error", "error": None}]})
    assert problems(REPORTS, {**report, "results": [{**result, "checks": [{**check, "kind": "weight"}]}]})
    renamed = {("max_abs_error" if k == "max_abs_err" else k): v for k, v in check.items()}
    assert problems(REPORTS, {**report, "results": [{**result, "checks": [renamed]}]})
    assert problems(REPORTS, {**report, "summary": {**report["summary"], "errors": -1}})
    assert problems(REPORTS, {**report, "schema_version": 1})


def test_a_spec_s_xfail_and_skip_keys_keep_the_report_schema(gradcheck, tmp_path):
    report = run_json(gradcheck, str(report_cases.write_expectations(tmp_path)))
    assert problems(REPORTS, report) == []
    reasons = {r["spec"]: (r["status"], r["reason"]) for r in report["results"]}
    assert reasons["not_on_cpu"] == ("skip", "needs cuda")


def test_the_keys_of_issue_17_as_gradcheck_reads_them_keep_the_schema():
    """A notebook reference with cells:, a single constraint, set:/grads:/step: as the loader takes them."""
    spec = changed(
        reference={"file": "ref.ipynb", "cells": [0, 2], "call": "dense(x, w, b)"},
        constraints="batch > 1",
    )
    assert problems(SPECS, spec) == []
    assert problems(SPECS, changed(constraints=["batch > 1", "in != out"])) == []
    wrong = problems(SPECS, changed(reference={"file": "ref.py", "cells": [0], "call": "dense(x, w, b)"}))
    assert any("does not match" in p for p in wrong), wrong


def test_the_functions_second_order_and_not_repeatable_rows_keep_the_report_schema(gradcheck, monkeypatch):
    monkeypatch.chdir(REPO)
    report = run_json(
        gradcheck,
        "examples/functions",
        "examples/mistakes/functions/swish_saved_sigmoid.yaml",
        "examples/mistakes/functions/bias_norm_grad_accumulates.yaml",
        "--double",
    )
    assert problems(REPORTS, report) == []
    kinds = {c["kind"] for r in report["results"] for c in r["checks"]}
    assert {"upstream", "input", "param", "output"} <= kinds
    diagnoses = {c["diagnosis"] for r in report["results"] for c in r["checks"]}
    assert "not_repeatable" in diagnoses


# -- the schema and the loader agree, both ways ------------------------------------------------


def edited(*changes: tuple[str, Any]) -> dict[str, Any]:
    """The dense spec with keys set (``None`` too: a key written with no value) or, for
    ``...``, removed; a key path is ``implementation.set``."""
    spec = json.loads(json.dumps(DENSE))
    for path, value in changes:
        *parents, last = path.split(".")
        node = spec
        for key in parents:
            node = node[key]
        if value is ...:
            del node[last]
        else:
            node[last] = value
    return spec


def loader_error(spec: dict[str, Any], tmp_path) -> str:
    """The one-line error gradcheck gives for this spec ("" if it loads)."""
    (tmp_path / "dense.py").write_text("def backward(grad_out, x, w, b):\n    return x, w, b\n")
    path = tmp_path / "dense.yaml"
    path.write_text(yaml.safe_dump(spec))
    try:
        load_spec(path)
    except SpecError as exc:
        return str(exc)
    return ""


IMPL = "implementation"
BOTH_REJECT = {
    "a ratio of 0": (
        [("tolerance", {"mode": "calibrated", "ratio": 0})],
        "tolerance/ratio: 0 is less than or equal to the minimum of 0",
        "tolerance.ratio: a ratio is a multiple of PyTorch's own error: greater than 0, got 0",
    ),
    "a description that is not text": (
        [("description", 5)],
        "description: 5 is not of type 'string', 'null'",
        "description: expected one line of text, got 5",
    ),
    "an xfail for no dtype at all": (
        [("xfail", {"reason": "r", "dtype": []})],
        "xfail/dtype: [] should be non-empty",
        "xfail.dtype: expected a dtype or a list of at least one, got []",
    ),
    "an xfail dtype with no value": (
        [("xfail", {"reason": "r", "dtype": None})],
        "xfail/dtype: None is not of type 'array'",
        "xfail.dtype: expected a dtype or a list of at least one, got None",
    ),
    "a skip on a device that is not cpu, cuda or cuda:N": (
        [("skip", {"reason": "r", "device": ["cuda:first"]})],
        "skip/device/0: 'cuda:first' does not match",
        "skip.device: unknown device 'cuda:first'; use cpu, cuda or cuda:N",
    ),
    "a derived input that is a bare name": (
        [("inputs.y", "x")],
        "inputs/y: 'x' should not be valid under",
        "inputs.y: a shape is a list like [batch, in], got 'x'",
    ),
    "no backward, step or autograd_function": (
        [(f"{IMPL}.backward", ...)],
        "implementation: 'step' is a required property",
        "implementation: missing 'backward:' (or 'step:', or 'autograd_function:')",
    ),
    "set without a class": (
        [(f"{IMPL}.set", {"training": "True"})],
        "implementation: 'class' is a required property",
        "implementation.set: 'set' puts tensors on the instance that 'class:' builds",
    ),
    "grads without a class": (
        [(f"{IMPL}.grads", {"x": "self.dx"})],
        "implementation: 'class' is a required property",
        "implementation.grads: 'grads' reads attributes of the instance that 'class:' builds",
    ),
    "learning_rate without step": (
        [(f"{IMPL}.learning_rate", 0.1)],
        "implementation: 'step' is a required property",
        "implementation.learning_rate: 'learning_rate' goes with 'step'",
    ),
    "a step without its learning_rate": (
        [
            (f"{IMPL}.backward", ...),
            (f"{IMPL}.step", "sgd(w, b)"),
            ("inputs.x", {"shape": ["batch", "in"], "grad": False}),
        ],
        "implementation: 'learning_rate' is a required property",
        "implementation.step: a step needs 'learning_rate:'",
    ),
    "a step and a backward": (
        [(f"{IMPL}.step", "sgd(w, b)"), (f"{IMPL}.learning_rate", 0.1)],
        "should not be valid under {'anyOf': [{'required': ['backward']}",
        "implementation.step: a step runs the backward and the update itself: drop 'backward:'",
    ),
    "an autograd_function beside a step": (
        [(f"{IMPL}.backward", ...), (f"{IMPL}.autograd_function", "Dense"), (f"{IMPL}.step", "sgd(w, b)")],
        "should not be valid under {'anyOf': [{'required': ['forward']}",
        "implementation.autograd_function: an autograd_function is called through .apply: drop step",
    ),
    "an autograd_function with no value": (
        [(f"{IMPL}.backward", ...), (f"{IMPL}.autograd_function", None)],
        "implementation/autograd_function: None is not of type 'string'",
        "implementation.autograd_function: expected a non-empty string, got None",
    ),
}


@pytest.mark.parametrize("case", list(BOTH_REJECT))
def test_what_the_schema_rejects_gradcheck_rejects_with_a_one_line_error(case, tmp_path):
    changes, schema_says, gradcheck_says = BOTH_REJECT[case]
    spec = edited(*changes)
    found = problems(SPECS, spec)
    assert any(schema_says in p for p in found), found
    assert gradcheck_says in loader_error(spec, tmp_path)


BOTH_ACCEPT = {
    "sections written with no value": [
        (key, None)
        for key in ("description", "options", "outputs", "tolerance", "formulas", "constraints", "timeout")
    ]
    + [(key, None) for key in ("reference_grads", "double", "xfail", "skip")],
    "an empty params section beside a checked input": [
        ("params", None),
        ("reference", "x * 2"),
        (f"{IMPL}.backward", "backward(grad_out, x) -> x"),
    ],
    "set and grads with no value": [(f"{IMPL}.set", None), (f"{IMPL}.grads", None)],
    "a numerical reference with no settings": [
        ("reference", {"numerical": None}),
        (f"{IMPL}.forward", "forward(x, w, b) -> out"),
    ],
    "a derived input read off an earlier one": [("inputs.y", "x.sum(-1)")],
    "a derived input that is not a list of names": [("inputs.y", "-x")],
    "a skip on cuda:1": [("skip", {"reason": "r", "device": ["cpu", "cuda", "cuda:1"]})],
}


@pytest.mark.parametrize("case", list(BOTH_ACCEPT))
def test_what_gradcheck_loads_the_schema_accepts(case, tmp_path):
    spec = edited(*BOTH_ACCEPT[case])
    assert problems(SPECS, spec) == []
    assert loader_error(spec, tmp_path) == ""
