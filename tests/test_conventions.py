"""Running the user's code in the convention it is written in.

The examples (tests/test_examples.py) show each convention on realistic code;
these tests pin down the rules of each: what the code is handed, where the
gradients are read from, and what a user is told when the code does not
follow the convention.
"""

from __future__ import annotations

import json

import pytest

from gradcheck_cli import check, load_spec
from tests.conftest import EXAMPLES, LIN_FASTAI_SPEC

LIN_FASTAI = LIN_FASTAI_SPEC

LIN = """
def lin(x, w, b):
    return x @ w + b
"""


def run_json(gradcheck, spec, *args: str) -> tuple[int, dict]:
    ran = gradcheck("run", str(spec), "--format", "json", *args)
    return ran.exit_code, json.loads(ran.stdout)


def checks_of(report: dict) -> dict[str, dict]:
    (result,) = report["results"]
    return {c["name"]: c for c in result["checks"]}


# -- fastai: out.g in, tensor.g out ---------------------------------------------------


def test_fastai_sets_out_g_and_reads_each_tensors_g(write_layer):
    seen = {}

    def spy(inp, out, w, b):
        seen["out.g"] = out.g.clone()
        inp.g = out.g @ w.t()
        w.g = inp.t() @ out.g
        b.g = out.g.sum(0)

    report = check(reference=lambda x, w, b: x @ w + b, backward=spy, convention="fastai",
                   shapes={"x": (5, 3), "w": (3, 4), "b": (4,)})  # fmt: skip
    assert report.ok
    assert seen["out.g"].shape == (5, 4) and seen["out.g"].std() > 0  # seeded random, not ones


def test_fastai_a_tensor_left_without_g_is_missing(gradcheck, write_layer):
    code = (
        LIN
        + """
def lin_grad(inp, out, w, b):
    inp.g = out.g @ w.t()
    w.g = inp.t() @ out.g
"""
    )
    exit_code, report = run_json(gradcheck, write_layer(LIN_FASTAI, code))
    assert exit_code == 1
    b = checks_of(report)["b"]
    assert b["status"] == "missing" and b["hint"] == "lin_grad() did not set b.g"


def test_fastai_a_backward_that_returns_its_gradients_is_told_to_name_them(gradcheck, write_layer):
    code = (
        LIN
        + """
def lin_grad(inp, out, w, b):
    return out.g @ w.t(), inp.t() @ out.g, out.g.sum(0)
"""
    )
    exit_code, report = run_json(gradcheck, write_layer(LIN_FASTAI, code))
    assert exit_code == 1
    x = checks_of(report)["x"]
    assert x["status"] == "missing"
    assert "it returned a tuple" in x["hint"] and "'lin_grad(x, out, w, b) -> x, w, b'" in x["hint"]


def test_fastai_the_output_may_be_bound_under_another_name(gradcheck, write_layer):
    spec = LIN_FASTAI.replace("-> out", "-> y").replace("lin_grad(x, out, w, b)", "lin_grad(x, y, w, b)")
    code = (
        LIN
        + """
def lin_grad(inp, out, w, b):
    inp.g = out.g @ w.t()
    w.g = inp.t() @ out.g
    b.g = out.g.sum(0)
"""
    )
    exit_code, _ = run_json(gradcheck, write_layer(spec, code))
    assert exit_code == 0


# -- classes ----------------------------------------------------------------------


CLASS_SPEC = """
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
  class: "Lin(w, b)"
  forward: "__call__(x) -> out"
  backward: "backward()"
"""

LIN_CLASS = """
class Lin:
    def __init__(self, w, b):
        self.w, self.b = w, b

    def __call__(self, inp):
        self.inp = inp
        self.out = inp @ self.w + self.b
        return self.out

    def backward(self):
        self.inp.g = self.out.g @ self.w.t()
        self.w.g = self.inp.t() @ self.out.g
        self.b.g = self.out.g.sum(0)
"""


def test_class_builds_one_instance_and_calls_its_methods(gradcheck, write_layer):
    exit_code, report = run_json(gradcheck, write_layer(CLASS_SPEC, LIN_CLASS))
    assert exit_code == 0
    assert list(checks_of(report)) == ["out", "x", "w", "b"]


def test_class_a_g_backward_without_a_forward_is_a_spec_error(gradcheck, write_layer):
    spec = write_layer(CLASS_SPEC.replace('  forward: "__call__(x) -> out"\n', ""), LIN_CLASS)
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2
    assert (
        "implementation.backward: a backward without '->' reads the upstream gradient from out.g"
        in ran.stderr
    )


def test_class_a_method_that_does_not_exist_is_a_spec_error_with_a_suggestion(gradcheck, write_layer):
    spec = write_layer(CLASS_SPEC.replace('"backward()"', '"bakward()"'), LIN_CLASS)
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2
    assert "implementation.backward: Lin has no method 'bakward' (did you mean 'backward'?)" in ran.stderr


def test_class_an_exception_names_the_class_and_method(gradcheck, write_layer):
    code = LIN_CLASS.replace("self.b.g = self.out.g.sum(0)", "self.b.g = self.out.g.sum(0) / self.count")
    exit_code, report = run_json(gradcheck, write_layer(CLASS_SPEC, code))
    assert exit_code == 1
    assert "Lin.backward() raised AttributeError" in report["results"][0]["error"]


