"""Bad code and bad specs get a clear answer, and nothing else is lost.

Each test runs a deliberately broken implementation (or spec) through the
command a user types and asserts what they see: the exit code, the row or the
message that names the problem.
"""

from __future__ import annotations

import json
import pdb
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from tests.conftest import (
    EXAMPLES,
    LIN_FASTAI_SPEC,
    LINEAR_FORWARD,
    LINEAR_SPEC,
    WRONG_DTYPE_BIAS,
    WRONG_DTYPE_IDS,
)

LINEAR, FORWARD = LINEAR_SPEC, LINEAR_FORWARD

RIGHT_BACKWARD = """
def linear_backward(grad_out, x, weight, bias):
    return grad_out @ weight, grad_out.T @ x, grad_out.sum(0)
"""


def run_json(gradcheck, *args: str) -> tuple[int, dict]:
    ran = gradcheck("run", *args, "--format", "json")
    return ran.exit_code, json.loads(ran.stdout)


def checks_of(report: dict) -> dict[str, dict]:
    (result,) = report["results"]
    return {c["name"]: c for c in result["checks"]}


def line_of(path, text: str) -> int:
    """The 1-based line of ``text`` in a file."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


# -- an exception in the user's code --------------------------------------------------

RAISING_BACKWARD = """
def linear_backward(grad_out, x, weight, bias):
    scale = 1 / 0
    return grad_out @ weight, grad_out.T @ x, grad_out.sum(0)
"""


def test_an_exception_is_an_error_result_with_the_users_file_and_line(gradcheck, write_layer):
    spec = write_layer(LINEAR, FORWARD + RAISING_BACKWARD)
    code, report = run_json(gradcheck, str(spec))
    assert code == 1
    (result,) = report["results"]
    assert result["status"] == "error"
    assert "linear_backward() raised ZeroDivisionError: division by zero" in result["error"]
    py = spec.with_suffix(".py")
    assert f"{py}:{line_of(py, '1 / 0')}" in result["error"]


def test_the_run_goes_on_after_a_spec_that_raises(gradcheck, write_layer):
    bad = write_layer(LINEAR, FORWARD + RAISING_BACKWARD, name="bad")
    bad.write_text(
        bad.read_text().replace("file: layer.py", "file: bad.py").replace("name: layer", "name: bad")
    )
    good = write_layer(LINEAR, FORWARD + RIGHT_BACKWARD, name="good")
    good.write_text(
        good.read_text().replace("file: layer.py", "file: good.py").replace("name: layer", "name: good")
    )
    ran = gradcheck("run", str(bad), str(good))
    assert ran.exit_code == 1
    assert "ZeroDivisionError" in ran.stdout
    assert ran.stdout.rstrip().endswith("FAIL: 1 passed, 1 error")


def test_sys_exit_in_the_users_code_is_an_error_not_the_end_of_the_run(gradcheck, write_layer):
    code = FORWARD + "import sys\n\ndef linear_backward(grad_out, x, weight, bias):\n    sys.exit(3)\n"
    spec = write_layer(LINEAR, code)
    ran = gradcheck("run", str(spec), "--format", "json")
    assert ran.exit_code == 1
    (result,) = json.loads(ran.stdout)["results"]
    assert result["status"] == "error" and "raised SystemExit: 3" in result["error"]


def test_pdb_opens_a_post_mortem_at_the_users_frame(gradcheck, write_layer, monkeypatch):
    seen: list[types.TracebackType] = []
    monkeypatch.setattr(pdb.Pdb, "interaction", lambda self, frame, tb: seen.append(tb))
    spec = write_layer(LINEAR, FORWARD + RAISING_BACKWARD)
    ran = gradcheck("run", str(spec), "--pdb")
    assert ran.exit_code == 1
    (tb,) = seen
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_frame.f_code.co_filename == str(spec.with_suffix(".py"))
    assert tb.tb_frame.f_code.co_name == "linear_backward"


def test_without_pdb_no_debugger_opens(gradcheck, write_layer, monkeypatch):
    monkeypatch.setattr(pdb.Pdb, "interaction", lambda *_: pytest.fail("a debugger opened"))
    spec = write_layer(LINEAR, FORWARD + RAISING_BACKWARD)
    assert gradcheck("run", str(spec)).exit_code == 1


def run_under_pdb(spec: Path, typed: str) -> subprocess.CompletedProcess[str]:
    """``gradcheck run SPEC --pdb -f json`` in a process of its own, ``typed`` at the debugger."""
    return subprocess.run(
        [sys.executable, "-m", "gradcheck_cli", "run", str(spec), "--pdb", "-f", "json"],
        input=typed,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_debugger_talks_on_stderr_and_leaves_stdout_to_the_report(write_layer):
    ran = run_under_pdb(write_layer(LINEAR, FORWARD + RAISING_BACKWARD), "p 'inside'\nq\n")
    assert ran.returncode == 1
    assert json.loads(ran.stdout)["results"][0]["status"] == "error"  # no prompt mixed in
    assert "(Pdb) 'inside'" in ran.stderr and "linear_backward" in ran.stderr


def test_os_exit_0_under_pdb_is_an_error_and_a_failing_exit_not_a_silent_green(write_layer):
    """--pdb runs the checked code in gradcheck's own process: its os._exit must not end it."""
    code = FORWARD + "import os\n\ndef linear_backward(grad_out, x, weight, bias):\n    os._exit(0)\n"
    ran = run_under_pdb(write_layer(LINEAR, code), "q\n")
    assert ran.returncode == 1
    (result,) = json.loads(ran.stdout)["results"]
    assert result["status"] == "error"
    assert "linear_backward() called os._exit(0) at " in result["error"]


