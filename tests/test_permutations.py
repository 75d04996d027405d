"""Index inputs that are permutations, and inputs derived from earlier ones.

A Function that takes a sort order and its inverse (Reformer's ReverseSort,
examples/functions/reverse_sort.yaml) is only right for real permutations:
``{dtype: int64, permutation: DIM}`` draws one per slice along that dim, seeded,
and ``inverse: "perm.argsort(-1)"`` derives a later input from it.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from gradcheck_cli import load_spec
from gradcheck_cli.errors import SpecError
from gradcheck_cli.runner import generate, make_case
from tests.conftest import EXAMPLES

PERM = """
name: perm
dims: {b: 3, n: 5}
inputs:
  x: [b, n]
  perm: {shape: [b, n], dtype: int64, permutation: n}
  inverse: "perm.argsort(-1)"
reference: "x.gather(1, perm)"
implementation:
  file: layer.py
  backward: "backward(grad_out, inverse) -> x"
"""


def test_a_permutation_input_holds_a_seeded_permutation_of_each_slice(write_layer):
    spec = load_spec(write_layer(PERM, ""))
    values = generate(make_case(spec, seed=3))
    perm = values["perm"]
    assert perm.dtype == torch.int64 and perm.shape == (3, 5)
    assert torch.equal(perm.sort(-1).values, torch.arange(5).expand(3, 5))
    assert not torch.equal(perm, torch.arange(5).expand(3, 5))  # shuffled, not the identity
    assert torch.equal(generate(make_case(spec, seed=3))["perm"], perm)  # seeded
    assert not torch.equal(generate(make_case(spec, seed=4))["perm"], perm)


def test_a_derived_input_is_its_expression_of_the_inputs_above_it(write_layer):
    spec = load_spec(write_layer(PERM, ""))
    assert not spec.inputs["inverse"].grad  # not checked: it has no gradient of its own
    values = generate(make_case(spec))
    assert torch.equal(values["inverse"], values["perm"].argsort(-1))
    assert torch.equal(values["perm"].gather(1, values["inverse"]), torch.arange(5).expand(3, 5))


def test_a_permutation_along_another_axis_and_in_int32(write_layer):
    spec = load_spec(
        write_layer(PERM.replace("dtype: int64, permutation: n", "dtype: int32, permutation: 0"), "")
    )
    perm = generate(make_case(spec))["perm"]
    assert perm.dtype == torch.int32
    assert torch.equal(perm.sort(0).values, torch.arange(3, dtype=torch.int32)[:, None].expand(3, 5))


def test_a_backward_that_needs_a_permutation_is_checked_on_one(gradcheck, write_layer):
    code = "def backward(grad_out, inverse):\n    return grad_out.gather(1, inverse)\n"
    ran = gradcheck("run", str(write_layer(PERM, code)), "--format", "json")
    assert ran.exit_code == 0, ran.stdout
    # the same backward on random indices (repeats, gaps) is rightly wrong: gather's
    # backward is a scatter-add, which a gather by the inverse only equals for a permutation
    random = PERM.replace("permutation: n", "low: 0, high: n")
    ran = gradcheck("run", str(write_layer(random, code)), "--format", "json")
    (result,) = json.loads(ran.stdout)["results"]
    assert ran.exit_code == 1 and result["checks"][0]["status"] == "mismatch"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "int64, permutation",
            "float, permutation",
            "layer.yaml:5: inputs.perm.permutation: a permutation is an int64",
        ),
        (
            "permutation: n",
            "permutation: n, high: n",
            "a permutation's values are 0..size-1: drop 'low' and 'high'",
        ),
        ("permutation: n", "permutation: m", "expected a dim of the shape or an axis number, got 'm'"),
        ("permutation: n", "permutation: 2", "axis 2 is not an axis of a 2-dim shape"),
        ("[b, n], dtype", "[n, n], dtype", "'n' is more than one axis of the shape: give the axis number"),
        (
            "perm.argsort",
            "later.argsort",
            "layer.yaml:6: inputs.inverse: 'later.argsort(-1)': unknown name 'later'",
        ),
    ],
)
def test_a_wrong_permutation_or_derived_input_is_a_spec_error_at_its_line(write_layer, old, new, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec(write_layer(PERM.replace(old, new), ""))


def test_reverse_sort_example_fails_on_random_indices_instead_of_a_permutation(gradcheck, tmp_path):
    folder = tmp_path / "functions"
    shutil.copytree(EXAMPLES / "functions", folder)
    spec = folder / "reverse_sort.yaml"
    text = spec.read_text()
    spec.write_text(text.replace("dtype: int64, permutation: seq", "dtype: int64, low: 0, high: seq"))
    ran = gradcheck("run", str(spec), "--format", "json")
    (result,) = json.loads(ran.stdout)["results"]
    statuses = {c["name"]: c["status"] for c in result["checks"]}
    assert statuses["out_vectors"] == "mismatch" and statuses["logits"] == "mismatch"


def test_a_derived_input_reads_only_the_tensors_above_it(write_layer):
    above = '  perm: {shape: [b, n], dtype: int64, permutation: n}\n  inverse: "perm.argsort(-1)"\n'
    below = '  inverse: "perm.argsort(-1)"\n  perm: {shape: [b, n], dtype: int64, permutation: n}\n'
    assert above in PERM
    with pytest.raises(SpecError, match=re.escape("inputs.inverse: 'perm.argsort(-1)': unknown name 'perm'")):
        load_spec(write_layer(PERM.replace(above, below), ""))


def test_a_derived_input_that_is_not_a_tensor_is_a_spec_error(gradcheck, write_layer):
    code = "def backward(grad_out, inverse):\n    return grad_out\n"
    ran = gradcheck("run", str(write_layer(PERM.replace('"perm.argsort(-1)"', '"perm.shape[0]"'), code)))
    assert ran.exit_code == 2
    assert "layer.yaml:6: inputs.inverse: 'perm.shape[0]' is a int, not a tensor" in ran.stdout


def test_an_input_written_as_a_string_that_reads_no_tensor_is_a_shape_without_brackets(write_layer):
    with pytest.raises(
        SpecError, match=re.escape("inputs.x: a shape is a list like [batch, in], got 'b, n'")
    ):
        load_spec(write_layer(PERM.replace("x: [b, n]", 'x: "b, n"'), ""))


def test_a_permutation_without_a_shape_is_one_permutation_of_its_dim(write_layer):
    spec = load_spec(
        write_layer(
            PERM.replace(
                "{shape: [b, n], dtype: int64, permutation: n}", "{dtype: int64, permutation: n}"
            ).replace("perm.argsort(-1)", "perm.argsort()"),
            "",
        )
    )
    values = generate(make_case(spec))
    assert torch.equal(values["perm"].sort().values, torch.arange(5))
