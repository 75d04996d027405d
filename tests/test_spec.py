"""Loading a spec: one safe read, validated once, every error with file:line and key."""

from __future__ import annotations

import json

import pytest
import yaml

from gradcheck_cli.errors import SpecError
from gradcheck_cli.expressions import evaluate_int, parse
from gradcheck_cli.spec import load_spec

GOOD = """
name: my_lin
dims: {batch: 5, in: 3, out: 4}
inputs:
  x: [batch, in]
  targ: {shape: [batch], dtype: int64, low: 0, high: out, grad: false}
params:
  w: [in, "2 * out"]
reference: "x @ w"
implementation:
  module: gradcheck_cli.layers.linear
  backward: "lin_backward(grad_out, x, w, w) -> x, w"
"""


def test_a_valid_spec_loads_with_its_checked_tensors_and_dims(write_layer):
    spec = load_spec(write_layer(GOOD))
    assert spec.name == "my_lin"
    assert [t.name for t in spec.checked] == ["x", "w"]  # targ has grad: false
    assert spec.shape_of(spec.params["w"], spec.dims) == (3, 8)
    assert spec.implementation.convention == "functional"


def test_dim_names_may_be_python_keywords():
    assert evaluate_int(parse("in * 2 + out", ["in", "out"], arithmetic=True), {"in": 3, "out": 4}) == 10


def test_loading_a_spec_does_not_import_user_code(write_layer):
    path = write_layer(GOOD.replace("module: gradcheck_cli.layers.linear", "file: boom.py"))
    (path.parent / "boom.py").write_text("raise SystemExit('imported!')\n")
    assert load_spec(path).name == "my_lin"


@pytest.mark.parametrize(
    ("edit", "line", "message"),
    [
        (("dims:", "dimz:"), 2, "unknown key (did you mean 'dims'?)"),
        (("[batch, in]", "[batch, inn]"), 4, "unknown dim 'inn' (did you mean 'in'?)"),
        (
            ("lin_backward(grad_out, x, w, w)", "lin_backward(grad_out, xx, w, w)"),
            11,
            "'xx', which is not a known name",
        ),
        (("-> x, w", "-> x, bias"), 11, "return slot 'bias' is not a checked tensor"),
        (('"x @ w"', '"(lambda: x)()"'), 8, "Lambda is not allowed"),
        (('"x @ w"', '"x.__class__"'), 8, "no underscore attributes"),
        (('"x @ w"', '"open(x)"'), 8, "unknown name 'open'"),
        (("batch: 5,", "batch: 0,"), 2, "dims.batch: size batch must be at least 1, got 0"),
        (("module: gradcheck_cli.layers.linear", "file: nowhere.py"), 10, "does not exist"),
        (("name: my_lin", "name: My-Lin"), 1, "must match [a-z][a-z0-9_]*"),
        (("name: my_lin", "name: run"), 1, "is a gradcheck command"),
    ],
)
def test_spec_errors_name_the_file_the_line_and_the_problem(write_layer, edit, line, message):
    path = write_layer(GOOD.replace(*edit))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    text = str(info.value)
    assert text.startswith(f"{path}:{line}:"), text
    assert message in text


def test_invalid_yaml_is_reported_at_its_line(write_layer):
    path = write_layer("name: x\ndims: {a: 1\ninputs: []\n")
    with pytest.raises(SpecError, match=r":\d+: invalid YAML"):
        load_spec(path)


def test_yaml_is_read_safely_no_python_objects(write_layer):
    path = write_layer(GOOD.replace("name: my_lin", "name: !!python/object/apply:os.system ['echo hi']"))
    with pytest.raises(SpecError, match="invalid YAML"):
        load_spec(path)


def test_a_numpy_backward_must_name_its_gradients(write_layer):
    path = write_layer(
        GOOD.replace("module: gradcheck_cli.layers.linear", "module: m\n  backend: numpy").replace(
            "lin_backward(grad_out, x, w, w) -> x, w", "lin_grad(x, w)"
        )
    )
    with pytest.raises(SpecError, match="numpy arrays cannot carry a .g attribute"):
        load_spec(path)