def test_class_a_constructor_that_raises_is_an_error(gradcheck, write_layer):
    code = LIN_CLASS.replace(
        "self.w, self.b = w, b", "self.w, self.b = w, b\n        assert w.shape[0] == 99"
    )
    exit_code, report = run_json(gradcheck, write_layer(CLASS_SPEC, code))
    assert exit_code == 1
    assert "class Lin() raised AssertionError" in report["results"][0]["error"]


# -- functional: the returns are named by the tensor they are the gradient of ----------


FUNCTIONAL = """
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
  backward: "{call}"
"""


@pytest.mark.parametrize(
    "call, body",
    [
        ("backward(grad_out, x, weight) -> x, weight, bias",
         "return grad_out @ weight, grad_out.T @ x, grad_out.sum(0)"),
        ("backward(grad_out, x, weight) -> weight, bias, x",
         "return grad_out.T @ x, grad_out.sum(0), grad_out @ weight"),
        ("backward(grad_out, x, weight) -> _, x, weight, bias",
         "return 'cache', grad_out @ weight, grad_out.T @ x, grad_out.sum(0)"),
        ("backward(dout, x=x, weight=weight) -> x, weight, bias",
         "return grad_out @ weight, grad_out.T @ x, grad_out.sum(0)"),
    ],
    ids=["in-order", "any-order", "discarded-slot", "keywords-and-dout"],
)  # fmt: skip
def test_functional_return_slots_are_matched_by_name(gradcheck, write_layer, call, body):
    code = f"def backward(grad_out, x, weight):\n    {body}\n"
    exit_code, report = run_json(gradcheck, write_layer(FUNCTIONAL.replace("{call}", call), code))
    assert exit_code == 0, report


def test_functional_a_tensor_with_no_return_slot_is_missing(gradcheck, write_layer):
    call = "backward(grad_out, x, weight) -> x, weight"
    code = "def backward(grad_out, x, weight):\n    return grad_out @ weight, grad_out.T @ x\n"
    exit_code, report = run_json(gradcheck, write_layer(FUNCTIONAL.replace("{call}", call), code))
    assert exit_code == 1
    bias = checks_of(report)["bias"]
    assert bias["status"] == "missing" and "no return slot of backward() is named 'bias'" in bias["hint"]


def test_calls_may_pass_literals(gradcheck, write_layer):
    call = (
        "backward(grad_out, x, weight, 2, scale=0.5, mode='sum', check=True, extra=None) -> x, weight, bias"
    )
    code = """
def backward(grad_out, x, weight, two, scale, mode, check, extra):
    assert (two, scale, mode, check, extra) == (2, 0.5, "sum", True, None)
    return grad_out @ weight, grad_out.T @ x, getattr(grad_out, mode)(0) * two * scale
"""
    exit_code, _ = run_json(gradcheck, write_layer(FUNCTIONAL.replace("{call}", call), code))
    assert exit_code == 0


def test_a_dotted_name_reaches_a_function_inside_an_object(gradcheck, write_layer):
    call = "ops.linear.backward(grad_out, x, weight) -> x, weight, bias"
    code = """
from types import SimpleNamespace

def _backward(grad_out, x, weight):
    return grad_out @ weight, grad_out.T @ x, grad_out.sum(0)

ops = SimpleNamespace(linear=SimpleNamespace(backward=_backward))
"""
    spec = write_layer(FUNCTIONAL.replace("{call}", call), code)
    assert run_json(gradcheck, spec)[0] == 0
    spec.write_text(spec.read_text().replace("ops.linear.backward", "ops.linear.bwd"))
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2
    assert "'ops.linear.bwd': SimpleNamespace has no attribute 'bwd'" in ran.stderr


def test_the_file_may_import_its_neighbours(gradcheck, write_layer, tmp_path):
    (tmp_path / "helpers.py").write_text("def sum_rows(t):\n    return t.sum(0)\n")
    call = "backward(grad_out, x, weight) -> x, weight, bias"
    code = """
from helpers import sum_rows

def backward(grad_out, x, weight):
    return grad_out @ weight, grad_out.T @ x, sum_rows(grad_out)
"""
    assert run_json(gradcheck, write_layer(FUNCTIONAL.replace("{call}", call), code))[0] == 0


def test_an_edited_file_is_run_again_not_a_stale_copy(gradcheck, write_layer):
    """Fix the code, run again in the same process (a notebook, a test session): the fix counts."""
    call = "backward(grad_out, x, weight) -> x, weight, bias"
    wrong = (
        "def backward(grad_out, x, weight):\n    return grad_out @ weight, x.T @ grad_out, grad_out.sum(0)\n"
    )
    spec = write_layer(FUNCTIONAL.replace("{call}", call), wrong)
    assert run_json(gradcheck, spec)[0] == 1
    right = (
        "def backward(grad_out, x, weight):\n    return grad_out @ weight, grad_out.T @ x, grad_out.sum(0)\n"
    )
    spec.with_suffix(".py").write_text(right)
    assert run_json(gradcheck, spec)[0] == 0
    assert not (spec.parent / "__pycache__").exists()  # no bytecode left next to the user's file


def test_an_error_inside_numpy_points_at_the_users_line(gradcheck, write_layer):
    spec = FUNCTIONAL.replace("{call}", "backward(grad_out, x, weight) -> x, weight, bias").replace(
        "  file: layer.py", "  file: layer.py\n  backend: numpy"
    )
    code = """
import numpy as np

def backward(grad_out, x, weight):
    dx = np.dot(grad_out, weight.T)
    return dx, grad_out.T.dot(x), grad_out.sum(0)
"""
    path = write_layer(spec, code)
    exit_code, report = run_json(gradcheck, path)
    assert exit_code == 1
    error = report["results"][0]["error"]
    assert "backward() raised ValueError" in error
    py = path.with_suffix(".py")
    line = next(i for i, text in enumerate(py.read_text().splitlines(), 1) if "np.dot" in text)
    assert error.endswith(f"at {py}:{line}")  # the user's line, not numpy's


