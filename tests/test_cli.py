"""The gradcheck command as a user meets it: table, exit codes, errors, JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import gradcheck_cli

from .conftest import LINEAR_FORWARD as FORWARD
from .conftest import LINEAR_SPEC, REPO


def test_linear_passes_with_a_table_a_headline_and_exit_0(gradcheck):
    ran = gradcheck("linear", "--in", "3", "--out", "4")
    assert ran.exit_code == 0
    lines = ran.stdout.splitlines()
    assert lines[0].startswith("linear [batch=5 in=3 out=4] dtype=float64 device=cpu seed=0")
    for tensor in ("x", "weight", "bias"):
        assert any(line.split()[:1] == [tensor] and line.rstrip().endswith("PASS") for line in lines), tensor
    assert "expected shape" in ran.stdout and "max abs err" in ran.stdout and "mismatched" in ran.stdout
    assert lines[-1] == "PASS: 1 passed"


def test_dims_become_options_with_their_defaults(gradcheck):
    ran = gradcheck("linear", "--help")
    assert ran.exit_code == 0
    for option, default in (("--batch", "5"), ("--in", "3"), ("--out", "4")):
        assert option in ran.stdout
        assert f"[default: {default}]" in ran.stdout
    ran = gradcheck("linear", "--batch", "2", "--in", "7", "--out", "6", "--dtype", "float32", "--seed", "3")
    assert ran.exit_code == 0
    assert ran.stdout.startswith("linear [batch=2 in=7 out=6] dtype=float32 device=cpu seed=3")


def test_a_wrong_backward_exits_1_and_flags_its_row(gradcheck, write_layer):
    spec = write_layer(
        LINEAR_SPEC,
        FORWARD
        + """
def linear_backward(grad_out, x, weight, bias):
    return grad_out @ weight, x.T @ grad_out, grad_out.sum(0)  # weight grad transposed
""",
    )
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 1
    rows = {
        line.split()[0]: line for line in ran.stdout.splitlines() if line.startswith("  ") and line.split()
    }
    assert rows["x"].rstrip().endswith("PASS")
    assert rows["bias"].rstrip().endswith("PASS")
    assert "shape_error" in rows["weight"]
    assert ran.stdout.splitlines()[-1] == "FAIL: 0 passed, 1 failed"


def test_a_wrong_shaped_gradient_is_a_shape_error_with_both_shapes(gradcheck, write_layer):
    spec = write_layer(
        LINEAR_SPEC,
        FORWARD
        + """
def linear_backward(grad_out, x, weight, bias):
    return grad_out @ weight, grad_out.T @ x, grad_out   # bias grad never summed
