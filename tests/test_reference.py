"""Reference expressions: parsed and walked over the spec's names, never eval'ed."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gradcheck_cli.reference import ReferenceSyntaxError, evaluate, parse_reference

X = torch.arange(12, dtype=torch.float64).reshape(3, 4) - 5
W = torch.linspace(-1, 1, 8, dtype=torch.float64).reshape(4, 2)
SCOPE = {"x": X, "w": W, "in": 4, "n": 3, "conv_param": {"stride": 2}, "torch": torch, "F": F, "math": math}
NAMES = ["x", "w", "in", "n", "conv_param"]


def ev(expr: str):
    return evaluate(parse_reference(expr, NAMES), SCOPE)


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("x @ w", X @ W),
        ("F.relu(x).sum(dim=1, keepdim=True)", F.relu(X).sum(dim=1, keepdim=True)),
        ("x.reshape(n, -1)[:, 1:3] ** 2", X.reshape(3, -1)[:, 1:3] ** 2),
        ("x[0, ::2] * in", X[0, ::2] * 4),  # a dim may be named after a Python keyword
        ("torch.where(x > 0, x, -x)", X.abs()),
        ("x * conv_param['stride']", X * 2),
        ("x / math.sqrt(in)", X / 2),
        ("torch.cat([x, x], dim=0) if n > 1 else x", torch.cat([X, X])),
        ("(x.shape[0], len(x), max(n, 1))", (3, 3, 3)),
        ("torch.linalg.norm(x)", torch.linalg.norm(X)),
        ("n > 1 and x.T", X.T),
        ("not n == 3 or -x", -X),
    ],
)
def test_expressions_over_tensors_dims_and_options(expr, expected):
    got = ev(expr)
    if isinstance(expected, torch.Tensor):
        assert torch.equal(got, expected)
    else:
        assert got == expected


@pytest.mark.parametrize(
    "expr, message",
    [
        ("lambda: x", "Lambda is not allowed"),
        ("__import__('os')", "unknown name '__import__'"),
        ("open('f')", "unknown name 'open'"),
        ("eval('1')", "unknown name 'eval'"),
        ("x.__class__.__bases__", "no underscore attributes"),
        ("x._version", "no underscore attributes"),
        ("torch.load('w.pt')", "attribute 'load' is not allowed"),
        ("torch.hub.list('a/b')", "attribute 'hub' is not allowed"),
        ("x.numpy().tofile('out.bin')", "attribute 'tofile' is not allowed"),
        ("torch.os.system('true')", "is not allowed"),
        ("F.linear(x, **w)", "'**' is not allowed"),
        ("F.linear(*x)", "Starred is not allowed"),
        ("[t for t in x]", "ListComp is not allowed"),
        ("{'a': x}", "Dict is not allowed"),
        ("(y := x)", "NamedExpr is not allowed"),
        ("f'{x}'", "JoinedStr is not allowed"),
        ("x +", "not a Python expression"),
        ("xx @ w", "unknown name 'xx' (did you mean 'x'?)"),
    ],
)
def test_anything_else_is_rejected_when_the_spec_is_loaded(expr, message):
    with pytest.raises(ReferenceSyntaxError) as info:
        parse_reference(expr, ["x", "w", "n"])
    assert message in str(info.value)


@pytest.mark.parametrize(
    "expr", ["torch.inspect.getsource(F.relu)", "torch.glob.glob('*')", "F.torch.ctypes"]
)
def test_a_module_outside_torch_and_math_is_out_of_reach(expr):
    tree = parse_reference(expr, NAMES)  # nothing in the text gives it away
    with pytest.raises(ReferenceSyntaxError, match="only torch and math are in reach"):
        evaluate(tree, SCOPE)


def test_torch_submodules_are_in_reach():
    assert torch.allclose(ev("torch.special.expit(x)"), torch.sigmoid(X))
    assert torch.equal(ev("torch.nn.functional.relu(x)"), F.relu(X))


def test_evaluation_does_not_hand_out_builtins():
    tree = parse_reference("len(x)", NAMES)
    assert evaluate(tree, SCOPE) == 3
    with pytest.raises(KeyError):
        evaluate(parse_reference("n", ["n"]), {"torch": torch})  # only what the scope holds
