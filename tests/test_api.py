"""gradcheck_cli.check: the engine from a notebook or a test, returning a Report."""

from __future__ import annotations

import os
import sys

import pytest
import torch
import torch.nn.functional as F

from gradcheck_cli import GradcheckError, Report, SpecError, check
from tests.conftest import EXAMPLES, LAYER_SPECS
from tests.zoo.classes import Lin  # the lesson's Lin: __call__ keeps input and output, backward() sets .g

SHAPES = {"x": (5, 3), "w": (3, 4), "b": (4,)}


def lin_grad(inp, out, w, b):
    """The fast.ai lesson's lin_grad, exactly: its input is called `inp`."""
    inp.g = out.g @ w.t()
    w.g = (inp.unsqueeze(-1) * out.g.unsqueeze(1)).sum(0)
    b.g = out.g.sum(0)


def lin_grad_no_sum(inp, out, w, b):
    inp.g = out.g @ w.t()
    w.g = inp.t() @ out.g
    b.g = out.g


def test_check_a_spec_file_with_dims_as_keywords():
    report = check(EXAMPLES / "fastai" / "lin.yaml", n=7)
    assert isinstance(report, Report)
    assert report.ok and report.exit_code == 0
    (result,) = report.results
    assert result.dims == {"n": 7, "in": 3, "out": 4}
    assert report["b"].status == "pass"
    assert [c.name for c in result.checks] == ["out", "x", "w", "b"]
    assert report["x"].expected_shape == [7, 3]


def test_check_takes_the_run_settings_of_the_cli():
    report = check(str(LAYER_SPECS / "linear.yaml"), dtype="float32", seed=3, atol=1e-4, rtol=1e-4, batch=2)
    (result,) = report.results
    assert (result.dtype, result.seed, result.dims["batch"]) == ("float32", 3, 2)
    assert report.ok
    swept = check(LAYER_SPECS / "linear.yaml", sweep=True)
    assert swept.ok and len(swept.results[0].sweep) > 1


def test_the_yaml_free_form_from_the_issue_with_the_lessons_lin_grad():
    report = check(reference=lambda x, w, b: x @ w + b, backward=lin_grad, convention="fastai", shapes=SHAPES)
    assert report.ok
    # No forward was given: the reference computes `out`, and there is no forward row to compare.
    assert [c.name for c in report.results[0].checks] == ["x", "w", "b"]
    assert report.results[0].spec == "lin_grad"
    # lin_grad(inp, out, w, b): `inp` names no tensor, so it got x by position, and the report says so.
    assert report.results[0].notes == [
        "the backward's parameter 'inp' was handed x by position (name the parameter 'x' to say so)"
    ]


def test_the_yaml_free_form_flags_a_wrong_backward():
    report = check(
        reference=lambda x, w, b: x @ w + b, backward=lin_grad_no_sum, convention="fastai", shapes=SHAPES
    )
    assert not report.ok and report.exit_code == 1
    assert report["b"].status == "shape_error" and report["b"].diagnosis == "missing_reduction"
    assert report["x"].status == report["w"].status == "pass"


def test_functional_form_returns_gradients_of_its_tensor_parameters_in_order():
    def linear_backward(grad_output, input, weight, bias):
        return grad_output @ weight, grad_output.T @ input, grad_output.sum(0)

    report = check(
        reference=lambda x, weight, bias: F.linear(x, weight, bias),
        backward=linear_backward,
        shapes={"x": (5, 3)},
        params={"weight": (4, 3), "bias": (4,)},
    )
    assert report.ok
    assert [(c.name, c.kind) for c in report.results[0].checks] == [
        ("x", "input"),
        ("weight", "param"),
        ("bias", "param"),
    ]


def test_functional_form_with_explicit_returns_and_an_integer_target():
    def ce_backward(dout, logits, target):
        probs = logits.softmax(-1)
        probs[torch.arange(len(target)), target] -= 1
        return probs / len(target) * dout

    report = check(
        reference=lambda logits, target: F.cross_entropy(logits, target),
        backward=ce_backward,
        shapes={"logits": (6, 4), "target": {"shape": [6], "dtype": "int64", "low": 0, "high": 4}},
        returns=["logits"],
    )
    assert report.ok, report
    assert [c.name for c in report.results[0].checks] == ["logits"]


def test_numpy_form():
    def relu_backward(dout, x):
        return dout * (x > 0)

    report = check(
        reference=lambda x: F.relu(x), backward=relu_backward, convention="numpy", shapes={"x": (4, 5)}
    )
    assert report.ok


def test_autograd_function_form_reads_the_argument_order_from_forward():
    from torch.autograd import Function

    class LinearFunction(Function):
        @staticmethod
        def forward(ctx, input, weight, bias=None):
            ctx.save_for_backward(input, weight)
            return input @ weight.T + bias

        @staticmethod
        def backward(ctx, grad_output):
            input, weight = ctx.saved_tensors
            return grad_output @ weight, grad_output.T @ input, grad_output.sum(0) * 2

    report = check(
        reference=lambda x, weight, bias: F.linear(x, weight, bias),
        autograd_function=LinearFunction,
        shapes={"x": (5, 3)},
        params={"weight": (4, 3), "bias": (4,)},
    )
    assert report.results[0].spec == "linear_function"
    assert report["bias"].diagnosis == "scaled"
    assert report["x"].ok and report["weight"].ok


