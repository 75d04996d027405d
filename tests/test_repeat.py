"""An autograd.Function's backward runs a second time on the same graph.

``torch.autograd.gradcheck``, ``backward(retain_graph=True)`` and a double
backward all call a Function's backward more than once per graph: a backward
that changes what it saved, or counts its calls, gives other gradients then.
gradcheck runs it twice and reports ``not_repeatable``. Only the
autograd_function convention does this: the other conventions call plain
functions, which nothing calls twice for one forward.
"""

from __future__ import annotations

import json

import pytest

SPEC = """
name: scale
dims: {n: 4}
inputs:
  x: [n]
params:
  w: [n]
reference: "x * w"
implementation:
  file: layer.py
  autograd_function: Scale
  args: [x, w]
"""

HEADER = """
import torch
from torch.autograd import Function
"""

REPEATABLE = (
    HEADER
    + """
class Scale(Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * w

    @staticmethod
    def backward(ctx, grad_out):
        x, w = ctx.saved_tensors
        return grad_out * w, grad_out * x
"""
)


def run_json(gradcheck, spec, *args: str) -> tuple[int, dict[str, dict]]:
    ran = gradcheck("run", str(spec), "--format", "json", *args)
    (result,) = json.loads(ran.stdout)["results"]
    return ran.exit_code, {c["name"]: c for c in result["checks"]}


def test_a_repeatable_backward_passes(gradcheck, write_layer):
    exit_code, checks = run_json(gradcheck, write_layer(SPEC, REPEATABLE))
    assert exit_code == 0
    assert [c["diagnosis"] for c in checks.values()] == [None, None, None]


def test_a_backward_that_counts_its_calls_is_not_repeatable(gradcheck, write_layer):
    code = REPEATABLE.replace(
        "        return grad_out * w, grad_out * x",
        "        ctx.calls = getattr(ctx, 'calls', 0) + 1  # a warm-up that scales the first call\n"
        "        return grad_out * w, grad_out * x * (1 if ctx.calls == 1 else 0.5)",
    )
    exit_code, checks = run_json(gradcheck, write_layer(SPEC, code))
    assert exit_code == 1
    assert checks["x"]["status"] == "pass"  # the same both times
    w = checks["w"]
    assert (w["status"], w["diagnosis"]) == ("error", "not_repeatable")
    assert w["max_abs_err"] == 0.0  # the first run was right: it is the second that differs
    assert (
        "a second backward on the same graph gives another w gradient (4 of 4 elements differ;" in w["hint"]
    )
    assert "torch.autograd.gradcheck and backward(retain_graph=True) run it again" in w["hint"]


def test_a_saved_tensor_whose_grad_accumulates_is_named(gradcheck, write_layer):
    """icefall's BiasNorm: the backward makes a saved tensor require grad and returns its .grad."""
    code = REPEATABLE.replace(
        "        x, w = ctx.saved_tensors\n        return grad_out * w, grad_out * x",
        "        x, w = ctx.saved_tensors\n"
        "        w.requires_grad = True\n"
        "        with torch.enable_grad():\n"
        "            (x * w).backward(grad_out)\n"
        "        return grad_out * w, w.grad",
    ).replace("ctx.save_for_backward(x, w)", "ctx.save_for_backward(x.detach(), w.detach())")
    exit_code, checks = run_json(gradcheck, write_layer(SPEC, code))
    assert exit_code == 1
    assert checks["w"]["diagnosis"] == "not_repeatable"
    assert "the second is twice the first: a saved tensor's .grad accumulating?" in checks["w"]["hint"]


def test_a_second_backward_that_raises_is_a_row_of_its_own(gradcheck, write_layer):
    code = REPEATABLE.replace(
        "        return grad_out * w, grad_out * x",
        "        return grad_out * w, grad_out * x.mul_(1)  # in place on a saved tensor",
    ).replace("ctx.save_for_backward(x, w)", "ctx.save_for_backward(x.clone(), w)")
    exit_code, checks = run_json(gradcheck, write_layer(SPEC, code))
    assert exit_code == 1
    assert [checks[n]["status"] for n in ("out", "x", "w")] == ["pass"] * 3
    row = checks["Scale.backward"]
    assert (row["kind"], row["status"], row["diagnosis"]) == ("backward", "error", "not_repeatable")
    assert row["hint"].startswith(
        "Scale.backward(), run a second time on the same graph, raised RuntimeError: one of the variables"
        " needed for gradient computation has been modified by an inplace operation"
    )
    assert "anomaly detection" not in row["hint"]
    assert "layer.py:" in row["hint"]


def test_a_wrong_and_unrepeatable_gradient_keeps_what_was_wrong(gradcheck, write_layer):
    code = REPEATABLE.replace(
        "        return grad_out * w, grad_out * x",
        "        ctx.calls = getattr(ctx, 'calls', 0) + 1\n"
        "        return grad_out * w, 2 * grad_out * x * ctx.calls",
    )
    exit_code, checks = run_json(gradcheck, write_layer(SPEC, code))
    w = checks["w"]
    assert (w["status"], w["diagnosis"]) == ("mismatch", "not_repeatable")
    assert "(first run: w gradient is 2 x the expected" in w["hint"]


@pytest.mark.parametrize("convention", ["functional", "fastai"])
def test_other_conventions_call_the_backward_once(gradcheck, write_layer, tmp_path, convention):
    spec = """
    name: scale
    dims: {n: 4}
    inputs:
      x: [n]
    reference: "x * 3"
    implementation:
      file: layer.py
      forward: "forward(x) -> out"
      backward: BACKWARD
    """
    backward = {"functional": '"backward(grad_out) -> x"', "fastai": '"backward(x, out)"'}[convention]
    code = f"""
    def forward(x):
        return x * 3

    def backward(*args):
        with open({str(tmp_path / "calls")!r}, "a") as calls:
            calls.write(".")
        if len(args) == 2:
            args[0].g = 3 * args[1].g
        return 3 * args[0]
    """
    exit_code, checks = run_json(gradcheck, write_layer(spec.replace("BACKWARD", backward), code))
    assert exit_code == 0, checks
    assert (tmp_path / "calls").read_text() == "."
