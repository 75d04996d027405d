"""The call mini-syntax: ``func(a, key=b, 2) -> x, _, y``."""

from __future__ import annotations

import pytest

from gradcheck_cli.calls import CallSyntaxError, parse_call


def test_a_backward_with_named_returns():
    call = parse_call("affine_backward(dout, cache) -> x, w, b")
    assert call.func == "affine_backward"
    assert call.arg_names == ["dout", "cache"]
    assert call.returns == ("x", "w", "b")
    assert str(call) == "affine_backward(dout, cache) -> x, w, b"


def test_no_arrow_means_no_returns_the_fastai_convention():
    call = parse_call("lin_grad(x, out, w, b)")
    assert call.returns is None
    assert parse_call("backward()").args == ()


def test_discarded_slots_and_method_names():
    call = parse_call("  self.loss.forward(x, y)->_,x  ")
    assert call.func == "self.loss.forward"
    assert call.returns == ("_", "x")
    assert parse_call("f(x) -> _, _").returns == ("_", "_")


@pytest.mark.parametrize(
    "text, value",
    [("1", 1), ("-2", -2), ("1e-5", 1e-5), ("0.5", 0.5), (".5", 0.5), ("'same'", "same"),
     ('"a, b"', "a, b"), ("True", True), ("False", False), ("None", None)],
)  # fmt: skip
def test_literal_arguments(text, value):
    (arg,) = parse_call(f"f({text})").args
    assert arg.name is None
    assert arg.literal == value and type(arg.literal) is type(value)


def test_arguments_are_expressions():
    call = parse_call("dropout(x[0] + 1, dropout_param['p'], key=(1, 2), act=F.hardtanh) -> out, self.cache")
    assert [str(a) for a in call.args] == ["x[0] + 1", "dropout_param['p']", "key=(1, 2)", "act=F.hardtanh"]
    assert call.arg_names == ["x", "dropout_param", "F"]
    assert call.returns == ("out", "self.cache")


def test_a_dim_named_after_a_keyword_is_a_name_in_a_call():
    call = parse_call("f(x, in, n=in * 2)", ["in"])
    assert [str(a) for a in call.args] == ["x", "in", "n=in * 2"]
    assert call.arg_names == ["x", "in"]


def test_keyword_arguments_take_names_or_literals():
    call = parse_call("batchnorm(x, gamma, beta, bn_param=param, eps=1e-5, mode='train')")
    assert [(a.keyword, a.name, a.literal) for a in call.args[3:]] == [
        ("bn_param", "param", None),
        ("eps", None, 1e-5),
        ("mode", None, "train"),
    ]
    assert call.arg_names == ["x", "gamma", "beta", "param"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("backward", "expected 'func(arg, ...) -> name, ...'"),
        ("f(x, , y)", "expected 'func(arg, ...) -> name, ...'"),
        ("f(x) ->", "nothing after '->'"),
        ("f(x) -> a.b", "return slot 'a.b' is not a name"),
        ("f(x) -> x, x", "a return name is used twice"),
        ("f(a=x, y)", "positional argument follows keyword argument"),
        ("f(*x)", "argument '*x': '*' is not allowed"),
        ("f(lambda: x)", "argument 'lambda: x': Lambda is not allowed"),
        ("f(a=x, a=y)", "a keyword argument is given twice"),
        ("f('open)", "unterminated string"),
    ],
)
def test_syntax_errors_say_what_is_wrong(text, message):
    with pytest.raises(CallSyntaxError) as info:
        parse_call(text)
    assert message in str(info.value)


def test_a_bad_call_in_a_spec_is_a_spec_error_at_its_line(gradcheck, write_layer):
    spec = write_layer(
        """
        name: layer
        dims: {n: 3}
        inputs:
          x: [n]
        reference: "x * 2"
        implementation:
          file: layer.py
          backward: "double_backward(grad_out, x) -> x, x"
        """,
        "def double_backward(grad_out, x):\n    return 2 * grad_out\n",
    )
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2
    assert f"{spec}:8: implementation.backward: a return name is used twice" in ran.stderr