# -- wrong returns: count, type, None, dtype, device -----------------------------------


@pytest.mark.parametrize(
    "returns, message",
    [
        (
            "grad_out @ weight, grad_out.T @ x",
            "linear_backward() returned 2 values, expected 3 (x, weight, bias)",
        ),
        ("grad_out @ weight", "linear_backward() returned a Tensor, expected 3 values (x, weight, bias)"),
        ("None", "linear_backward() returned None, expected 3 values (x, weight, bias)"),
    ],
    ids=["two-of-three", "one-tensor", "none"],
)
def test_the_wrong_number_of_returns_is_an_error_naming_the_slots(gradcheck, write_layer, returns, message):
    code = FORWARD + f"\ndef linear_backward(grad_out, x, weight, bias):\n    return {returns}\n"
    exit_code, report = run_json(gradcheck, str(write_layer(LINEAR, code)))
    assert exit_code == 1
    (result,) = report["results"]
    assert result["status"] == "error"
    assert message in result["error"]


@pytest.mark.parametrize(
    "bias_grad, status, hint",
    [
        ("None", "missing", "linear_backward() returned None for bias"),
        ("grad_out.sum(0).tolist()", "error", "the gradient for bias is a list, not a tensor"),
        ("'sum'", "error", "the gradient for bias is a str, not a tensor"),
        ("grad_out.sum(0).float()", "error", "the gradient for bias has dtype float32, expected float64"),
        ("grad_out.sum(0).long()", "error", "the gradient for bias has dtype int64, expected a float tensor"),
        (
            "torch.empty(4, dtype=torch.float64, device='meta')",
            "error",
            "the gradient for bias is on device meta, expected cpu",
        ),
    ],
    ids=["none", "list", "str", "float32", "int64", "meta-device"],
)
def test_a_bad_gradient_is_flagged_on_its_own_row(gradcheck, write_layer, bias_grad, status, hint):
    code = FORWARD + (
        "\ndef linear_backward(grad_out, x, weight, bias):\n"
        f"    return grad_out @ weight, grad_out.T @ x, {bias_grad}\n"
    )
    exit_code, report = run_json(gradcheck, str(write_layer(LINEAR, code)))
    assert exit_code == 1
    checks = checks_of(report)
    assert checks["bias"]["status"] == status
    assert hint in checks["bias"]["hint"]
    assert checks["x"]["status"] == checks["weight"]["status"] == "pass"


@pytest.mark.parametrize("bias_grad, status, hint", WRONG_DTYPE_BIAS, ids=WRONG_DTYPE_IDS)
def test_a_complex_or_integer_gradient_of_a_real_tensor_is_a_wrong_dtype(
    gradcheck, write_layer, bias_grad, status, hint
):
    # autograd refuses both for a float64 tensor ("expected dtype Double but got dtype ComplexDouble"):
    # a complex gradient whose imaginary part is 0 must not pass on its real part.
    code = FORWARD + (
        "\ndef linear_backward(grad_out, x, weight, bias):\n"
        f"    return grad_out @ weight, grad_out.T @ x, {bias_grad}\n"
    )
    exit_code, report = run_json(gradcheck, str(write_layer(LINEAR, code)))
    assert exit_code == 1
    bias = checks_of(report)["bias"]
    assert (bias["status"], bias["diagnosis"]) == (status, "wrong_dtype")
    assert hint in bias["hint"]