# -- numpy: numpy arrays in, numpy arrays out --------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numpy_hands_arrays_with_the_same_values_and_dtype(write_layer, dtype):
    import numpy as np
    import torch

    spec = FUNCTIONAL.replace("{call}", "backward(grad_out, x, weight) -> x, weight, bias").replace(
        "  file: layer.py", "  file: layer.py\n  backend: numpy"
    )
    code = """
SEEN = {}

def backward(grad_out, x, weight):
    SEEN.update(grad_out=grad_out, x=x, weight=weight)
    return grad_out @ weight, grad_out.T @ x, grad_out.sum(0)
"""
    loaded = load_spec(write_layer(spec, code))
    report = check(loaded, dtype=dtype)
    assert report.ok, report
    from gradcheck_cli.runner import generate, make_case
    from gradcheck_cli.usercode import load_namespace

    seen = load_namespace(loaded.implementation.source, loaded, "implementation")["SEEN"]
    values = generate(make_case(loaded, dtype=dtype))
    for name in ("x", "weight"):
        assert isinstance(seen[name], np.ndarray) and seen[name].dtype == np.dtype(dtype)
        assert torch.equal(torch.from_numpy(seen[name]), values[name])
    assert isinstance(seen["grad_out"], np.ndarray) and seen["grad_out"].shape == (5, 4)


# -- autograd.Function: called through .apply ---------------------------------------


FUNCTION_SPEC = """
name: layer
dims: {batch: 5, in: 3, out: 4}
options: {scale: 2.0}
inputs:
  x: [batch, in]
params:
  weight: [out, in]
  bias: [out]
reference: "F.linear(x, weight, bias) * scale"
implementation:
  file: layer.py
  autograd_function: ScaledLinear
  args: [weight, x, bias, scale]
"""

SCALED_LINEAR = """
import torch

class ScaledLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight, x, bias, scale):
        ctx.save_for_backward(x, weight)
        ctx.scale = scale
        return (x @ weight.T + bias) * scale

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        g = grad_out * ctx.scale
        return g.T @ x, g @ weight, BIAS(g), None
"""


def test_autograd_function_args_set_the_order_and_may_pass_options(gradcheck, write_layer):
    spec = write_layer(FUNCTION_SPEC, SCALED_LINEAR.replace("BIAS(g)", "g.sum(0)"))
    exit_code, report = run_json(gradcheck, spec)
    assert exit_code == 0, report


def test_autograd_function_a_none_gradient_is_missing(gradcheck, write_layer):
    spec = write_layer(FUNCTION_SPEC, SCALED_LINEAR.replace("BIAS(g)", "None"))
    exit_code, report = run_json(gradcheck, spec)
    assert exit_code == 1
    bias = checks_of(report)["bias"]
    assert bias["status"] == "missing" and "ScaledLinear.backward returned None for bias" in bias["hint"]


RECOMPUTE_SPEC = """
name: recompute
dims: {n: 6}
inputs:
  x: [n]
reference: "F.silu(x) * 0.5"
implementation:
  file: layer.py
  autograd_function: Recompute
  args: [x, F.silu, 0.5, true, null]
"""

RECOMPUTE = """
import torch

class Recompute(torch.autograd.Function):
    \"\"\"A checkpoint: no graph in the forward, fn(x) recomputed under autograd in the backward.\"\"\"

    @staticmethod
    def forward(ctx, x, fn, scale, keep, nothing):
        assert keep is True and nothing is None
        ctx.save_for_backward(x)
        ctx.fn, ctx.scale = fn, scale
        return fn(x) * scale

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            x = x.detach().requires_grad_()
            (grad_x,) = torch.autograd.grad(ctx.fn(x) * ctx.scale, x, grad_out)
        return grad_x, None, None, None, None
"""


def test_autograd_function_args_may_be_callables_and_yaml_literals(gradcheck, write_layer):
    exit_code, report = run_json(gradcheck, write_layer(RECOMPUTE_SPEC, RECOMPUTE))
    assert exit_code == 0, report
    # the callable is the value itself: another one is another function
    exit_code, report = run_json(
        gradcheck, write_layer(RECOMPUTE_SPEC.replace("F.silu,", "F.gelu,"), RECOMPUTE)
    )
    assert exit_code == 1 and checks_of(report)["out"]["diagnosis"] == "forward_mismatch"


def test_a_call_hands_an_allowlisted_callable_as_a_value(gradcheck, write_layer):
    spec = """
    name: act
    dims: {n: 6}
    inputs:
      x: {shape: [n], min_abs: 0.05}
    reference: "F.hardtanh(x)"
    implementation:
      file: layer.py
      forward: "apply_fn(x, fn=F.hardtanh) -> out"
      backward: "hardtanh_backward(grad_out, x) -> x"
    """
    code = """
    def apply_fn(x, fn):
        return fn(x)

    def hardtanh_backward(grad_out, x):
        return grad_out * ((x > -1) & (x < 1))
    """
    exit_code, report = run_json(gradcheck, write_layer(spec, code))
    assert exit_code == 0, report


