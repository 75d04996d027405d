"""The double backward: ``--double`` (or ``double: true``) checks that an
autograd.Function's backward is itself differentiable, and right, as
``torch.autograd.gradgradcheck`` does.

The backward's gradients ``g`` are a function of the tensors and of the upstream
gradient; ``<g, u>`` for a seeded ``u`` is differentiated by each of them and
compared with autograd's double backward of the reference, one row each:
``x (2nd order)``, ``grad_out (2nd order)``.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from gradcheck_cli import load_spec
from gradcheck_cli.errors import SpecError
from gradcheck_cli.reference import double_reference, upstream_gradients
from gradcheck_cli.runner import generate, make_case
from tests.conftest import EXAMPLES

SWISH = EXAMPLES / "functions" / "swish.yaml"


def run_json(gradcheck, spec, *args: str) -> tuple[int, dict]:
    ran = gradcheck("run", str(spec), "--format", "json", *args)
    (result,) = json.loads(ran.stdout)["results"]
    return ran.exit_code, result


def checks_of(result: dict) -> dict[str, dict]:
    return {c["name"]: c for c in result["checks"]}


def swish_copy(tmp_path, *edits: tuple[str, str], spec_edit: tuple[str, str] = ("", "")):
    """examples/functions/swish.* in tmp_path, with each (old, new) edit made to the code."""
    folder = tmp_path / "functions"
    shutil.copytree(EXAMPLES / "functions", folder)
    code, spec = folder / "swish.py", folder / "swish.yaml"
    for old, new in edits:
        assert code.read_text().count(old) == 1, old
        code.write_text(code.read_text().replace(old, new))
    spec.write_text(spec.read_text().replace(*spec_edit))
    return spec


# The sigmoid computed in the forward and saved: right gradients, but a constant to autograd.
SAVED_SIGMOID = (
    (
        "ctx.save_for_backward(x)\n        return x * torch.sigmoid(x)",
        "s = torch.sigmoid(x)\n        ctx.save_for_backward(x, s)\n        return x * s",
    ),
    ("(x,) = ctx.saved_tensors\n        sigmoid_x = torch.sigmoid(x)", "x, sigmoid_x = ctx.saved_tensors"),
)


def test_the_second_order_rows_are_named_and_pass_for_a_differentiable_backward(gradcheck):
    exit_code, result = run_json(gradcheck, SWISH, "--double")
    assert exit_code == 0
    checks = checks_of(result)
    assert list(checks) == ["out", "x", "x (2nd order)", "grad_out (2nd order)"]
    assert checks["x (2nd order)"]["kind"] == "input" and checks["grad_out (2nd order)"]["kind"] == "upstream"
    assert any(
        n.startswith("2nd order: the gradients MemoryEfficientSwish.backward returns")
        for n in result["notes"]
    )


def test_without_double_there_are_no_second_order_rows(gradcheck):
    exit_code, result = run_json(gradcheck, SWISH)
    assert exit_code == 0 and "x (2nd order)" not in checks_of(result)


def test_the_expected_second_order_is_gradgradchecks():
    """d<g, u>/dx for swish is u * grad_out * silu''(x), and d<g, u>/d grad_out is u * silu'(x)."""
    case = make_case(load_spec(SWISH))
    values = generate(case)
    second = double_reference(case, values)
    x = values["x"]
    s = torch.sigmoid(x)
    d1 = s * (1 + x * (1 - s))
    d2 = s * (1 - s) * (2 + x * (1 - 2 * s))
    u = second.grad_outs["x"]  # the seeded weights of the backward's output
    grad_out = upstream_gradients({"out": x}, case.seed)["out"]  # the first-order upstream gradient
    torch.testing.assert_close(second.outputs["x"], grad_out * d1)  # the first order itself
    torch.testing.assert_close(second.grads["x"], u * grad_out * d2)
    torch.testing.assert_close(second.grads["grad_out"], u * d1)


