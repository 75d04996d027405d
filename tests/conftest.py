"""Shared helpers: run the CLI in-process, write a spec and its code to a folder."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradcheck_cli.cli import app

REPO = Path(__file__).resolve().parent.parent
LAYER_SPECS = REPO / "layer_specs"
EXAMPLES = REPO / "examples"


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def gradcheck(monkeypatch: pytest.MonkeyPatch):
    """``gradcheck("linear", "--in", "3")`` -> Ran(exit_code, stdout, stderr), in-process.

    Plain output (not a terminal), fixed width, no colour: what a pipe sees.
    """
    monkeypatch.setenv("TERMINAL_WIDTH", "120")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("FORCE_COLOR", raising=False)

    def run(*args: str) -> Ran:
        result = CliRunner().invoke(app, list(args), prog_name="gradcheck")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Ran(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def write_layer(tmp_path: Path):
    """``write_layer(yaml_text, py_text=None, name="layer")`` -> path of the spec file."""

    def write(spec: str, code: str | None = None, name: str = "layer") -> Path:
        spec_path = tmp_path / f"{name}.yaml"
        spec_path.write_text(textwrap.dedent(spec).lstrip())
        if code is not None:
            (tmp_path / f"{name}.py").write_text(textwrap.dedent(code).lstrip())
        return spec_path

    return write


# A torch.nn.Linear-layout layer in layer.py, the spec most tests start from
# (``write_layer(LINEAR_SPEC, LINEAR_FORWARD + backward_code)``).
LINEAR_SPEC = """
name: layer
dims: {batch: 5, in: 3, out: 4}
inputs:
  x: [batch, in]
params:
  weight: [out, in]
  bias: [out]
reference: "F.linear(x, weight, bias)"
implementation:
  file: layer.py
  forward: "linear_forward(x, weight, bias) -> out"
  backward: "linear_backward(grad_out, x, weight, bias) -> x, weight, bias"
"""

LINEAR_FORWARD = """
import torch

def linear_forward(x, weight, bias):
    return x @ weight.T + bias
"""

# The fast.ai lesson's lin in layer.py: gradients on .g (``lin(x, w, b) -> out``, ``lin_grad(x, out, w, b)``).
LIN_FASTAI_SPEC = """
name: layer
dims: {n: 5, in: 3, out: 4}
inputs:
  x: [n, in]
params:
  w: [in, out]
  b: [out]
reference: "x @ w + b"
implementation:
  file: layer.py
  forward: "lin(x, w, b) -> out"
  backward: "lin_grad(x, out, w, b)"
"""


# A linear layer's bias gradient of the wrong dtype (for a float64 bias), as a backward returns it:
# (the expression, the row's status, a part of its hint), in reference and numerical mode alike.
WRONG_DTYPE_BIAS = [
    (
        "torch.complex(grad_out.sum(0), torch.zeros(4, dtype=torch.float64))",
        "error",
        "the gradient for bias has dtype complex128, expected float64; its values match",
    ),
    (
        "torch.complex(grad_out.sum(0) + 1, torch.zeros(4, dtype=torch.float64))",
        "mismatch",
        "the gradient for bias has dtype complex128, expected float64",
    ),
    ("grad_out.sum(0) + 5j", "error", "the gradient for bias is complex with a nonzero imaginary part"),
    ("grad_out.sum(0).long()", "error", "the gradient for bias has dtype int64, expected a float tensor"),
]
WRONG_DTYPE_IDS = ["complex-real-values", "complex-wrong-values", "complex-imaginary", "int64"]