def test_an_argument_outside_the_allowlist_is_a_spec_error(gradcheck, write_layer):
    spec = write_layer(RECOMPUTE_SPEC.replace("F.silu,", "F.not_a_function,"), RECOMPUTE)
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2
    assert (
        "implementation.args: 'F.not_a_function': attribute 'not_a_function' is not allowed here"
        in ran.stderr
    )


def test_autograd_function_that_is_not_a_function_is_a_spec_error(gradcheck, write_layer):
    spec = write_layer(FUNCTION_SPEC, "def ScaledLinear(*args):\n    pass\n")
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2
    assert "'ScaledLinear' has no .apply: is it a torch.autograd.Function?" in ran.stderr


def test_a_module_next_to_the_spec_imports_however_gradcheck_was_started(gradcheck, tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "mylayer.py").write_text(
        LIN + "\n\ndef lin_grad(inp, out, w, b):\n    inp.g = out.g @ w.t()\n"
        "    w.g = inp.t() @ out.g\n    b.g = out.g.sum(0)\n"
    )
    spec = folder / "modspec.yaml"
    spec.write_text(LIN_FASTAI.replace("file: layer.py", "module: mylayer"))
    monkeypatch.chdir(tmp_path)  # not the spec's folder, and not on sys.path
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 0, ran.stdout


def test_a_module_that_does_not_exist_is_a_spec_error_pointing_nowhere_inside_python(gradcheck, write_layer):
    spec = write_layer(LIN_FASTAI.replace("file: layer.py", "module: no_such_layer_module"))
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2
    assert "cannot import no_such_layer_module: ModuleNotFoundError" in ran.stderr
    assert "importlib" not in ran.stderr


# -- the upstream gradient's name ----------------------------------------------------


RNN_STEP = """
name: rnn_step
dims: {n: 3, d: 4, hd: 5}
inputs: {x: [n, d], prev_h: [n, hd]}
params: {wx: [d, hd], wh: [hd, hd], b: [hd]}
reference: "torch.tanh(x @ wx + prev_h @ wh + b)"
implementation:
  file: layer.py
  backend: numpy
  forward: "step_forward(x, prev_h, wx, wh, b) -> h, cache"
  backward: "step_backward(dh, cache) -> x, prev_h, wx, wh, b"
"""

RNN_STEP_CODE = """
import numpy as np


def step_forward(x, prev_h, wx, wh, b):
    h = np.tanh(x @ wx + prev_h @ wh + b)
    return h, (x, prev_h, wx, wh, h)


def step_backward(dh, cache):
    x, prev_h, wx, wh, h = cache
    da = dh * (1 - h**2)
    return da @ wx.T, da @ wh.T, x.T @ da, prev_h.T @ da, da.sum(0)
"""


def test_an_upstream_gradient_named_after_an_unnamed_output_says_the_two_fixes(gradcheck, write_layer):
    spec = write_layer(RNN_STEP, RNN_STEP_CODE)
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2
    assert ran.stderr.rstrip().endswith(
        "implementation.backward: step_backward() is handed 'dh', which is not a known name; if it is the"
        " upstream gradient, call it 'dout' (or 'grad_out'), or declare 'outputs: [h]' to name it 'dh'"
    )
    assert "did you mean 'h'" not in ran.stderr
    spec.write_text(RNN_STEP.replace("step_backward(dh, cache)", "step_backward(dout, cache)"))
    assert gradcheck("run", str(spec)).exit_code == 0
    spec.write_text(RNN_STEP.replace("inputs:", "outputs: [h]\ninputs:"))
    assert gradcheck("run", str(spec)).exit_code == 0


def test_with_several_outputs_each_upstream_gradient_is_named_after_its_output(write_layer):
    from gradcheck_cli import SpecError

    spec = write_layer(
        RNN_STEP.replace("inputs:", "outputs: [next_h, next_c]\ninputs:")
        .replace('"torch.tanh(x @ wx + prev_h @ wh + b)"', '"(x @ wx, prev_h @ wh)"')
        .replace("-> h, cache", "-> next_h, next_c, cache")
        .replace("step_backward(dh, cache)", "step_backward(dout, cache)"),
        RNN_STEP_CODE,
    )
    with pytest.raises(
        SpecError, match=r"each upstream gradient is named after its output \(dnext_h, dnext_c\)"
    ):
        load_spec(spec)


# -- a loss gradient: the end of the chain ---------------------------------------------


MSE_GRAD_SPEC = """
name: layer
dims: {n: 6}
inputs:
  inp: [n, 1]
  targ: {shape: [n], grad: false}
outputs: [loss]
reference: "F.mse_loss(inp.squeeze(-1), targ)"
implementation:
  file: layer.py
  backward: "mse_grad(inp, targ)"
"""

MSE_GRAD = """
def mse_grad(inp, targ):
    inp.g = 2. * (inp.squeeze() - targ).unsqueeze(-1) / inp.shape[0]
"""


def test_a_loss_gradient_needs_no_forward_and_reads_no_out_g(gradcheck, write_layer):
    exit_code, report = run_json(gradcheck, write_layer(MSE_GRAD_SPEC, MSE_GRAD))
    assert exit_code == 0, report
    assert list(checks_of(report)) == ["inp"]  # no forward: no output row


def test_a_loss_gradient_without_its_mean_is_caught(gradcheck, write_layer):
    exit_code, report = run_json(
        gradcheck, write_layer(MSE_GRAD_SPEC, MSE_GRAD.replace(" / inp.shape[0]", ""))
    )
    assert exit_code == 1
    inp = checks_of(report)["inp"]
    assert inp["diagnosis"] == "scaled" and "1/n" in inp["hint"]