def test_a_saved_intermediate_passes_first_order_and_fails_the_double_backward(gradcheck, tmp_path):
    spec = swish_copy(tmp_path, *SAVED_SIGMOID)
    assert run_json(gradcheck, spec)[0] == 0  # first order: right
    exit_code, result = run_json(gradcheck, spec, "--double")
    assert exit_code == 1
    checks = checks_of(result)
    assert checks["x (2nd order)"]["status"] == "mismatch"
    assert checks["grad_out (2nd order)"]["status"] == "pass"  # still linear in grad_out
    assert "a tensor computed in the forward and saved is a constant to it" in checks["x (2nd order)"]["hint"]


def test_double_true_in_the_spec_checks_the_double_backward_on_every_run(gradcheck, tmp_path):
    spec = swish_copy(tmp_path, spec_edit=("implementation:", "double: true\nimplementation:"))
    exit_code, result = run_json(gradcheck, spec)
    assert exit_code == 0 and "x (2nd order)" in checks_of(result)


def test_a_once_differentiable_backward_is_said_so_and_passes(gradcheck, tmp_path):
    spec = swish_copy(
        tmp_path,
        (
            "    @staticmethod\n    def backward",
            "    @staticmethod\n    @once_differentiable\n    def backward",
        ),
        (
            "from torch.autograd import Function",
            "from torch.autograd.function import Function, once_differentiable",
        ),
    )
    exit_code, result = run_json(gradcheck, spec, "--double")
    assert exit_code == 0
    assert list(checks_of(result)) == ["out", "x"]
    assert (
        "MemoryEfficientSwish.backward is marked @once_differentiable: autograd cannot differentiate it,"
        " so there is no double backward to check (not a failure)"
    ) in result["notes"]


def test_a_backward_autograd_cannot_follow_gives_zeros_and_says_why(gradcheck, tmp_path):
    spec = swish_copy(  # the backward in numpy
        tmp_path,
        ("(x,) = ctx.saved_tensors", "x = ctx.saved_tensors[0].detach().numpy()"),
        ("sigmoid_x = torch.sigmoid(x)", "sigmoid_x = 1 / (1 + np.exp(-x))"),
        ("return grad_output * (", "return grad_output.detach() * torch.from_numpy("),
        ("import torch\n", "import numpy as np\nimport torch\n"),
    )
    assert run_json(gradcheck, spec)[0] == 0
    exit_code, result = run_json(gradcheck, spec, "--double")
    assert exit_code == 1
    for row in ("x (2nd order)", "grad_out (2nd order)"):
        check = checks_of(result)[row]
        assert check["diagnosis"] == "zero"
        assert check["hint"].startswith(
            "the gradients MemoryEfficientSwish.backward returns do not require grad"
        )


def test_double_on_a_spec_that_is_not_a_function_is_a_note_and_double_true_a_spec_error(
    gradcheck, write_layer
):
    exit_code, result = run_json(gradcheck, EXAMPLES / "functional" / "linear.yaml", "--double")
    assert exit_code == 0
    assert result["notes"][-1].startswith(
        "--double: only a torch.autograd.Function's backward is differentiated"
    )
    text = (
        (EXAMPLES / "functional" / "linear.yaml")
        .read_text()
        .replace("implementation:", "double: true\nimplementation:")
    )
    (write_layer(text).parent / "linear.py").write_text((EXAMPLES / "functional" / "linear.py").read_text())
    with pytest.raises(
        SpecError, match="double: a double backward is checked for an autograd_function; this"
    ):
        load_spec(write_layer(text))
    with pytest.raises(SpecError, match="double: expected true or false, got 'yes please'"):
        load_spec(write_layer(text.replace("double: true", "double: yes please")))


def test_several_outputs_get_a_row_per_upstream_gradient(gradcheck):
    exit_code, result = run_json(gradcheck, EXAMPLES / "functions" / "reverse_sort.yaml", "--double")
    assert exit_code == 0
    names = list(checks_of(result))
    assert names[-4:] == [
        "out_vectors (2nd order)",
        "logits (2nd order)",
        "grad_unsorted_vectors (2nd order)",
        "grad_unsorted_logits (2nd order)",
    ]