def test_a_parameter_that_names_nothing_is_a_clear_error():
    def backward(grad_out, x, w, b, cache):
        return grad_out

    with pytest.raises(GradcheckError, match="the backward's parameter 'cache' is none of the names"):
        check(reference=lambda x, w, b: x @ w + b, backward=backward, shapes=SHAPES)


def test_a_spec_and_functions_together_is_an_error():
    with pytest.raises(GradcheckError, match="takes a spec or functions, not both"):
        check(EXAMPLES / "fastai" / "lin.yaml", backward=lin_grad)


def test_the_report_renders_as_the_table_in_a_terminal_and_in_jupyter():
    report = check(
        reference=lambda x, w, b: x @ w + b, backward=lin_grad_no_sum, convention="fastai", shapes=SHAPES
    )
    text = str(report)
    assert "expected shape" in text and "max abs err" in text
    assert "b: [missing_reduction]" in text
    assert text.rstrip().endswith("FAIL: 0 passed, 1 failed")
    html = report._repr_html_()
    assert html.startswith("<div") and "missing_reduction" in html and "[5, 4]" in html
    assert repr(report).startswith("<Report passed=0 failed=1 errors=0>")
    assert report.to_dict()["summary"] == {
        "passed": 0,
        "failed": 1,
        "errors": 0,
        "skipped": 0,
        "xfailed": 0,
        "xpassed": 0,
        "interrupted": 0,
    }


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: check(EXAMPLES / "fastai" / "missing.yaml"), "cannot read spec"),
        (lambda: check(EXAMPLES / "fastai" / "lin.yaml", batch=3), "has no dim 'batch'"),
        (lambda: check(EXAMPLES / "fastai" / "lin.yaml", dtype="float8"), "unknown dtype 'float8'"),
    ],
    ids=["missing-file", "unknown-dim", "unknown-dtype"],
)
def test_a_spec_error_raises_spec_error_and_never_exits(call, message, monkeypatch):
    monkeypatch.setattr(sys, "exit", lambda *a: pytest.fail("check() called sys.exit"))
    with pytest.raises(SpecError, match=message):
        call()


def test_a_spec_error_found_while_running_raises_too(write_layer):
    spec = write_layer(
        """
        name: layer
        dims: {n: 3}
        inputs:
          x: [n]
        reference: "x * 2"
        implementation:
          file: layer.py
          backward: "backward(grad_out, x) -> x"
        """,
        "import no_such_module\n",
    )
    with pytest.raises(SpecError) as info:
        check(spec)
    assert "implementation.file: cannot import" in str(info.value)
    assert "No module named 'no_such_module'" in str(info.value)


@pytest.mark.parametrize(
    "keywords, message",
    [
        ({"seed": -1}, "check(): seed= must be an integer from 0 to 2**63 - 1, got -1"),
        ({"ratio": 0, "dtype": "float32"}, "check(): ratio= must be a positive number"),
        ({"atol": -1.0}, "check(): atol= must be a non-negative number, got -1.0"),
    ],
)
def test_a_bad_setting_names_the_keyword_not_a_command_line_flag(keywords, message):
    with pytest.raises(GradcheckError) as info:
        check("linear", **keywords)
    assert str(info.value).startswith(message)


def test_an_exception_in_the_checked_code_is_a_result_not_a_raise():
    def backward(grad_out, x, w, b):
        raise RuntimeError("not written yet")

    report = check(reference=lambda x, w, b: x @ w + b, backward=backward, shapes=SHAPES)
    (result,) = report.results
    assert result.status == "error" and report.exit_code == 1
    assert "RuntimeError: not written yet" in result.error
    assert f"{__file__}:" in result.error


class Abandon(BaseException):
    """The checked code's own exception that is not an Exception (as KeyboardInterrupt is not)."""


def test_os_exit_or_a_base_exception_in_the_checked_code_is_a_result_and_the_caller_lives_on(monkeypatch):
    def no_exit(status):
        raise AssertionError(f"the checked code's os._exit({status}) reached the real one")

    monkeypatch.setattr(os, "_exit", no_exit)  # stands in for the real one, which would end pytest

    def exits(grad_out, x, w, b):
        os._exit(0)  # in this process it would end pytest with exit code 0: green

    def abandons(grad_out, x, w, b):
        raise Abandon("gave up")

    for backward, said in [(exits, "called os._exit(0) at"), (abandons, "raised Abandon: gave up at")]:
        report = check(reference=lambda x, w, b: x @ w + b, backward=backward, shapes=SHAPES)
        (result,) = report.results
        assert result.status == "error" and report.exit_code == 1
        assert said in result.error and f"{__file__}:" in result.error
    assert os._exit is no_exit  # put back once the checked code has run