def test_without_a_forward_a_non_scalar_reference_still_needs_one(gradcheck, write_layer):
    spec = MSE_GRAD_SPEC.replace('"F.mse_loss(inp.squeeze(-1), targ)"', '"(inp.squeeze(-1) - targ) ** 2"')
    ran = gradcheck("run", str(write_layer(spec, MSE_GRAD)))
    assert ran.exit_code == 2
    assert "no forward returns the output to set it on" in ran.stderr
    assert "(a loss gradient needs none: its reference returns a scalar)" in ran.stderr


# -- classes that keep their results on attributes (nnfs) --------------------------------


DENSE_SPEC = """
name: layer
dims: {n: 5, n_in: 3, n_out: 4}
inputs:
  x: [n, n_in]
params:
  w: [n_in, n_out]
  b: [1, n_out]
reference: "x @ w + b"
implementation:
  file: layer.py
  backend: numpy
  class: "Layer_Dense(n_in, n_out)"
  set: {weights: w, biases: b}
  forward: "forward(x) -> self.output"
  backward: "backward(dout)"
  grads: {x: self.dinputs, w: self.dweights, b: self.dbiases}
"""

LAYER_DENSE = """
import numpy as np


class Layer_Dense:
    def __init__(self, n_inputs, n_neurons):
        self.weights = 0.01 * np.random.randn(n_inputs, n_neurons)
        self.biases = np.zeros((1, n_neurons))

    def forward(self, inputs):
        self.inputs = inputs
        self.output = np.dot(inputs, self.weights) + self.biases

    def backward(self, dvalues):
        self.dweights = np.dot(self.inputs.T, dvalues)
        self.dbiases = np.sum(dvalues, axis=0, keepdims=True)
        self.dinputs = np.dot(dvalues, self.weights.T)
"""


def test_attributes_set_on_the_instance_and_gradients_read_off_it(gradcheck, write_layer):
    exit_code, report = run_json(gradcheck, write_layer(DENSE_SPEC, LAYER_DENSE))
    assert exit_code == 0, report
    assert list(checks_of(report)) == ["out", "x", "w", "b"]


def test_an_attribute_the_backward_never_set_is_missing_and_named(gradcheck, write_layer):
    code = LAYER_DENSE.replace("self.dbiases = ", "dbiases = ")
    exit_code, report = run_json(gradcheck, write_layer(DENSE_SPEC, code))
    assert exit_code == 1
    b = checks_of(report)["b"]
    assert (b["status"], b["diagnosis"]) == ("missing", "missing")
    assert b["hint"] == "Layer_Dense.backward() did not set self.dbiases"
    assert checks_of(report)["w"]["status"] == "pass"


def test_a_forward_that_never_sets_its_attribute_is_an_error_naming_it(gradcheck, write_layer):
    code = LAYER_DENSE.replace("self.output = ", "output = ")
    exit_code, report = run_json(gradcheck, write_layer(DENSE_SPEC, code))
    assert exit_code == 1
    assert report["results"][0]["error"] == "Layer_Dense.forward() did not set self.output"


def test_a_wrong_attribute_gradient_is_caught_as_any_other(gradcheck, write_layer):
    code = LAYER_DENSE.replace("np.dot(self.inputs.T, dvalues)", "np.dot(dvalues.T, self.inputs)")
    exit_code, report = run_json(gradcheck, write_layer(DENSE_SPEC, code))
    assert exit_code == 1
    w = checks_of(report)["w"]
    assert (w["status"], w["diagnosis"]) == ("shape_error", "transposed")


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("{weights: w, biases: b}", "{weight: w, biases: b}",
         "implementation.set.weight: Layer_Dense() made no attribute 'weight' to set"
         " (did you mean 'weights'?)"),
        ('w: [n_in, n_out]\n  b: [1, n_out]\nreference: "x @ w + b"',
         'w: [n_out, n_in]\n  b: [1, n_out]\nreference: "x @ w.T + b"',
         "implementation.set.weights: Layer_Dense() made weights of shape [3, 4], but w is [4, 3]"),
    ],
    ids=["unknown-attribute", "other-layout"],
)  # fmt: skip
def test_set_checks_what_the_constructor_made(gradcheck, write_layer, old, new, message):
    assert old in DENSE_SPEC
    ran = gradcheck("run", str(write_layer(DENSE_SPEC.replace(old, new), LAYER_DENSE)))
    assert ran.exit_code == 2
    assert message in ran.stderr


LIN_ATTRIBUTES = """
class Lin:
    def __init__(self, w, b):
        self.w, self.b = w, b

    def __call__(self, inp):
        self.inp = inp
        self.out = inp @ self.w + self.b

    def backward(self, grad):
        self.dw = self.inp.t() @ grad
        self.db = grad.sum(0)
        return grad @ self.w.t()
"""


