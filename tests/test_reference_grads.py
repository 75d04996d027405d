"""Expected gradients written directly (``reference_grads``): surrogates such as
straight-through estimators, gradient reversal and LowerBound, whose backward is
deliberately not autograd of their forward.

The examples (examples/functions/, tests/test_examples.py) show them on real
Functions; these tests pin down the rules: what an expression may read, where
each expected value comes from, and what a mistake in the spec is told.
"""

from __future__ import annotations

import json
import re

import pytest

from gradcheck_cli import load_spec
from gradcheck_cli.errors import SpecError

# Sign with a straight-through gradient: the reference's own autograd is zero (or cut).
SIGN_STE = """
name: sign_ste
dims: {n: 6}
inputs:
  x: {shape: [n], min_abs: 0.1}
reference: "torch.where(x > 0, 1.0, -1.0).to(x.dtype)"
reference_grads:
  x: "grad_out"
implementation:
  file: layer.py
  forward: "sign(x) -> out"
  backward: "sign_backward(grad_out) -> x"
"""
SIGN_CODE = """
import torch

def sign(x):
    return torch.where(x > 0, 1.0, -1.0).to(x.dtype)

def sign_backward(grad_out):
    return grad_out.clone()
"""


def run_json(gradcheck, spec, *args: str) -> tuple[int, dict]:
    ran = gradcheck("run", str(spec), "--format", "json", *args)
    (result,) = json.loads(ran.stdout)["results"]
    return ran.exit_code, result


def checks_of(result: dict) -> dict[str, dict]:
    return {c["name"]: c for c in result["checks"]}


def test_a_written_gradient_is_checked_and_the_reference_need_not_be_differentiable(gradcheck, write_layer):
    exit_code, result = run_json(gradcheck, write_layer(SIGN_STE, SIGN_CODE))
    assert exit_code == 0, result
    assert checks_of(result)["x"]["status"] == "pass"
    assert (
        "expected values: out = torch.where(x > 0, 1.0, -1.0).to(x.dtype) (reference);" in result["notes"][0]
    )
    assert "x = grad_out (reference_grads)" in result["notes"][0]


def test_the_backward_autograd_would_give_fails_against_the_written_surrogate(gradcheck, write_layer):
    exit_code, result = run_json(
        gradcheck, write_layer(SIGN_STE, SIGN_CODE.replace("grad_out.clone()", "0 * grad_out"))
    )
    assert exit_code == 1
    x = checks_of(result)["x"]
    assert (x["status"], x["diagnosis"]) == ("mismatch", "zero")


def test_gradients_not_written_come_from_autograd_of_the_reference(gradcheck, write_layer):
    spec = """
    name: scaled_ste
    dims: {n: 5}
    inputs:
      x: [n]
    params:
      s: [n]
    reference: "torch.round(x) * s"
    reference_grads:
      x: "grad_out * s"
    implementation:
      file: layer.py
      backward: "backward(grad_out, x, s) -> x, s"
    """
    code = (
        "import torch\n\ndef backward(grad_out, x, s):\n    return grad_out * s, grad_out * torch.round(x)\n"
    )
    exit_code, result = run_json(gradcheck, write_layer(spec, code))
    assert exit_code == 0, result
    assert result["notes"][0].endswith("x = grad_out * s (reference_grads); s by autograd of the reference")
    # s really is autograd's: the straight-through x gradient does not leak into it
    bad = code.replace("grad_out * torch.round(x)", "grad_out * x")
    exit_code, result = run_json(gradcheck, write_layer(spec, bad))
    assert checks_of(result)["s"]["status"] == "mismatch" and checks_of(result)["x"]["status"] == "pass"


def test_several_outputs_are_read_by_their_upstream_names_and_a_number_fills_the_shape(
    gradcheck, write_layer
):
    spec = """
    name: two_outputs
    dims: {n: 4}
    inputs:
      x: [n]
      y: [n]
    outputs: [a, b]
    reference: "(x.detach() * 2, y + 1)"
    reference_grads:
      x: "grad_a + dout_b_unused"
      y: "0"
    implementation:
      file: layer.py
      backward: "backward(grad_a, grad_b) -> x, y"
    """
    with pytest.raises(SpecError, match=r"reference_grads.x: unknown name 'dout_b_unused'"):
        load_spec(write_layer(spec, ""))
    spec = spec.replace("grad_a + dout_b_unused", "grad_a + 0.5 * db")
    code = """
    import torch

    def backward(grad_a, grad_b):
        return grad_a + 0.5 * grad_b, torch.zeros_like(grad_b)
    """
    exit_code, result = run_json(gradcheck, write_layer(spec, code))
    assert exit_code == 0, result
    assert set(checks_of(result)) == {"x", "y"}


@pytest.mark.parametrize(
    ("grads", "message"),
    [
        ("{w: grad_out}", "reference_grads.w: 'w' is not a checked tensor"),
        ("{t: grad_out}", "reference_grads.t: 't' is a tensor with grad: false"),
        ('{x: "grad_y"}', "reference_grads.x: unknown name 'grad_y' (did you mean 'grad_out'?)"),
        ('{x: "x.__class__"}', "reference_grads.x: attribute '__class__' is not allowed"),
        ("{x: 3}", "reference_grads.x: expected an expression"),
        ("[x]", "reference_grads: expected a mapping"),
    ],
)
def test_a_wrong_reference_grads_is_a_spec_error_at_its_line(write_layer, grads, message):
    spec = f"""
    name: bad
    dims: {{n: 3}}
    inputs:
      x: [n]
      t: {{shape: [n], dtype: int64, low: 0, high: 2}}
    reference: "x * 2"
    reference_grads: {grads}
    implementation:
      file: layer.py
      backward: "backward(grad_out) -> x"
    """
    with pytest.raises(SpecError, match=re.escape(f"layer.yaml:7: {message}")):
        load_spec(write_layer(spec, ""))


def test_a_written_gradient_of_the_wrong_shape_is_a_spec_error_not_a_mismatch(gradcheck, write_layer):
    spec = """
    name: wrong_shape
    dims: {n: 3, m: 2}
    inputs:
      x: [n, m]
    params:
      b: [m]
    reference: "x + b"
    reference_grads:
      b: "grad_out"
    implementation:
      file: layer.py
      backward: "backward(grad_out) -> x, b"
    """
    code = "def backward(grad_out):\n    return grad_out, grad_out.sum(0)\n"
    ran = gradcheck("run", str(write_layer(spec, code)))
    assert ran.exit_code == 2
    assert "reference_grads.b: b's gradient has shape [3, 2], but b has shape [2]" in ran.stdout


def test_written_gradients_read_options_and_cannot_change_the_tensors(gradcheck, write_layer):
    spec = """
    name: reversal
    dims: {n: 4}
    options: {alpha: 0.25}
    inputs:
      x: [n]
    reference: "x * 1"
    reference_grads:
      x: "-alpha * grad_out + 0 * x.mul_(10)"
    implementation:
      file: layer.py
      forward: "forward(x) -> out"
      backward: "backward(grad_out) -> x"
    """
    code = "def forward(x):\n    return x * 1\n\ndef backward(grad_out):\n    return -0.25 * grad_out\n"
    exit_code, result = run_json(gradcheck, write_layer(spec, code))
    assert exit_code == 0, result  # the in-place mul_ hit the expression's own copy of x