def test_a_forward_returning_none_is_flagged_on_the_output_row(gradcheck, write_layer):
    code = "def linear_forward(x, weight, bias):\n    x @ weight.T + bias\n" + RIGHT_BACKWARD
    exit_code, report = run_json(gradcheck, str(write_layer(LINEAR, code)))
    assert exit_code == 1
    out = checks_of(report)["out"]
    assert out["status"] == "error" and "the output for out is a NoneType" in out["hint"]


def test_numpy_code_returning_float32_arrays_is_a_dtype_error(gradcheck, write_layer):
    spec = LINEAR.replace("  file: layer.py", "  file: layer.py\n  backend: numpy")
    code = """
import numpy as np

def linear_forward(x, weight, bias):
    return x @ weight.T + bias

def linear_backward(grad_out, x, weight, bias):
    return grad_out @ weight, (grad_out.T @ x).astype(np.float32), grad_out.sum(0)
"""
    exit_code, report = run_json(gradcheck, str(write_layer(spec, code)))
    assert exit_code == 1
    weight = checks_of(report)["weight"]
    assert weight["status"] == "error" and "dtype float32, expected float64" in weight["hint"]


def test_an_autograd_function_returning_a_wrong_shape_names_the_argument(gradcheck, write_layer):
    spec = LINEAR.replace(
        """  forward: "linear_forward(x, weight, bias) -> out"
  backward: "linear_backward(grad_out, x, weight, bias) -> x, weight, bias\"""",
        """  autograd_function: Linear
  args: [x, weight, bias]""",
    )
    code = """
import torch

class Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return x @ weight.T + bias

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        return grad_out @ weight, x.T @ grad_out, grad_out.sum(0)
"""
    exit_code, report = run_json(gradcheck, str(write_layer(spec, code)))
    assert exit_code == 1
    (result,) = report["results"]
    assert "invalid gradient at index 1" in result["error"] and "(index 1 is weight)" in result["error"]


# -- the user's code must not modify what it is handed -------------------------------


def test_zeroing_grad_out_in_place_is_flagged_and_cannot_corrupt_the_comparison(gradcheck, write_layer):
    code = (
        FORWARD
        + """
def linear_backward(grad_out, x, weight, bias):
    grads = grad_out @ weight, grad_out.T @ x, grad_out.sum(0)
    grad_out.zero_()  # "free" the upstream gradient
    return grads
"""
    )
    exit_code, report = run_json(gradcheck, str(write_layer(LINEAR, code)))
    assert exit_code == 1
    checks = checks_of(report)
    assert checks["grad_out"]["diagnosis"] == "modified_input"
    assert checks["grad_out"]["status"] == "error"
    assert "modified grad_out in place" in checks["grad_out"]["hint"]
    # The gradients were right, and nothing the code did changed what they are compared with.
    assert [checks[t]["status"] for t in ("out", "x", "weight", "bias")] == ["pass"] * 4
    assert report["results"][0]["status"] == "fail"


def test_modifying_an_input_in_place_is_flagged_on_that_tensor(gradcheck, write_layer):
    code = (
        FORWARD
        + """
def linear_backward(grad_out, x, weight, bias):
    grads = grad_out @ weight, grad_out.T @ x, grad_out.sum(0)
    x.mul_(0)
    return grads
"""
    )
    exit_code, report = run_json(gradcheck, str(write_layer(LINEAR, code)))
    assert exit_code == 1
    checks = checks_of(report)
    assert checks["x"]["diagnosis"] == "modified_input" and checks["x"]["status"] == "error"
    assert checks["weight"]["status"] == checks["bias"]["status"] == "pass"


NAN_INPUT_SPEC = """
name: layer
dims: {n: 6}
inputs:
  x: [n]
  holes: {shape: [n], grad: false}
  filled: "torch.where(holes > 0, holes, float('nan'))"   # NaN where there is a hole
reference: "x * torch.nan_to_num(filled, nan=0.0)"
implementation:
  file: layer.py
  forward: "f(x, filled) -> out"
  backward: "g(grad_out, filled) -> x"
"""