def test_the_class_convention_reads_returns_and_attributes_together(gradcheck, write_layer):
    """A torch class whose backward returns dx and keeps dw, db: '-> x' and grads: for the rest."""
    spec = CLASS_SPEC.replace('"__call__(x) -> out"', '"__call__(x) -> self.out"').replace(
        '  backward: "backward()"', '  backward: "backward(dout) -> x"\n  grads: {w: self.dw, b: self.db}'
    )
    exit_code, report = run_json(gradcheck, write_layer(spec, LIN_ATTRIBUTES))
    assert exit_code == 0, report
    assert list(checks_of(report)) == ["out", "x", "w", "b"]
    wrong = LIN_ATTRIBUTES.replace("self.db = grad.sum(0)", "self.db = grad.mean(0)")
    exit_code, report = run_json(gradcheck, write_layer(spec, wrong))
    assert exit_code == 1 and checks_of(report)["b"]["diagnosis"] == "scaled"


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('  class: "Layer_Dense(n_in, n_out)"\n  set: {weights: w, biases: b}\n', "",
         "implementation.forward: a 'self.NAME' slot reads an attribute of the instance 'class:' builds"),
        ("grads: {x: self.dinputs,", "grads: {x: dinputs,",
         "implementation.grads.x: expected an attribute of the instance, such as 'self.dx'"),
        ("grads: {x: self.dinputs,", "grads: {xx: self.dinputs,",
         "implementation.grads.xx: 'xx' is not a checked tensor (did you mean 'x'?)"),
        ('backward: "backward(dout)"', 'backward: "backward(dout) -> self.dinputs"',
         "implementation.backward: a backward's return slots are named after tensors; to read a gradient"
         " from self.dinputs, say so in 'grads:'"),
        ('backward: "backward(dout)"', 'backward: "backward(dout) -> x"',
         "implementation.grads.x: 'x' is also a return slot of the backward: read it from one place"),
        ("grads: {x: self.dinputs, ", "grads: {",
         "numpy arrays cannot carry a .g attribute: name the gradients with '-> x, w, ...'"
         " (or read them off the instance: 'grads: {x: self.dx}')"),
    ],
    ids=["self-slot-without-class", "grads-not-an-attribute", "grads-not-a-tensor", "self-slot-in-backward",
         "grads-and-a-slot", "numpy-grads-incomplete"],
)  # fmt: skip
def test_attribute_keys_are_checked_when_the_spec_loads(gradcheck, write_layer, old, new, message):
    assert old in DENSE_SPEC
    ran = gradcheck("run", str(write_layer(DENSE_SPEC.replace(old, new), LAYER_DENSE)))
    assert ran.exit_code == 2
    assert message in ran.stderr


def test_set_and_grads_need_a_class(gradcheck, write_layer):
    spec = LIN_FASTAI + "  set: {w: w}\n"
    ran = gradcheck("run", str(write_layer(spec, LIN)))
    assert ran.exit_code == 2 and "implementation.set: 'set' puts tensors on the instance" in ran.stderr
    spec = LIN_FASTAI + "  grads: {w: self.dw}\n"
    ran = gradcheck("run", str(write_layer(spec, LIN)))
    assert (
        ran.exit_code == 2 and "implementation.grads: 'grads' reads attributes of the instance" in ran.stderr
    )


# -- a training step instead of a backward ---------------------------------------------


STEP_SPEC = """
name: layer
dims: {n: 5, n_in: 3, n_out: 4}
options: {lr: 0.1}
inputs:
  x: {shape: [n, n_in], grad: false}
  t: {shape: [n, n_out], grad: false}
params:
  w: [n_in, n_out]
  b: [n_out]
reference: "0.5 * ((x @ w + b - t) ** 2).sum()"
implementation:
  file: layer.py
  class: "Net(n_in, n_out, lr)"
  set: {w: w, b: b}
  step: "train(x, t)"
  learning_rate: lr
"""

NET = """
import torch


class Net:
    def __init__(self, n_in, n_out, lr):
        self.w, self.b, self.lr = torch.zeros(n_in, n_out), torch.zeros(n_out), lr

    def train(self, x, t):
        dout = x @ self.w + self.b - t
        self.w -= self.lr * x.T @ dout
        self.b -= self.lr * dout.sum(0)
"""


def test_a_step_is_checked_from_the_update_of_each_param(gradcheck, write_layer):
    exit_code, report = run_json(gradcheck, write_layer(STEP_SPEC, NET))
    assert exit_code == 0, report
    assert list(checks_of(report)) == ["w", "b"]  # only the params
    assert report["results"][0]["checks"][0]["max_abs_err"] < 1e-12


def test_a_step_that_rebinds_its_params_is_read_back_from_the_instance(gradcheck, write_layer):
    code = NET.replace("self.w -= self.lr * x.T @ dout", "self.w = self.w - self.lr * x.T @ dout")
    assert run_json(gradcheck, write_layer(STEP_SPEC, code))[0] == 0


def test_a_wrong_update_is_caught(gradcheck, write_layer):
    code = NET.replace("self.b -= self.lr * dout.sum(0)", "self.b -= self.lr * dout.mean(0)")
    exit_code, report = run_json(gradcheck, write_layer(STEP_SPEC, code))
    assert exit_code == 1
    b = checks_of(report)["b"]
    assert b["diagnosis"] == "scaled" and "divided by n=5" in b["hint"]
    assert checks_of(report)["w"]["status"] == "pass"


def test_a_step_function_updates_what_it_is_handed_in_place(gradcheck, write_layer):
    spec = STEP_SPEC.replace('  class: "Net(n_in, n_out, lr)"\n  set: {w: w, b: b}\n', "").replace(
        '"train(x, t)"', '"sgd_step(x, t, w, b, lr)"'
    )
    code = """
def sgd_step(x, t, w, b, lr):
    dout = x @ w + b - t
    w -= lr * x.T @ dout
    b = b - lr * dout.sum(0)  # BUG: a new tensor, the caller's b never changes
"""
    exit_code, report = run_json(gradcheck, write_layer(spec, code))
    assert exit_code == 1
    assert checks_of(report)["w"]["status"] == "pass"
    b = checks_of(report)["b"]
    assert b["status"] == "missing"
    assert b["hint"].startswith("sgd_step() did not change b: update it in place, or put it on the instance")