def test_a_written_surrogate_is_differentiated_as_written(gradcheck, tmp_path):
    """Gradient reversal: -alpha * grad_out has no x in it, and -alpha * u as its grad_out derivative."""
    exit_code, result = run_json(gradcheck, EXAMPLES / "functions" / "gradient_reversal.yaml", "--double")
    assert exit_code == 0
    folder = tmp_path / "functions"
    shutil.copytree(EXAMPLES / "functions", folder)
    code = folder / "gradient_reversal.py"
    code.write_text(
        code.read_text().replace(
            "return -ctx.alpha * grad_output, None", "return -ctx.alpha * grad_output.detach(), None"
        )
    )
    exit_code, result = run_json(gradcheck, folder / "gradient_reversal.yaml", "--double")
    assert exit_code == 1
    checks = checks_of(result)
    assert checks["x"]["status"] == "pass" and checks["grad_out (2nd order)"]["diagnosis"] == "zero"


def test_the_second_order_reads_the_run_s_settings(gradcheck):
    exit_code, result = run_json(gradcheck, SWISH, "--double", "--dtype", "float32", "--seed", "4")
    assert exit_code == 0 and result["dtype"] == "float32"
    assert checks_of(result)["x (2nd order)"]["status"] == "pass"


def test_a_backward_that_raises_when_differentiated_is_a_row_of_its_own(gradcheck, tmp_path):
    spec = swish_copy(
        tmp_path, ("return grad_output * (", "return torch.from_numpy(grad_output.numpy()) * (")
    )
    assert run_json(gradcheck, spec)[0] == 0  # grad_output does not require grad in a first backward
    exit_code, result = run_json(gradcheck, spec, "--double")
    assert exit_code == 1
    row = checks_of(result)["MemoryEfficientSwish.backward (2nd order)"]
    assert (row["kind"], row["status"]) == ("backward", "error")
    assert row["hint"].startswith(
        "backward MemoryEfficientSwish.backward() (create_graph=True) raised RuntimeError:"
    )
    assert "swish.py:" in row["hint"]


def test_the_python_api_takes_double_as_the_cli_does():
    from gradcheck_cli import check
    from tests.conftest import EXAMPLES

    spec = EXAMPLES / "autograd_function" / "linear_function.yaml"
    second = [c.name for c in check(spec, double=True).results[0].checks if "2nd order" in c.name]
    assert second and not [c for c in check(spec).results[0].checks if "2nd order" in c.name]


ARGMAX_FUNCTION = """
import torch


class SwishWithArgmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        y = x * torch.sigmoid(x)
        idx = y.argmax(1)
        ctx.mark_non_differentiable(idx)
        return y, idx

    @staticmethod
    def backward(ctx, grad_y, grad_idx):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad_y * (s * (1 + x * (1 - s)))
"""
ARGMAX_SPEC = """
name: swish_argmax
dims: {batch: 4, features: 5}
inputs:
  x: [batch, features]
outputs: [y, idx]
reference: "(F.silu(x), F.silu(x).argmax(1))"
implementation:
  file: f.py
  autograd_function: SwishWithArgmax
  args: [x]
"""


@pytest.mark.parametrize("right", [True, False], ids=["right", "sigmoid-detached"])
def test_an_integer_output_has_no_second_order_row_and_the_float_ones_are_checked(gradcheck, tmp_path, right):
    """argmax indices beside the output: their upstream gradient is no variable to differentiate by."""
    code = (
        ARGMAX_FUNCTION
        if right
        else ARGMAX_FUNCTION.replace("s = torch.sigmoid(x)", "s = torch.sigmoid(x).detach()")
    )
    (tmp_path / "f.py").write_text(code)
    (tmp_path / "f.yaml").write_text(ARGMAX_SPEC)
    exit_code, result = run_json(gradcheck, tmp_path / "f.yaml", "--double")
    rows = checks_of(result)
    assert list(rows) == ["y", "idx", "x", "x (2nd order)", "grad_y (2nd order)"]
    assert exit_code == (0 if right else 1)
    assert rows["x"]["status"] == "pass" and rows["idx"]["status"] == "pass"
    assert (rows["x (2nd order)"]["status"] == "pass") is right  # a detached sigmoid: d/dx is off
    assert rows["grad_y (2nd order)"]["status"] == "pass"  # and d/d grad_y still right
