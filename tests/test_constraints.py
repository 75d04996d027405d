"""``constraints:``: sizes the checked code requires, checked on the command line and met by --sweep."""

from __future__ import annotations

import json
import textwrap

import pytest

from gradcheck_cli.runner import make_case, sweep_cases
from gradcheck_cli.spec import load_spec

# A numpy conv1d, cs231n style: like the course's conv_forward_naive, it asserts that the
# windows tile the padded input exactly.
CONV = """
import numpy as np


def conv1d_forward(x, w, stride, pad):
    N, C, L = x.shape
    F, _, K = w.shape
    assert (L + 2 * pad - K) % stride == 0, "width does not work"
    out_len = 1 + (L + 2 * pad - K) // stride
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad)))
    out = np.zeros((N, F, out_len), dtype=x.dtype)
    for i in range(out_len):
        out[:, :, i] = np.einsum("nck,fck->nf", xp[:, :, i * stride : i * stride + K], w)
    return out, (x, w, stride, pad)


def conv1d_backward(dout, cache):
    x, w, stride, pad = cache
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad)))
    dxp, dw, K = np.zeros_like(xp), np.zeros_like(w), w.shape[2]
    for i in range(dout.shape[2]):
        dw += np.einsum("nf,nck->fck", dout[:, :, i], xp[:, :, i * stride : i * stride + K])
        dxp[:, :, i * stride : i * stride + K] += np.einsum("nf,fck->nck", dout[:, :, i], w)
    return dxp[:, :, pad : pad + x.shape[2]], dw
"""

SPEC = """
name: conv1d_np
dims: {n: 2, c: 3, l: 10, f: 4, k: 3}
options: {stride: 3, pad: 1}
constraints: ["(l + 2 * pad - k) % stride == 0"]
inputs:
  x: [n, c, l]
params:
  w: [f, c, k]
reference: "F.conv1d(x, w, stride=stride, padding=pad)"
implementation:
  file: conv1d_np.py
  backend: numpy
  forward: "conv1d_forward(x, w, stride, pad) -> out, cache"
  backward: "conv1d_backward(dout, cache) -> x, w"
"""


@pytest.fixture
def conv(write_layer):
    return write_layer(SPEC, CONV, name="conv1d_np")


def test_without_constraints_the_sweep_picks_sizes_the_code_cannot_take(gradcheck, conv):
    conv.write_text(conv.read_text().replace('constraints: ["(l + 2 * pad - k) % stride == 0"]\n', ""))
    ran = gradcheck("run", str(conv), "--sweep", "--format", "json")
    assert ran.exit_code == 1
    (result,) = json.loads(ran.stdout)["results"]
    assert "AssertionError: width does not work" in result["error"]


def test_the_sweep_meets_the_constraints(gradcheck, conv):
    ran = gradcheck("run", str(conv), "--sweep", "--format", "json")
    assert ran.exit_code == 0, ran.stdout
    (result,) = json.loads(ran.stdout)["results"]
    sizes = [case["dims"] for case in result["sweep"]]
    assert len({tuple(d.values()) for d in sizes}) == 3  # the spec's own sizes and two others
    assert all((d["l"] + 2 - d["k"]) % 3 == 0 for d in sizes)


def test_sweep_sizes_meet_an_equality_and_stay_as_distinct_as_it_allows(write_layer):
    spec = load_spec(
        write_layer(
            """
            name: square
            dims: {b: 2, h: 4, w: 4}
            constraints: ["h == w", "b < h"]
            inputs:
              x: [b, h, w]
            reference: "x.transpose(1, 2) * 2"
            implementation:
              file: square.py
              backward: "square_backward(dout) -> x"
            """,
            "def square_backward(dout):\n    return 2 * dout.transpose(1, 2)\n",
            name="square",
        )
    )
    cases = sweep_cases(make_case(spec))
    resized = [c.dims for c in cases if c.dims != spec.dims]
    assert resized and all(d["h"] == d["w"] and d["b"] != d["h"] for d in resized)


def test_sizes_given_on_the_command_line_that_break_a_constraint_exit_2_naming_it(
    gradcheck, conv, monkeypatch
):
    monkeypatch.chdir(conv.parent)
    (conv.parent / "pyproject.toml").write_text('[tool.gradcheck]\nspec_paths = ["."]\n')
    assert gradcheck("conv1d_np", "--l", "13").exit_code == 0
    ran = gradcheck("conv1d_np", "--l", "11")
    assert ran.exit_code == 2
    assert ran.stderr.startswith(f"gradcheck: error: {conv}:4: constraints: ")
    assert ran.stderr.rstrip().endswith(
        "the sizes break the constraint '(l + 2 * pad - k) % stride == 0' (l=11, pad=1, k=3, stride=3)"
    )
    assert gradcheck("conv1d_np", "-O", "stride=2").exit_code == 2  # options count too


def test_the_python_api_checks_constraints_too(conv):
    from gradcheck_cli import SpecError, check

    assert check(conv, l=7).ok
    with pytest.raises(SpecError, match="the sizes break the constraint"):
        check(conv, l=8)


@pytest.mark.parametrize(
    "constraints, message",
    [
        ('["l + k"]', "is 13: a constraint is a comparison, such as 'h == w'"),
        ('["l == width"]', "'width' is not a dim or a numeric option"),
        ('["x.shape[0] == 2"]', "is not allowed in a shape or constraint"),
        ('["l % 4 == 0"]', "the spec's own sizes break 'l % 4 == 0' (l=10)"),
        ("{l: 10}", "expected a list of comparisons like 'h == w'"),
    ],
)
def test_a_bad_constraint_is_a_spec_error_at_its_line(gradcheck, conv, constraints, message):
    conv.write_text(conv.read_text().replace('["(l + 2 * pad - k) % stride == 0"]', constraints))
    ran = gradcheck("run", str(conv))
    assert ran.exit_code == 2
    assert f"{conv}:4: constraints: " in ran.stderr and message in ran.stderr


def test_a_constraint_may_be_a_single_string(conv):
    text = conv.read_text().replace('["(l + 2 * pad - k) % stride == 0"]', '"l > k and k > 1"')
    conv.write_text(textwrap.dedent(text))
    assert [c.text for c in load_spec(conv).constraints] == ["l > k and k > 1"]