def test_a_step_must_not_change_its_inputs(gradcheck, write_layer):
    code = NET.replace("dout = x @ self.w + self.b - t", "dout = x @ self.w + self.b - t\n        t -= 1")
    exit_code, report = run_json(gradcheck, write_layer(STEP_SPEC, code))
    assert exit_code == 1
    assert checks_of(report)["t"]["diagnosis"] == "modified_input"


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("x: {shape: [n, n_in], grad: false}", "x: [n, n_in]",
         "inputs.x: a step updates only the params, so it says nothing of x's gradient:"
         " give the input 'grad: false'"),
        ("  learning_rate: lr\n", "",
         "implementation.step: a step needs 'learning_rate:' (a number, a dim or an option)"),
        ("  learning_rate: lr\n", "  learning_rate: 0\n",
         "implementation.learning_rate: a learning rate of 0"),
        ("  learning_rate: lr\n", "  learning_rate: lr * rate\n", "unknown dim 'rate'"),
        ("  learning_rate: lr\n", '  learning_rate: lr\n  backward: "backward(dout)"\n',
         "implementation.step: a step runs the backward and the update itself: drop 'backward:'"),
        ('"train(x, t)"', '"train(x, t) -> loss"', "implementation.step: a step updates the params in place"),
    ],
    ids=["input-with-grad", "no-learning-rate", "zero-learning-rate", "unknown-name", "and-a-backward",
         "returns"],
)  # fmt: skip
def test_step_keys_are_checked_when_the_spec_loads(gradcheck, write_layer, old, new, message):
    assert old in STEP_SPEC
    ran = gradcheck("run", str(write_layer(STEP_SPEC.replace(old, new), NET)))
    assert ran.exit_code == 2
    assert message in ran.stderr


def test_a_step_needs_a_scalar_loss_as_its_reference(gradcheck, write_layer):
    spec = STEP_SPEC.replace('"0.5 * ((x @ w + b - t) ** 2).sum()"', '"x @ w + b"')
    ran = gradcheck("run", str(write_layer(spec, NET)))
    assert ran.exit_code == 2
    assert "reference: a step's update is the gradient of the loss it minimises" in ran.stderr


# -- dtypes: numpy's float64 default, a torch gradient of another dtype -------------------


NUMPY_LINEAR = FUNCTIONAL.replace(
    "{call}", "linear_backward(grad_out, x, weight) -> x, weight, bias"
).replace("  file: layer.py", "  file: layer.py\n  backend: numpy")

# Allocates with np.zeros (float64), as most numpy code does: in a float32 check it returns float64.
NUMPY_FLOAT64 = """
import numpy as np


def linear_backward(grad_out, x, weight):
    dx = np.zeros(x.shape)
    dw = np.zeros(weight.shape)
    for i in range(x.shape[0]):
        dx[i] = grad_out[i] @ weight
        dw += np.outer(grad_out[i], x[i])
    return dx, dw, grad_out.sum(0)
"""


def test_numpy_code_returning_float64_in_a_float32_check_is_no_false_alarm(gradcheck, write_layer):
    exit_code, report = run_json(gradcheck, write_layer(NUMPY_LINEAR, NUMPY_FLOAT64), "--dtype", "float32")
    assert exit_code == 0, report
    assert all(c["status"] == "pass" for c in checks_of(report).values())
    assert report["results"][0]["notes"] == [
        "the numpy code returned x (float64), weight (float64): compared at float32, the checked dtype"
        " (np.zeros and np.eye make float64; pass dtype=x.dtype to keep float32)"
    ]


def test_a_wrong_float32_gradient_from_float64_numpy_code_is_still_caught(gradcheck, write_layer):
    code = NUMPY_FLOAT64.replace("dw += np.outer(grad_out[i], x[i])", "dw = np.outer(grad_out[i], x[i])")
    exit_code, report = run_json(gradcheck, write_layer(NUMPY_LINEAR, code), "--dtype", "float32")
    assert exit_code == 1
    checks = checks_of(report)
    assert checks["weight"]["status"] == "mismatch"
    assert checks["x"]["status"] == checks["bias"]["status"] == "pass"


@pytest.mark.parametrize(
    "spec", ["cs231n/affine.yaml", "cs231n/conv.yaml", "cs231n/softmax.yaml", "lstm/lstm_step.yaml"]
)
def test_the_numpy_examples_pass_in_float32(gradcheck, spec):
    """cs231n's conv allocates its output with np.zeros: a float64 forward, compared at float32."""
    ran = gradcheck("run", str(EXAMPLES / spec), "--dtype", "float32")
    assert ran.exit_code == 0, ran.stdout


def test_a_numpy_loss_returned_as_a_python_float_is_compared_at_the_checked_dtype(gradcheck, write_layer):
    spec = """
name: layer
dims: {n: 4}
inputs:
  x: [n]
outputs: [loss]
reference: "(x ** 2).sum()"
implementation:
  file: layer.py
  backend: numpy
  forward: "loss_forward(x) -> loss"
  backward: "loss_backward(x) -> x"
"""
    code = (
        "def loss_forward(x):\n    return float((x**2).sum())\n\n\ndef loss_backward(x):\n    return 2 * x\n"
    )
    exit_code, report = run_json(gradcheck, write_layer(spec, code), "--dtype", "float32")
    assert exit_code == 0, report
    assert "the numpy code returned loss (float64): compared at float32" in report["results"][0]["notes"][0]