@pytest.mark.parametrize("name", ["F", "torch", "math"])
def test_a_dim_or_option_cannot_hide_a_module_of_the_reference(write_layer, name):
    as_dim = GOOD.replace("dims: {batch: 5,", f"dims: {{{name}: 2, batch: 5,")
    as_option = GOOD.replace("dims: {batch: 5,", f"options: {{{name}: 2}}\ndims: {{batch: 5,")
    for text in (as_dim, as_option):
        path = write_layer(text)
        with pytest.raises(SpecError, match=f"'{name}' is the {name} module in a reference"):
            load_spec(path)


def test_an_unknown_dim_override_names_the_spec_file(write_layer):
    from gradcheck_cli import check

    path = write_layer(GOOD)
    with pytest.raises(SpecError, match=rf"^{path}: my_lin has no dim 'bach' \(did you mean 'batch'\?\)"):
        check(path, bach=3)


def test_a_directory_search_finds_specs_even_misspelt_and_skips_venvs_and_other_yaml(tmp_path):
    from gradcheck_cli.spec import find_spec_files

    (tmp_path / "ok.yaml").write_text(GOOD)
    (tmp_path / "typo.yaml").write_text(GOOD.replace("reference:", "refrence:"))  # reported, not skipped
    (tmp_path / "workflow.yml").write_text("name: ci\non: push\njobs: {}\n")  # not a spec
    for hidden in (".venv/lib", ".git", "venv", "build"):
        (tmp_path / hidden).mkdir(parents=True)
        (tmp_path / hidden / "copy.yaml").write_text(GOOD)
    found = find_spec_files([tmp_path, tmp_path / "ok.yaml"])  # each file once
    assert [p.name for p in found] == ["ok.yaml", "typo.yaml"]


def test_a_key_given_twice_is_an_error_not_silently_the_last(write_layer):
    path = write_layer(GOOD.replace("name: my_lin\n", "name: my_lin\nname: other\n"))
    with pytest.raises(SpecError, match=r":2: name: 'name' is given twice \(the first at line 1\)"):
        load_spec(path)


def test_a_shape_entry_of_arithmetic_is_labelled_as_written(gradcheck, write_layer):
    spec = load_spec(write_layer(GOOD))
    assert spec.dim_labels(spec.params["w"]) == ["in", "2*out"]
    assert spec.dim_labels(spec.inputs["targ"]) == ["batch"]
    gated = """
    name: gated
    dims: {tokens: 6, h: 4}
    inputs:
      x: [tokens, 2 * h]
    reference: "F.glu(x)"
    implementation:
      file: layer.py
      backward: "glu_backward(grad_out, x) -> x"
    """
    code = "import torch\n\ndef glu_backward(grad_out, x):\n    return torch.cat([grad_out, grad_out], -1)\n"
    ran = gradcheck("run", str(write_layer(gated, code)))
    assert ran.exit_code == 1
    row = next(line for line in ran.stdout.splitlines() if line.split()[:2] == ["x", "input"])
    assert "[tokens=6, 2*h=8]" in row


def one_line_error(ran, fragment: str) -> None:
    """What the user sees for a spec error: exit 2 and one line on stderr, no traceback."""
    assert ran.exit_code == 2, (ran.stdout, ran.stderr)
    err = ran.stderr.strip()
    assert "Traceback" not in err and "Traceback" not in ran.stdout
    assert len(err.splitlines()) == 1, err
    assert err.startswith("gradcheck: error:"), err
    assert fragment in err, err


