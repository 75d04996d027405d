"""Expressions: parsed and walked over the spec's names and an allowlist, never eval'ed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gradcheck_cli.expressions import ExpressionError, evaluate, evaluate_int, parse

X = torch.arange(12, dtype=torch.float64).reshape(3, 4) - 5
W = torch.linspace(-1, 1, 8, dtype=torch.float64).reshape(4, 2)
SCOPE = {"x": X, "w": W, "in": 4, "n": 3, "conv_param": {"stride": 2}}
NAMES = ["x", "w", "in", "n", "conv_param"]


def parse_reference(expr: str, names):
    return parse(expr, names, known=names)


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
        ("x.numpy().tofile('out.bin')", "attribute 'numpy' is not allowed"),
        ("torch.os.system('true')", "is not allowed"),
        # Module-walking attributes and string formatting are refused by name, when the spec loads.
        ("torch.utils.collect_env.run('id > out')", "attribute 'utils' is not allowed"),
        ("torch.ops.import_module('os')", "attribute 'ops' is not allowed"),
        ("torch.backends.cudnn", "attribute 'backends' is not allowed"),
        ("'{0.__class__}'.format(x)", "attribute 'format' of '{0.__class__}' is not allowed"),
        ("x.storage()", "attribute 'storage' is not allowed"),
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
    with pytest.raises(ExpressionError) as info:
        parse_reference(expr, ["x", "w", "n"])
    assert message in str(info.value)


@pytest.mark.parametrize(
    "expr",
    ["torch.inspect.getsource(F.relu)", "torch.glob.glob('*')", "F.torch.ctypes", "torch.special.torch"],
)
def test_a_module_outside_the_allowlist_is_out_of_reach_when_the_spec_loads(expr):
    with pytest.raises(ExpressionError, match="only the tensor functions of torch, F"):
        parse_reference(expr, NAMES)


@pytest.mark.parametrize(
    "expr, message",
    [
        ("x.max(dim=0).values.grad_fn", "attribute 'grad_fn' is not allowed"),
        ("conv_param.get('stride').bit_length().real.numerator", "attribute 'numerator' is not allowed"),
        ("x.shape.sum()", "attribute 'sum' of a Size is not allowed"),
        ("conv_param['stride'].keys", "attribute 'keys' of a int is not allowed"),
    ],
)
def test_attributes_of_values_are_checked_against_the_values_type_when_evaluated(expr, message):
    with pytest.raises(ExpressionError, match=message):
        ev(expr)


@pytest.mark.parametrize(
    "expr, message",
    [
        ("2 ** 10 ** 10", "too large a number"),
        ("n ** 100000", "too large a number"),
        ("[x] * 10 ** 9", "would be too long"),
        ("list(range(10 ** 9))", "too long"),
        ("(" * 500 + "x" + ")" * 500, "nested"),
        ("x" + " + x" * 30000, "characters long"),
        ("sum(range(10 ** 13))", "10000000000000 items is too long"),
        ("range(10 ** 30)", "is too long"),
        ("math.factorial(10 ** 6)", r"math.factorial\(1000000\) is too large a number"),
        ("math.comb(10 ** 6, 5 * 10 ** 5)", "too large a number"),
        ("math.perm(10 ** 9)", r"math.perm\(1000000000\) is too large"),
        ("math.prod(range(1, 10 ** 5))", "too large a number"),
        ("'%0900000000d' % 1", "'%' formatting of text is not allowed"),
    ],
)
def test_evaluation_is_bounded(expr, message):
    with pytest.raises(ExpressionError, match=message):
        ev(expr)


@pytest.mark.parametrize(
    "expr, value",
    [("math.factorial(5)", 120), ("math.comb(10, 3)", 120), ("math.perm(5)", 120), ("math.prod([2, 3])", 6)],
)
def test_bounded_functions_still_compute_what_they_name(expr, value):
    assert ev(expr) == value


@pytest.mark.parametrize(
    "expr",
    [
        "torch.frombuffer(b'abcd', dtype=torch.uint8)",
        "torch.asarray(b'ab')",
        "torch.empty(3)",
        "x.new_empty(3)",
        "torch.empty_like(x)",
        "torch.empty_strided((2,), (1,))",
    ],
)
def test_uninitialised_memory_and_python_buffers_are_out_of_reach(expr):
    """``empty`` hands back whatever memory held before; ``frombuffer`` writes an immutable bytes."""
    with pytest.raises(ExpressionError, match="is not allowed"):
        parse_reference(expr, NAMES)


def test_a_tensors_memory_address_is_out_of_reach():
    with pytest.raises(ExpressionError, match="attribute 'const_data_ptr' is not allowed"):
        ev("x.const_data_ptr()")


def test_named_results_dtypes_and_finfo_are_reachable():
    assert torch.equal(ev("x.max(dim=0).values"), X.max(dim=0).values)
    assert ev("torch.finfo(x.dtype).eps") == torch.finfo(torch.float64).eps
    assert ev("x.dtype.is_floating_point and x.shape.numel()") == 12
    assert ev("conv_param.get('stride')") == 2
    assert ev("F.hardtanh") is F.hardtanh  # a callable is a value (an argument to a Function)


def test_arithmetic_mode_is_numbers_names_and_operators_only():
    assert evaluate_int(parse("in * 2 + out", ["in", "out"], arithmetic=True), {"in": 3, "out": 4}) == 10
    assert evaluate(
        parse("(w + 2 * pad - ww) % stride == 0", arithmetic=True), dict(w=8, pad=1, ww=3, stride=1)
    )
    for text in ("x.shape", "f(2)", "x[0]", "'a'"):
        with pytest.raises(ExpressionError, match="is not allowed in a shape|is not a number"):
            parse(text, arithmetic=True)


def test_torch_submodules_are_in_reach():
    assert torch.allclose(ev("torch.special.expit(x)"), torch.sigmoid(X))
    assert torch.equal(ev("torch.nn.functional.relu(x)"), F.relu(X))


def test_evaluation_does_not_hand_out_builtins():
    tree = parse_reference("len(x)", NAMES)
    assert evaluate(tree, SCOPE) == 3
    with pytest.raises(ExpressionError, match="unknown name 'n'"):
        evaluate(parse_reference("n", ["n"]), {})  # only what the scope holds