TORCH_DTYPE = FUNCTIONAL.replace("{call}", "linear_backward(grad_out, x, weight) -> x, weight, bias")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_torch_gradient_of_another_dtype_keeps_its_comparison_and_is_wrong_dtype(
    gradcheck, write_layer, dtype
):
    other = "torch.float64" if dtype == "float32" else "torch.float32"
    code = (
        "import torch\n\ndef linear_backward(grad_out, x, weight):\n"
        f"    return grad_out @ weight, (grad_out.T @ x).to({other}), grad_out.sum(0)\n"
    )
    exit_code, report = run_json(gradcheck, write_layer(TORCH_DTYPE, code), "--dtype", dtype)
    assert exit_code == 1
    weight = checks_of(report)["weight"]
    assert (weight["status"], weight["diagnosis"], weight["mismatched"]) == ("error", "wrong_dtype", 0)
    assert weight["hint"].endswith(f"has dtype {other[6:]}, expected {dtype}; its values match")


def test_a_wrong_torch_gradient_of_another_dtype_says_both(gradcheck, write_layer):
    code = (
        "import torch\n\ndef linear_backward(grad_out, x, weight):\n"
        "    return grad_out @ weight, grad_out.T @ x, grad_out.mean(0).double()\n"
    )
    exit_code, report = run_json(gradcheck, write_layer(TORCH_DTYPE, code), "--dtype", "float32")
    assert exit_code == 1
    bias = checks_of(report)["bias"]
    assert (bias["status"], bias["diagnosis"], bias["mismatched"]) == ("mismatch", "scaled", 4)
    assert bias["hint"].endswith("; and the gradient for bias has dtype float64, expected float32")


# -- imports next to the code --------------------------------------------------------------


def _project(root, package: str):
    """A project whose PACKAGE/backward.py says `from PACKAGE.forward import *`; specs at its root
    (lin.yaml) and in specs/ (lin.yaml)."""
    (root / package).mkdir(parents=True)
    (root / "specs").mkdir()
    (root / package / "forward.py").write_text("def lin(x, w, b):\n    return x @ w + b\n")
    (root / package / "backward.py").write_text(
        f"from {package}.forward import *\n\n\ndef lin_grad(inp, out, w, b):\n"
        "    inp.g = out.g @ w.t()\n    w.g = inp.t() @ out.g\n    b.g = out.g.sum(0)\n"
    )
    (root / "lin.yaml").write_text(LIN_FASTAI.replace("file: layer.py", f"file: {package}/backward.py"))
    (root / "specs" / "lin.yaml").write_text(
        LIN_FASTAI.replace("file: layer.py", f"file: ../{package}/backward.py")
    )


def test_the_code_imports_its_project_as_python_run_from_the_root_would(gradcheck, tmp_path, monkeypatch):
    """CNN/backward.py says `from CNN.forward import *`: the project's root must be importable."""
    _project(tmp_path / "one", "CNN_one")
    monkeypatch.chdir(tmp_path)  # neither the spec's folder nor the current directory: what python says
    ran = gradcheck("run", "one/specs/lin.yaml")
    assert ran.exit_code == 2 and "No module named 'CNN_one'" in ran.stderr
    monkeypatch.chdir(tmp_path / "one")  # the current directory is the project's root
    assert gradcheck("run", "specs/lin.yaml").exit_code == 0

    _project(tmp_path / "two", "CNN_two")
    monkeypatch.chdir(tmp_path)  # the spec's folder is the project's root
    assert gradcheck("run", "two/lin.yaml").exit_code == 0


# -- arguments are expressions ---------------------------------------------------------------


ARGUMENTS_SPEC = """
name: layer
dims: {n: 4, d: 3}
options:
  dropout_param: {p: 0.25, mode: train}
inputs:
  x: [n, d]
reference:
  file: ref.py
  call: "scaled(x, 1 - dropout_param['p'])"
implementation:
  file: layer.py
  forward: "scale_forward(x, dropout_param['p'], shape=(n, d)) -> out, cache"
  backward: "scale_backward(dout, cache, keep=1 - dropout_param['p'], mode=dropout_param.get('mode')) -> x"
"""

ARGUMENTS_CODE = """
def scale_forward(x, p, shape):
    assert tuple(x.shape) == shape
    return x * (1 - p), p


def scale_backward(dout, p, keep, mode):
    assert keep == 1 - p and mode == "train"
    return dout * keep
"""


def test_call_arguments_are_expressions_in_the_reference_and_the_implementation(gradcheck, write_layer):
    spec = write_layer(ARGUMENTS_SPEC, ARGUMENTS_CODE)
    (spec.parent / "ref.py").write_text("def scaled(x, keep):\n    return x * keep\n")
    exit_code, report = run_json(gradcheck, spec)
    assert exit_code == 0, report
    assert list(checks_of(report)) == ["out", "x"]
    bad = spec.read_text().replace("dropout_param['p'], shape", "dropout_param['q'], shape")
    spec.write_text(bad)
    exit_code, report = run_json(gradcheck, spec)
    assert exit_code == 1 and "KeyError" in report["results"][0]["error"]