LINEAR = """
name: layer
dims: {batch: 5, in: 3, out: 4}
inputs:
  x: [batch, in]
params:
  w: [out, in]
reference: "x @ w.T"
implementation:
  file: layer.py
  backward: "lin_backward(grad_out, x, w) -> x, w"
"""
LINEAR_CODE = "def lin_backward(grad_out, x, w):\n    return grad_out @ w, grad_out.T @ x\n"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("batch: 5,", "batch: 0,"), "layer.yaml:2: dims.batch: size batch must be at least 1, got 0"),
        (
            ("x: [batch, in]", "x: [batch, 0]"),
            "layer.yaml:4: inputs.x: a shape size must be at least 1, got 0",
        ),
        (
            ("x: [batch, in]", "x: [batch, in - 3]"),
            "inputs.x: size 'in - 3' must be at least 1, got 0 with batch=5, in=3, out=4",
        ),
        (
            ("x: [batch, in]", "x: [batch, 1000000000000]"),
            "inputs.x: a shape size is 1000000000000: larger than any tensor can be (at most 2**31 elements)",
        ),
        (
            ("x: [batch, in]", "x: [100000, 100000]"),
            "inputs.x: shape [100000, 100000] is 10000000000 elements, more than a tensor may have",
        ),
        (
            ("batch: 5,", f"batch: {10**30},"),
            "dims.batch: size batch is about 2**99: larger than any tensor can be (at most 2**40)",
        ),
        (
            ("x: [batch, in]", f"x: [batch, {10**40}]"),
            "inputs.x: a shape size is about 2**132: larger than any tensor can be",
        ),
    ],
)
def test_a_size_of_zero_or_past_any_tensor_is_a_spec_error(gradcheck, write_layer, edit, message):
    spec = write_layer(LINEAR.replace(*edit), LINEAR_CODE)
    one_line_error(gradcheck("run", str(spec)), message)


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        (
            f"dtype: int64, low: 0, high: {10**40}",
            "inputs.t.high: high is about 2**132: an int64 input's values lie from -9223372036854775808",
        ),
        ("dtype: int32, low: -3000000000, high: 4", "inputs.t.low: low is -3000000000: an int32 input's"),
    ],
)
def test_an_integer_bound_past_its_dtype_is_a_spec_error(gradcheck, write_layer, bounds, message):
    labels = f"\n  t: {{shape: [batch], {bounds}, grad: false}}"
    spec = write_layer(LINEAR.replace("x: [batch, in]", "x: [batch, in]" + labels), LINEAR_CODE)
    one_line_error(gradcheck("run", str(spec)), message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--in", "0"), "--in must be a positive integer, got '0'"),
        (("--batch", "1000000000"), "inputs.x: shape [1000000000, 3] is 3000000000 elements, more than"),
    ],
)
def test_a_size_given_on_the_command_line_is_checked_against_the_shapes(gradcheck, args, message):
    one_line_error(gradcheck("linear", *args), message)


HUGE = 10**400  # an integer YAML reads, and no float holds


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("reference:", f"timeout: {HUGE}\nreference:"),
            "timeout: expected a positive number of seconds, got about",
        ),
        (
            ("reference:", f"tolerance: {{atol: {HUGE}}}\nreference:"),
            "tolerance.atol: expected a non-negative",
        ),
        (("x: [batch, in]", f"x: {{shape: [batch, in], min_abs: {HUGE}}}"), "inputs.x.min_abs: expected a"),
        (
            ("x: [batch, in]", f"x: {{shape: [batch, in], low: 0, high: {HUGE}}}"),
            "inputs.x.high: high is about 2**1328: a bound is a finite number",
        ),
        (
            ("x: [batch, in]", f"x: {{shape: [batch, in], low: 0, high: k}}\noptions: {{k: {HUGE}}}"),
            "inputs.x.high: high is about 2**1328: a bound is a finite number",
        ),
        (("x: [batch, in]", "x: {shape: [batch, in], low: 0, high: .inf}"), "inputs.x.high: high is inf"),
    ],
)
def test_a_number_past_any_float_is_a_spec_error_not_an_overflow(gradcheck, write_layer, edit, message):
    spec = write_layer(LINEAR.replace(*edit), LINEAR_CODE)
    one_line_error(gradcheck("run", str(spec)), message)