@pytest.mark.parametrize("change", ["", "filled.mul_(2)"])
def test_an_input_holding_nan_is_modified_only_when_the_code_changes_it(gradcheck, write_layer, change):
    # NaN is not equal to itself: an untouched copy must still compare as the same tensor.
    code = f"""
import torch

def f(x, filled):
    return x * torch.nan_to_num(filled, nan=0.0)

def g(grad_out, filled):
    grad = grad_out * torch.nan_to_num(filled, nan=0.0)
    {change}
    return grad
"""
    exit_code, report = run_json(gradcheck, str(write_layer(NAN_INPUT_SPEC, code)))
    checks = checks_of(report)
    if change:
        assert exit_code == 1 and checks["filled"]["diagnosis"] == "modified_input"
    else:
        assert exit_code == 0 and "filled" not in checks, checks


def test_an_optimizer_step_inside_a_fastai_backward_is_flagged_on_the_param(gradcheck, write_layer):
    spec = LIN_FASTAI_SPEC
    code = """
def lin(x, w, b):
    return x @ w + b

def lin_grad(inp, out, w, b):
    inp.g = out.g @ w.t()
    w.g = inp.t() @ out.g
    b.g = out.g.sum(0)
    w -= 0.1 * w.g  # a step of SGD, in the wrong place
"""
    exit_code, report = run_json(gradcheck, str(write_layer(spec, code)))
    assert exit_code == 1
    checks = checks_of(report)
    assert checks["w"]["diagnosis"] == "modified_input"
    assert checks["x"]["status"] == checks["b"]["status"] == "pass"


def test_numpy_code_adding_into_an_upstream_gradient_is_flagged(gradcheck, tmp_path):
    """cs231n's LSTM step with the classic `dnext_c += ...`: the gradients are right,
    but the caller's dnext_c has changed."""
    shutil.copytree(EXAMPLES / "lstm", tmp_path / "lstm")
    code = tmp_path / "lstm" / "rnn_layers.py"
    right = "    dc = dnext_c + dnext_h * o * (1 - tanh_c**2)"
    in_place = "    dnext_c += dnext_h * o * (1 - tanh_c**2)\n    dc = dnext_c"
    assert right in code.read_text()
    code.write_text(code.read_text().replace(right, in_place))
    exit_code, report = run_json(gradcheck, str(tmp_path / "lstm" / "lstm_step.yaml"))
    assert exit_code == 1
    checks = checks_of(report)
    assert checks["grad_next_c"]["diagnosis"] == "modified_input"
    assert all(c["status"] == "pass" for name, c in checks.items() if name != "grad_next_c")


def test_an_option_dict_the_code_modifies_does_not_leak_into_the_next_case(write_layer):
    """cs231n's batchnorm writes running stats into bn_param: the reference of a
    later case (a sweep, a second check) must still see the spec's options."""
    from gradcheck_cli import check, load_spec

    spec_path = write_layer(
        """
        name: layer
        dims: {n: 4, d: 3}
        options:
          param: {scale: 2.0}
        inputs:
          x: [n, d]
        reference: "x * param['scale']"
        implementation:
          file: layer.py
          forward: "forward(x, param) -> out, cache"
          backward: "backward(dout, cache) -> x"
        """,
        """
        def forward(x, param):
            out = x * param["scale"]
            param["scale"] = 100.0  # bookkeeping in the options, as cs231n's bn_param
            return out, 2.0

        def backward(dout, scale):
            return dout * scale
        """,
    )
    spec = load_spec(spec_path)
    assert check(spec).ok
    assert check(spec, sweep=True).ok
    assert spec.options == {"param": {"scale": 2.0}}


# -- spec errors: exit 2, naming the file, the line and the key ------------------------


def spec_error(gradcheck, spec_path) -> str:
    ran = gradcheck("run", str(spec_path))
    assert ran.exit_code == 2, ran.stdout
    return ran.stderr


def test_an_unknown_key_is_named_with_its_line_and_a_suggestion(gradcheck, write_layer):
    spec = write_layer(LINEAR.replace("  backward:", "  backwards:"), FORWARD + RIGHT_BACKWARD)
    err = spec_error(gradcheck, spec)
    line = line_of(spec, "backwards:")
    assert f"{spec}:{line}: implementation.backwards: unknown key (did you mean 'backward'?)" in err