""",
    )
    ran = gradcheck("run", str(spec), "--format", "json")
    assert ran.exit_code == 1
    check = {c["name"]: c for c in json.loads(ran.stdout)["results"][0]["checks"]}["bias"]
    assert check["status"] == "shape_error"
    assert check["expected_shape"] == [4] and check["actual_shape"] == [5, 4]


def test_an_exception_in_the_checked_code_exits_1_with_file_and_line(gradcheck, write_layer):
    spec = write_layer(
        LINEAR_SPEC,
        FORWARD
        + "\ndef linear_backward(grad_out, x, weight, bias):\n    return grad_out @ weight.T, None, None\n",
    )
    ran = gradcheck("run", str(spec), "--format", "json")
    assert ran.exit_code == 1
    result = json.loads(ran.stdout)["results"][0]
    assert result["status"] == "error"
    assert "RuntimeError" in result["error"] and "layer.py:7" in result["error"]


# -- exit 2: usage and spec errors, one line, no traceback -----------------------------


def _one_line_error(ran, fragment):
    assert ran.exit_code == 2, (ran.stdout, ran.stderr)
    err = ran.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("gradcheck: error:")
    assert "Traceback" not in err
    assert fragment in err


def test_unknown_layer_suggests_the_closest(gradcheck):
    _one_line_error(gradcheck("lnear"), "unknown layer 'lnear' (did you mean 'linear'?)")


@pytest.mark.parametrize("value", ["0", "-3", "two", "2.5"])
def test_a_dim_must_be_a_positive_integer(gradcheck, value):
    _one_line_error(gradcheck("linear", "--in", value), f"--in must be a positive integer, got '{value}'")


def test_invalid_yaml_names_file_and_line(gradcheck, write_layer):
    spec = write_layer("name: broken\ndims: {a: 1\ninputs: {}\n")
    _one_line_error(gradcheck("run", str(spec)), f"{spec}:")
    assert "invalid YAML" in gradcheck("run", str(spec)).stdout


def test_unknown_key_is_a_spec_error(gradcheck, write_layer):
    spec = write_layer(LINEAR_SPEC.replace("params:", "parms:"), FORWARD)
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2
    assert f"{spec}:5: parms: unknown key (did you mean 'params'?)" in ran.stdout


def test_a_shape_that_does_not_evaluate_is_a_spec_error(gradcheck, write_layer):
    spec = write_layer(LINEAR_SPEC.replace("x: [batch, in]", "x: [batch / 2, in]"), FORWARD)
    ran = gradcheck("run", str(spec), "--format", "json")
    assert ran.exit_code == 2
    assert "is 2.5, not a whole number" in json.loads(ran.stdout)["results"][0]["error"]


def test_unknown_dtype_and_format_are_usage_errors(gradcheck):
    _one_line_error(gradcheck("linear", "--dtype", "float8"), "unknown dtype 'float8'")
    _one_line_error(gradcheck("linear", "--format", "yaml"), "unknown --format 'yaml'")


def test_cuda_without_a_gpu_is_a_clear_usage_error(gradcheck):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _one_line_error(gradcheck("linear", "--device", "cuda"), "no CUDA device")


# -- JSON ------------------------------------------------------------------------------

CHECK_FIELDS = {
    "name": str,
    "kind": str,
    "expected_shape": list,
    "actual_shape": (list, type(None)),
    "status": str,
    "max_abs_err": (float, type(None)),
    "max_rel_err": (float, type(None)),
    "mismatched": (int, type(None)),
    "numel": (int, type(None)),
    "diagnosis": (str, type(None)),
    "hint": (str, type(None)),
}


def test_json_report_has_the_documented_fields(gradcheck):
    ran = gradcheck("linear", "--format", "json")
    assert ran.exit_code == 0
    data = json.loads(ran.stdout)
    assert data["version"] == gradcheck_cli.__version__
    assert isinstance(data["torch"], str)
    assert data["schema_version"] == 2
    assert data["summary"] == {
        "passed": 1,
        "failed": 0,
        "errors": 0,
        "skipped": 0,
        "xfailed": 0,
        "xpassed": 0,
        "interrupted": 0,
    }
    (result,) = data["results"]
    assert result["spec"] == "linear" and result["source"].endswith("linear.yaml")
    assert result["dims"] == {"batch": 5, "in": 3, "out": 4}
    assert result["reference"] == "F.linear(x, weight, bias)" and result["reason"] is None
    assert isinstance(result["duration_s"], float) and result["duration_s"] > 0
    assert (result["dtype"], result["device"], result["seed"], result["status"], result["error"]) == (
        "float64",
        "cpu",
        0,
        "pass",
        None,
    )
    assert [(c["name"], c["kind"]) for c in result["checks"]] == [
        ("out", "output"),
        ("x", "input"),
        ("weight", "param"),
        ("bias", "param"),
    ]
    for check in result["checks"]:
        for field, kind in CHECK_FIELDS.items():
            assert isinstance(check[field], kind), (field, check[field])
        assert check["status"] == "pass" and check["diagnosis"] is None


# -- the rest of the command line --------------------------------------------------------


def test_list_as_json(gradcheck):
    ran = gradcheck("list", "--format", "json")
    assert ran.exit_code == 0
    layers = {row["name"]: row for row in json.loads(ran.stdout)}
    assert layers["linear"] == {
        "name": "linear",
        "description": "y = x @ weight.T + bias (torch.nn.Linear layout)",
        "dims": {"batch": 5, "in": 3, "out": 4},
    }


def test_show_prints_the_spec(gradcheck):
    ran = gradcheck("show", "lin")
    assert ran.exit_code == 0 and 'reference: "x @ w + b"' in ran.stdout


def test_explain_prints_the_derivation(gradcheck):
    ran = gradcheck("linear", "--explain")
    assert ran.exit_code == 0
    assert "dL/dbias = grad_out.sum(0)" in ran.stdout


def test_version(gradcheck):
    ran = gradcheck("--version")
    assert ran.exit_code == 0 and ran.stdout.strip() == f"gradcheck {gradcheck_cli.__version__}"


def _modules_after(*argv: str) -> set[str]:
    code = (
        "import sys\n"
        f"sys.argv = ['gradcheck', *{list(argv)!r}]\n"
        "from gradcheck_cli.cli import app\n"
        "try:\n    app(prog_name='gradcheck')\nexcept SystemExit:\n    pass\n"
        "print('\\n'.join(sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("argv", [("--help",), ("list",), ("linear", "--help"), ("linear", "--explain")])
def test_help_list_and_explain_do_not_import_torch(argv):
    assert "torch" not in _modules_after(*argv)


def test_shell_completion_knows_the_layers_and_their_dims_without_torch():
    env = {"_GRADCHECK_COMPLETE": "complete_bash", "COMP_WORDS": "gradcheck linear --", "COMP_CWORD": "2"}
    code = (
        "import os, sys\n"
        f"os.environ.update({env!r})\n"
        "sys.argv = ['gradcheck']\n"
        "from gradcheck_cli.cli import app\n"
        "try:\n    app(prog_name='gradcheck')\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "--in" in out.split() and "--out" in out.split()
    assert out.split()[-1] == "NO-TORCH"


def test_python_dash_m_runs_the_cli():
    ran = subprocess.run(
        [sys.executable, "-m", "gradcheck_cli", "lin", "--n", "3"], capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[-1] == "PASS: 1 passed"


def test_spec_options_can_be_overridden(gradcheck):
    ran = gradcheck("conv2d", "--option", "stride=1", "-O", "padding=[0, 1]", "--format", "json")
    assert ran.exit_code == 0
    result = json.loads(ran.stdout)["results"][0]
    assert result["notes"][0] == "options set: stride=1, padding=[0, 1]"
    assert result["checks"][0]["expected_shape"] == [7, 8, 7, 11]  # stride 1 output size
    _one_line_error(
        gradcheck("conv2d", "-O", "strid=1"), "conv2d has no option 'strid' (did you mean 'stride'?)"
    )
    _one_line_error(gradcheck("conv2d", "-O", "stride"), "--option takes NAME=VALUE")


def test_json_stays_strict_when_a_gradient_is_nan(gradcheck):
    ran = gradcheck("run", str(REPO / "tests/zoo/sigmoid_overflow.yaml"), "--format", "json")
    assert ran.exit_code == 1
    assert ": NaN" not in ran.stdout and ": Infinity" not in ran.stdout  # json.loads would accept them
    x = json.loads(ran.stdout)["results"][0]["checks"][1]
    assert x["diagnosis"] == "nonfinite" and x["actual_value"] is None


def test_numpy_code_cannot_be_checked_in_bfloat16(gradcheck):
    ran = gradcheck("run", str(REPO / "tests/zoo/affine_correct.yaml"), "--dtype", "bfloat16")
    assert ran.exit_code == 2
    assert "numpy has no bfloat16" in ran.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--device", "mps"), "unknown device 'mps'; use cpu, cuda or cuda:N"),
        (("--device", "cpu:1"), "unknown device 'cpu:1'"),
        (("--atol", "-1"), "--atol must be a non-negative number, got -1.0"),
        (("--rtol", "nan"), "--rtol must be a non-negative number, got nan"),
    ],
)
def test_bad_device_and_tolerances_are_usage_errors(gradcheck, args, message):
    _one_line_error(gradcheck("linear", *args), message)


def test_broken_configured_specs_give_one_line_errors_not_tracebacks(gradcheck, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.gradcheck]\nspec_paths = ["nope"]\n')
    _one_line_error(gradcheck("list"), "nope: no such file or directory")

    (tmp_path / "specs").mkdir()
    (tmp_path / "pyproject.toml").write_text('[tool.gradcheck]\nspec_paths = ["specs"]\n')
    base = LINEAR_SPEC.replace("name: layer", "name: odd")
    (tmp_path / "specs" / "odd.yaml").write_text(base.replace("batch: 5", "batch: five"))
    _one_line_error(gradcheck("odd"), "dims.batch: must be a positive integer, got 'five'")
    (tmp_path / "specs" / "odd.yaml").write_text(base.replace("batch: 5", "batch: 5, help: 2"))
    _one_line_error(gradcheck("odd"), "'help' clashes with gradcheck's own --help option")


def test_a_python_number_is_not_a_gradient(gradcheck, write_layer):
    spec = write_layer(
        LINEAR_SPEC,
        FORWARD + "\ndef linear_backward(grad_out, x, weight, bias):\n    return 1, 2, 3\n",
    )
    ran = gradcheck("run", str(spec), "--format", "json")
    assert ran.exit_code == 1
    hints = {c["name"]: c["hint"] for c in json.loads(ran.stdout)["results"][0]["checks"]}
    assert hints["x"] == "the gradient for x is a Python int, not a tensor"


def test_color_always_never_and_the_environment(gradcheck, monkeypatch):
    ansi = "\x1b["
    assert ansi not in gradcheck("relu").stdout  # piped, NO_COLOR (the fixture's)
    assert ansi in gradcheck("relu", "--color", "always").stdout  # wins over NO_COLOR
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert ansi in gradcheck("relu").stdout
    assert ansi not in gradcheck("relu", "--color", "never").stdout  # wins over FORCE_COLOR
    _one_line_error(gradcheck("relu", "--color", "sometimes"), "unknown --color 'sometimes'")


def test_quiet_shows_failing_results_in_full_and_one_line_per_pass(gradcheck, tmp_path):
    from .ci_suites import write_suite

    suite = write_suite(tmp_path, "dense", "bias_not_summed")
    full = gradcheck("run", str(suite)).stdout
    quiet = gradcheck("run", str(suite), "-q").stdout
    silent = gradcheck("run", str(suite), "-qq").stdout
    assert "bias_not_summed [batch=6" in quiet and "b: [missing_reduction]" in quiet
    assert len(quiet.splitlines()) < len(full.splitlines())
    assert "dense" in quiet and "dense [batch=6" not in silent
    assert silent.rstrip().endswith("FAIL: 1 passed, 1 failed")


# -- --output never overwrites what the run reads ----------------------------------


def test_output_never_overwrites_a_spec_that_does_not_load_nor_the_code_it_names(gradcheck, tmp_path):
    from .ci_suites import write_spec

    broken = write_spec(tmp_path, "broken")  # loads no further than its unknown key
    (tmp_path / "broken.py").write_text("def backward(grad_out, x, w, b):\n    pass\n")
    dense = write_spec(tmp_path, "dense")
    before = {path: path.read_text() for path in (broken, tmp_path / "broken.py", dense)}
    _one_line_error(gradcheck("run", str(tmp_path), "-o", str(broken)), f"is the spec file {broken}")
    _one_line_error(
        gradcheck("run", str(broken), "-o", str(tmp_path / "broken.py")),
        f"is the implementation file {broken} names",
    )
    # A spec that -k leaves out is still the user's file.
    _one_line_error(gradcheck("run", str(tmp_path), "-k", "broken", "-o", str(dense)), "is the spec file")
    assert {path: path.read_text() for path in before} == before


def test_output_never_overwrites_a_hard_link_to_a_checked_file(gradcheck, tmp_path):
    from .ci_suites import write_spec

    spec = write_spec(tmp_path / "specs", "dense")
    link = tmp_path / "report.json"
    link.hardlink_to(spec.with_suffix(".py"))
    before = link.read_text()
    _one_line_error(gradcheck("run", str(spec), "-f", "json", "-o", str(link)), "is dense's implementation")
    assert link.read_text() == before


# -- every option of `run` and of a layer command, given something hostile ---------------

HOSTILE = [
    (["--timeout", "0"], "--timeout must be a positive number of seconds"),
    (["--timeout", "-1"], "--timeout must be a positive number of seconds"),
    (["--timeout", "nan"], "--timeout must be a positive number of seconds, got nan"),
    (["--timeout", "inf"], "--timeout must be a positive number of seconds, got inf"),
    (["--timeout", "1e10"], "--timeout is 1e+10 seconds: at most 1000000"),
    (["--timeout", "1e308"], "--timeout is 1e+308 seconds: at most 1000000"),
    (["--timeout", "soon"], "Invalid value for '--timeout'"),
    (["--timeout", ""], "Invalid value for '--timeout'"),
    (["--atol", "-1"], "--atol must be a non-negative number"),
    (["--atol", "nan"], "--atol must be a non-negative number, got nan"),
    (["--atol", "1e400"], "--atol must be a non-negative number, got inf"),
    (["--rtol", "-0.5"], "--rtol must be a non-negative number"),
    (["--rtol", "inf"], "--rtol must be a non-negative number, got inf"),
    (["--ratio", "-1"], "--ratio must be a positive number (a multiple of PyTorch's own error), got -1"),
    (["--ratio", "nan"], "--ratio must be a positive number (a multiple of PyTorch's own error), got nan"),
    (["--seed", "-1"], "--seed must be an integer from 0 to 2**63 - 1"),
    (["--seed", str(2**64)], "--seed must be an integer from 0 to 2**63 - 1"),
    (["--seed", "nan"], "Invalid value for '--seed'"),
    (["--seed", ""], "Invalid value for '--seed'"),
    (["--samples", "-1"], "--samples must be a number of elements (0 for all)"),
    (["--samples", "many"], "Invalid value for '--samples'"),
    (["--dtype", ""], "unknown dtype ''"),
    (["--dtype", "float8"], "unknown dtype 'float8'"),
    (["--device", ""], "unknown device ''"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--tolerance", ""], "unknown tolerance mode ''"),
    (["--format", ""], "unknown --format ''"),
    (["--color", ""], "unknown --color ''"),
    (["--output", "{tmp}"], "is a directory; give a file name"),
    (["--output", ""], "is a directory; give a file name"),  # the empty path is the current directory
    (["--output", "{tmp}/nowhere/report.json"], "no directory {tmp}/nowhere"),
    (["--output", "{tmp}/specs/dense.py/report.json"], "no directory {tmp}/specs/dense.py"),
]
RUN_ONLY = [
    (["--jobs", "0"], "Invalid value for '--jobs'"),
    (["--jobs", "-1"], "Invalid value for '--jobs'"),
    (["--jobs", ""], "Invalid value for '--jobs'"),
    (["--bogus"], "No such option: --bogus"),
    (["-k", ""], "-k '' is not a valid expression"),
    (["-k", "("], "-k '(' is not a valid expression"),
    (["-k", "nothing_is_called_this"], "no specs found matching -k"),
    (["{tmp}/nowhere.yaml"], "nowhere.yaml: no such file or directory"),
]
LAYER_ONLY = [
    (["--in", "0"], "--in must be a positive integer, got '0'"),
    (["--in", "-3"], "--in must be a positive integer, got '-3'"),
    (["--in", "nan"], "--in must be a positive integer, got 'nan'"),
    (["--in", ""], "--in must be a positive integer, got ''"),
    (["--in", "1" + "0" * 40], "larger than any tensor can be"),
    (["--bogus"], "No such option: --bogus"),
    (["--option", ""], "--option takes NAME=VALUE, got ''"),
    (["--option", "a=["], "--option a: '[' is not a YAML value"),
]


def _clean_usage_error(ran, fragment):
    """Exit 2, nothing run (no report on stdout), no traceback, and the error on one line."""
    assert ran.exit_code == 2, (ran.stdout, ran.stderr)
    assert ran.stdout == ""
    assert "Traceback" not in ran.stderr
    errors = ran.stderr.splitlines()  # typer's own usage errors too: no "Usage:" block
    assert len(errors) == 1 and errors[0].startswith("gradcheck: error:") and fragment in errors[0], (
        ran.stderr
    )


@pytest.mark.parametrize(
    "args, message", HOSTILE + RUN_ONLY, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_run_refuses_hostile_options_with_one_line_and_exit_2(gradcheck, tmp_path, args, message):
    from .ci_suites import write_spec

    spec = write_spec(tmp_path / "specs", "dense")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    _clean_usage_error(gradcheck("run", str(spec), *args), message.replace("{tmp}", str(tmp_path)))


@pytest.mark.parametrize(
    "args, message", HOSTILE + LAYER_ONLY, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_a_layer_command_refuses_hostile_options_with_one_line_and_exit_2(gradcheck, tmp_path, args, message):
    from .ci_suites import write_spec

    write_spec(tmp_path / "specs", "dense")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    _clean_usage_error(gradcheck("linear", *args), message.replace("{tmp}", str(tmp_path)))


def test_a_timeout_in_tool_gradcheck_past_what_can_be_waited_for_is_a_usage_error(
    gradcheck, tmp_path, monkeypatch
):
    (tmp_path / "pyproject.toml").write_text("[tool.gradcheck]\ntimeout = 1e10\n")
    monkeypatch.chdir(tmp_path)
    _clean_usage_error(gradcheck("linear"), "[tool.gradcheck] timeout is 1e+10 seconds: at most 1000000")


def test_output_never_overwrites_the_config_file_the_run_read(gradcheck, tmp_path, monkeypatch):
    from .ci_suites import write_spec

    spec = write_spec(tmp_path / "specs", "dense")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[project]\nname = 'mine'\n\n[tool.gradcheck]\nseed = 3\n")
    monkeypatch.chdir(tmp_path)
    _one_line_error(
        gradcheck("run", str(spec), "-o", "pyproject.toml"), "is the config file: gradcheck will not"
    )
    _one_line_error(gradcheck("linear", "-f", "json", "-o", str(pyproject)), "is the config file")
    assert pyproject.read_text() == "[project]\nname = 'mine'\n\n[tool.gradcheck]\nseed = 3\n"