def test_a_learning_rate_past_any_float_is_a_spec_error(gradcheck, write_layer):
    step = (
        LINEAR.replace("x: [batch, in]", "x: {shape: [batch, in], grad: false}")
        .replace('"x @ w.T"', '"(x @ w.T).sum()"')
        .replace(
            'backward: "lin_backward(grad_out, x, w) -> x, w"', f'step: "sgd(x, w)"\n  learning_rate: {HUGE}'
        )
    )
    code = "def sgd(x, w):\n    w -= 1e-300 * x.sum(0).expand_as(w)\n"
    spec = write_layer(step, code)
    one_line_error(gradcheck("run", str(spec)), "implementation.learning_rate: expected a finite number")


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        ("utf-32", "layer.yaml: the file is UTF-32, not UTF-8: save it as UTF-8"),  # with a BOM
        ("utf-32-le", "layer.yaml: the file is UTF-32, not UTF-8"),  # no BOM
        ("utf-32-be", "layer.yaml: the file is UTF-32, not UTF-8"),
        ("utf-16", "layer.yaml: the file is UTF-16, not UTF-8 (PowerShell's '>' writes UTF-16)"),
        ("utf-16-le", "layer.yaml: the file is UTF-16, not UTF-8"),
    ],
)
def test_a_spec_in_a_wide_encoding_is_reported_as_that_encoding(gradcheck, tmp_path, encoding, message):
    spec = tmp_path / "layer.yaml"
    spec.write_bytes(LINEAR.lstrip().encode(encoding))
    (tmp_path / "layer.py").write_text(LINEAR_CODE)
    one_line_error(gradcheck("run", str(spec)), message)


@pytest.mark.parametrize("data", [b"\x00\x01binary", bytes(range(256)) * 4, b"PK\x03\x04\x14\x00\x00\x00"])
def test_a_binary_file_named_yaml_is_said_not_text_not_a_wide_encoding(gradcheck, tmp_path, data):
    spec = tmp_path / "layer.yaml"
    spec.write_bytes(data)
    one_line_error(gradcheck("run", str(spec)), "layer.yaml: the file holds NUL bytes, so it is not text")


def _written(style: str, name: str) -> str:
    """The linear spec, named ``name``, written in one of the styles YAML allows."""
    data = yaml.safe_load(LINEAR.replace("name: layer", f"name: {name}"))
    if style == "flow":
        return yaml.safe_dump(data, default_flow_style=True, width=10_000)
    if style == "json":
        return json.dumps(data)
    if style == "quoted keys":
        return "".join(f'"{k}": {json.dumps(v)}\n' for k, v in data.items())
    return yaml.safe_dump(data)


SPEC_FILES = {"flow.yaml": "flow", "json.yml": "json", "quoted.yaml": "quoted keys", "UPPER.YAML": "block"}
SPEC_FILES["Mixed.Yml"] = "block"


def test_a_directory_search_finds_specs_in_flow_style_json_quoted_keys_and_upper_case_suffixes(
    gradcheck, tmp_path
):
    (tmp_path / "layer.py").write_text(LINEAR_CODE)
    for i, (file, style) in enumerate(SPEC_FILES.items()):
        (tmp_path / file).write_text(_written(style, f"layer{i}"))
    (tmp_path / "compose.yaml").write_text('{"services": {"web": {"image": "reference:1"}}}')  # not a spec
    (tmp_path / "ci.YML").write_text("name: ci\non: push\njobs: {implementation: 1}\n")  # nor this
    ran = gradcheck("run", str(tmp_path), "--format", "json")
    assert ran.exit_code == 0, ran.stdout
    found = sorted(r["source"].rsplit("/", 1)[-1] for r in json.loads(ran.stdout)["results"])
    assert found == sorted(SPEC_FILES)


def test_build_and_dist_are_skipped_in_a_search_but_run_when_named(gradcheck, tmp_path):
    (tmp_path / "layer.py").write_text(LINEAR_CODE)
    (tmp_path / "layer.yaml").write_text(LINEAR)
    for folder in ("build", "dist"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "layer.py").write_text(LINEAR_CODE)
        (tmp_path / folder / "copy.yaml").write_text(LINEAR.replace("name: layer", f"name: {folder}_copy"))

    def ran_specs(*paths: str) -> list[str]:
        ran = gradcheck("run", *paths, "--format", "json")
        assert ran.exit_code == 0, ran.stdout
        return sorted(r["spec"] for r in json.loads(ran.stdout)["results"])

    assert ran_specs(str(tmp_path)) == ["layer"]
    assert ran_specs(str(tmp_path / "build")) == ["build_copy"]
    assert ran_specs(str(tmp_path / "dist"), str(tmp_path)) == ["dist_copy", "layer"]