def test_a_call_naming_an_unknown_tensor_is_named_with_a_suggestion(gradcheck, write_layer):
    spec = write_layer(
        LINEAR.replace(
            "linear_backward(grad_out, x, weight, bias)", "linear_backward(grad_out, x, wieght, bias)"
        ),
        FORWARD + RIGHT_BACKWARD,
    )
    err = spec_error(gradcheck, spec)
    line = line_of(spec, "  backward:")
    assert f"{spec}:{line}: implementation.backward:" in err
    assert "'wieght'" in err and "did you mean 'weight'?" in err


def test_a_file_that_does_not_exist_is_named(gradcheck, write_layer):
    spec = write_layer(LINEAR.replace("file: layer.py", "file: my_layer.py"))
    err = spec_error(gradcheck, spec)
    assert f"{spec}:{line_of(spec, 'file:')}: implementation.file:" in err
    assert "my_layer.py" in err and "does not exist" in err


def test_a_module_that_fails_to_import_is_named_with_its_error(gradcheck, write_layer):
    spec = write_layer(LINEAR, "import torchh\n" + FORWARD + RIGHT_BACKWARD)
    err = spec_error(gradcheck, spec)
    assert f"{spec}:{line_of(spec, 'file:')}: implementation.file: cannot import" in err
    assert "ModuleNotFoundError: No module named 'torchh'" in err
    assert f"{spec.with_suffix('.py')}:1" in err


def test_a_syntax_error_points_at_the_users_line(gradcheck, write_layer):
    spec = write_layer(LINEAR, FORWARD + "\ndef linear_backward(grad_out, x, weight, bias)\n    return x\n")
    err = spec_error(gradcheck, spec)
    py = spec.with_suffix(".py")
    assert "SyntaxError" in err and f"{py}:{line_of(py, 'def linear_backward')}" in err
    assert "frozen" not in err


def test_a_dotted_module_that_does_not_exist_is_a_spec_error(gradcheck, write_layer):
    spec = write_layer(LINEAR.replace("file: layer.py", "module: no_such_package.layers"))
    err = spec_error(gradcheck, spec)
    assert "implementation.module: cannot import no_such_package.layers" in err
    assert "No module named 'no_such_package'" in err


def test_a_function_missing_from_the_file_is_named_with_a_suggestion(gradcheck, write_layer):
    spec = write_layer(
        LINEAR, FORWARD + RIGHT_BACKWARD.replace("def linear_backward", "def linear_backwards")
    )
    err = spec_error(gradcheck, spec)
    assert "implementation.backward: 'linear_backward' is not defined in the implementation" in err
    assert "did you mean 'linear_backwards'?" in err


@pytest.mark.parametrize(
    "reference, problem",
    [
        ("(lambda t: t)(x)", "Lambda is not allowed"),
        ("__import__('math').pi", "unknown name '__import__'"),
        ("x.__class__", "attribute '__class__' is not allowed"),
        ("torch.load('weights.pt')", "attribute 'load' is not allowed"),
        ("F.linear(x, **weight)", "'**' is not allowed"),
        ("{'y': x}['y']", "Dict is not allowed"),
    ],
    ids=["lambda", "__import__", "dunder", "torch.load", "kwargs", "dict"],
)
def test_a_reference_with_a_forbidden_construct_is_a_spec_error(gradcheck, write_layer, reference, problem):
    spec = write_layer(LINEAR.replace('"F.linear(x, weight, bias)"', json.dumps(reference)), FORWARD)
    err = spec_error(gradcheck, spec)
    assert f"{spec}:{line_of(spec, 'reference:')}: reference:" in err
    assert problem in err


@pytest.mark.parametrize(
    "reference, problem",
    [
        ("torch.os.getcwd()", "attribute 'os' is not allowed"),  # seen when the spec is loaded
        ("torch.inspect.getsource(F.linear)", "attribute 'inspect' is not allowed"),  # by name, not by value
    ],
    ids=["os", "inspect"],
)
def test_a_reference_cannot_reach_other_modules_through_torch(gradcheck, write_layer, reference, problem):
    spec = write_layer(LINEAR.replace('"F.linear(x, weight, bias)"', json.dumps(reference)), FORWARD)
    err = spec_error(gradcheck, spec)
    assert f"{spec}:{line_of(spec, 'reference:')}: reference:" in err
    assert problem in err