# -- the CLI's names: a layer's name, cs231n, the class convention -------------------------


def test_check_takes_a_built_in_layers_name_as_the_cli_does():
    report = check("linear", batch=8)
    assert report.ok and report.results[0].dims == {"batch": 8, "in": 3, "out": 4}
    with pytest.raises(SpecError, match=r"unknown layer 'lnear' \(did you mean 'linear'\?\)"):
        check("lnear")


def test_cs231n_is_the_numpy_convention_as_in_gradcheck_new():
    def relu_backward(dout, x):
        return dout * (x > 0)

    report = check(
        reference=lambda x: F.relu(x), backward=relu_backward, convention="cs231n", shapes={"x": (4, 5)}
    )
    assert report.ok


def test_the_class_convention_builds_an_instance_and_calls_its_methods():
    report = check(
        reference=lambda x, w, b: x @ w + b, cls=Lin, forward=Lin.__call__, backward=Lin.backward,
        shapes={"x": (5, 3)}, params={"w": (3, 4), "b": (4,)},
    )  # fmt: skip
    assert report.ok
    assert [c.name for c in report.results[0].checks] == ["out", "x", "w", "b"]
    by_name = check(
        reference=lambda x, w, b: x @ w + b, convention="class", cls=Lin,
        forward="__call__", backward="backward", shapes={"x": (5, 3)}, params={"w": (3, 4), "b": (4,)},
    )  # fmt: skip
    assert by_name.ok


def test_the_class_convention_catches_a_wrong_method():
    class Wrong(Lin):
        def backward(self):
            super().backward()
            self.b.g = self.out.g  # BUG: not summed over the batch

    report = check(
        reference=lambda x, w, b: x @ w + b, cls=Wrong, forward=Wrong.__call__, backward=Wrong.backward,
        shapes={"x": (5, 3)}, params={"w": (3, 4), "b": (4,)},
    )  # fmt: skip
    assert report["b"].diagnosis == "missing_reduction"
    assert report["x"].ok and report["w"].ok


def test_a_class_whose_backward_returns_its_gradients():
    class Linear:
        def __init__(self, weight):
            self.weight = weight

        def backward(self, grad_out, x):
            return grad_out @ self.weight, grad_out.T @ x

    report = check(
        reference=lambda x, weight: F.linear(x, weight), cls=Linear, backward=Linear.backward,
        returns=["x", "weight"], shapes={"x": (5, 3)}, params={"weight": (4, 3)},
    )  # fmt: skip
    assert report.ok


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"convention": "class", "backward": lin_grad}, "convention='class' needs cls="),
        ({"convention": "fastai", "cls": Lin, "backward": Lin.backward}, "cls= goes with convention='class'"),
        ({"cls": Lin, "backward": lin_grad}, "with cls=Lin, backward= is one of its methods"),
        ({"cls": Lin, "backward": "bakward"}, "with cls=Lin, backward= is one of its methods"),
        ({"backward": "backward"}, "a method's name goes with cls="),
        ({"convention": "step", "backward": lin_grad}, "unknown convention 'step'"),
    ],
    ids=[
        "class-without-cls",
        "cls-with-fastai",
        "not-a-method",
        "no-such-method",
        "name-without-cls",
        "step",
    ],
)
def test_class_convention_mistakes_are_clear_errors(kwargs, message):
    with pytest.raises(GradcheckError, match=message):
        check(
            reference=lambda x, w, b: x @ w + b,
            shapes={"x": (5, 3)},
            params={"w": (3, 4), "b": (4,)},
            **kwargs,
        )


# -- functions defined in a live notebook ----------------------------------------------------


@pytest.mark.parametrize("filename", ["<ipython-input-3-5d1c4b6e2f0a>", "/tmp/ipykernel_4242/1234567890.py"])
def test_functions_defined_in_a_live_notebook_are_checked_and_their_errors_point_at_the_cell(filename):
    """A cell as IPython compiles it: named `<ipython-input-N-...>` (older), or ipykernel's temporary file."""
    cell = (
        "def lin_grad(inp, out, w, b):\n    inp.g = out.g @ w.t()\n    w.g = inp.t() @ out.g\n"
        "    b.g = out.g.sum(2)\n"
    )
    namespace: dict = {}
    exec(compile(cell, filename, "exec"), namespace)
    report = check(
        reference=lambda x, w, b: x @ w + b,
        backward=namespace["lin_grad"],
        convention="fastai",
        shapes=SHAPES,
    )
    (result,) = report.results
    assert result.status == "error" and "IndexError" in result.error
    assert result.error.endswith(f"at {filename}:4")
    exec(compile(cell.replace("sum(2)", "sum(0)"), filename, "exec"), namespace)
    assert check(
        reference=lambda x, w, b: x @ w + b,
        backward=namespace["lin_grad"],
        convention="fastai",
        shapes=SHAPES,
    ).ok