# -- a hand-written forward that disagrees ------------------------------------------


def test_a_wrong_forward_is_its_own_output_check_reported_before_the_gradients(gradcheck, write_layer):
    code = (
        """
def linear_forward(x, weight, bias):
    return x @ weight.T  # bias forgotten
"""
        + RIGHT_BACKWARD
    )
    spec = write_layer(LINEAR, code)
    exit_code, report = run_json(gradcheck, str(spec))
    assert exit_code == 1
    (result,) = report["results"]
    first = result["checks"][0]
    assert (first["name"], first["kind"], first["status"]) == ("out", "output", "mismatch")
    assert first["diagnosis"] == "forward_mismatch"
    assert [c["kind"] for c in result["checks"][1:]] == ["input", "param", "param"]

    table = gradcheck("run", str(spec)).stdout
    rows = [line.split()[0] for line in table.splitlines() if line.startswith("  ") and len(line.split()) > 6]
    assert rows[:2] == ["tensor", "out"] and rows.index("out") < rows.index("x")
    assert "out: [forward_mismatch]" in table


def test_the_users_code_works_on_copies(write_layer):
    """Whatever the code does to what it is handed, the reference side is untouched:
    checking twice gives the same expected values."""
    from gradcheck_cli import check, load_spec

    code = FORWARD + textwrap.dedent("""
        def linear_backward(grad_out, x, weight, bias):
            grads = grad_out @ weight, grad_out.T @ x, grad_out.sum(0)
            for t in (grad_out, x, weight, bias):
                t.fill_(float("nan"))
            return grads
    """)
    spec = load_spec(write_layer(LINEAR, code))
    first, second = check(spec), check(spec)
    for report in (first, second):
        assert [report[t].status for t in ("x", "weight", "bias")] == ["error"] * 3
        assert report["x"].diagnosis == "modified_input"
        assert report["grad_out"].diagnosis == "modified_input"
        assert report["x"].max_abs_err == 0.0


def test_a_reference_file_that_raises_is_a_spec_error_at_its_line(gradcheck, tmp_path):
    shutil.copytree(EXAMPLES / "lstm", tmp_path / "lstm")
    ref = tmp_path / "lstm" / "ref.py"
    ref.write_text(ref.read_text().replace("a.chunk(4, dim=1)", "a.chunk(3, dim=1)"))
    ran = gradcheck("run", str(tmp_path / "lstm" / "lstm_step.yaml"))
    assert ran.exit_code == 2
    assert "reference: the reference raised ValueError" in ran.stderr
    assert f"at {ref}:{line_of(ref, 'chunk(3')}" in ran.stderr


# -- an integer forward output ----------------------------------------------------------

WITH_INDICES = LINEAR.replace(
    'reference: "F.linear(x, weight, bias)"',
    'outputs: [out, idx]\nreference: "(F.linear(x, weight, bias), F.linear(x, weight, bias).argmax(1))"',
).replace("-> out", "-> out, idx")


@pytest.mark.parametrize(
    "indices, status, diagnosis, hint",
    [
        ("out.argmax(1)", "pass", None, None),
        ("out.argmin(1)", "mismatch", "forward_mismatch", "the hand-written forward's idx differs"),
        (
            "out.argmax(1).float()",
            "error",
            "wrong_dtype",
            "has dtype float32, expected int64; its values match",
        ),
        ("out.argmax(1).int()", "error", "wrong_dtype", "has dtype int32, expected int64; its values match"),
    ],
    ids=["right", "wrong-indices", "float", "int32"],
)
def test_an_integer_output_is_compared_exactly_in_the_references_dtype(
    gradcheck, write_layer, indices, status, diagnosis, hint
):
    # argmax indices beside the float output: no gradient, no rounding; not "expected a float tensor".
    code = (
        "def linear_forward(x, weight, bias):\n"
        f"    out = x @ weight.T + bias\n    return out, {indices}\n" + RIGHT_BACKWARD
    )
    exit_code, report = run_json(gradcheck, str(write_layer(WITH_INDICES, code)))
    assert exit_code == (0 if status == "pass" else 1)
    idx = checks_of(report)["idx"]
    assert (idx["kind"], idx["status"], idx["diagnosis"]) == ("output", status, diagnosis)
    if hint:
        assert hint in idx["hint"]
    assert checks_of(report)["out"]["status"] == "pass"
