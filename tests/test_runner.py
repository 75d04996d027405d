"""The runner: seeded tensors, the reference under autograd, the hand-written side on copies."""

from __future__ import annotations

import pytest
import torch

from gradcheck_cli.catalogue import builtin_dir
from gradcheck_cli.runner import (
    TF32_NOTE,
    device_notes,
    generate,
    make_case,
    run_case,
    run_reference,
    sweep_cases,
)
from gradcheck_cli.spec import load_spec


def _case(name: str, **kwargs):
    return make_case(load_spec(builtin_dir() / f"{name}.yaml"), **kwargs)


def test_a_seed_gives_the_same_tensors_every_time_and_another_seed_others():
    first, again = generate(_case("linear", seed=7)), generate(_case("linear", seed=7))
    other = generate(_case("linear", seed=8))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["x"], other["x"])


def test_the_low_dtypes_see_the_same_values_rounded_and_float64_its_own_full_precision_ones():
    big = {"batch": 64, "in": 32, "out": 16}  # past torch's scalar sampler (under 16 elements)
    f32, f64 = generate(_case("linear", dims=big, dtype="float32")), generate(_case("linear", dims=big))
    for low in ("bfloat16", "float16"):
        rounded = generate(_case("linear", dims=big, dtype=low))
        assert torch.equal(f32["x"].to(rounded["x"].dtype), rounded["x"]), low
    assert f32["x"].dtype == torch.float32 and f64["x"].dtype == torch.float64
    assert not torch.equal(f64["x"].float().double(), f64["x"])  # not float32 numbers made wide


def test_integer_inputs_respect_low_and_high():
    values = generate(_case("cross_entropy", dims={"batch": 50, "classes": 3}))
    targ = values["targ"]
    assert targ.dtype == torch.int64 and int(targ.min()) >= 0 and int(targ.max()) < 3


def test_min_abs_keeps_values_away_from_the_kink():
    x = generate(_case("relu", dims={"batch": 40, "features": 30}))["x"]
    assert float(x.abs().min()) >= 0.05


def test_a_loss_gets_an_upstream_gradient_of_one():
    case = _case("mse")
    expected = run_reference(case, generate(case))
    assert expected.grad_outs["loss"].shape == () and float(expected.grad_outs["loss"]) == 1.0


def test_several_outputs_each_get_their_own_upstream_gradient():
    case = _case("lstm_cell")
    expected = run_reference(case, generate(case))
    assert set(expected.grad_outs) == {"h_next", "c_next"}
    assert not torch.equal(expected.grad_outs["h_next"], expected.grad_outs["c_next"])


def test_the_reference_gradient_is_autograds():
    case = _case("linear")
    values = generate(case)
    expected = run_reference(case, values)
    g = expected.grad_outs["out"]
    assert torch.allclose(expected.grads["x"], g @ values["weight"])
    assert torch.allclose(expected.grads["bias"], g.sum(0))


def test_run_case_reports_every_tensor_in_spec_order():
    result = run_case(_case("linear"))
    assert result.status == "pass"
    assert [(c.name, c.kind) for c in result.checks] == [
        ("out", "output"),
        ("x", "input"),
        ("weight", "param"),
        ("bias", "param"),
    ]


def test_a_cuda_result_says_tf32_was_off_and_a_cpu_one_says_nothing_of_it():
    assert device_notes("cuda") == device_notes("cuda:1") == [TF32_NOTE]
    assert device_notes("cpu") == []
    assert TF32_NOTE not in run_case(_case("linear")).notes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_tf32_is_off_while_the_case_runs_and_restored_after():
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        result = run_case(_case("linear", device="cuda"))
        assert result.status == "pass" and TF32_NOTE in result.notes
        assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def test_sweep_sizes_are_distinct_and_the_seeds_vary():
    cases = sweep_cases(_case("linear"))
    assert len(cases) >= 4
    for case in cases[1:3]:
        sizes = list(case.dims.values())
        assert len(set(sizes)) == len(sizes), case.dims
    assert len({c.seed for c in cases}) == len(cases)


NO_GRAD_USER_CODE = """
import torch
torch.set_grad_enabled(False)   # user code that switches autograd off for everyone


def lin(x, w, b):
    return x @ w + b


def lin_grad(grad_out, x, w, b):
    return grad_out @ w.T, x.T @ grad_out, grad_out.sum(0)
"""

LIN_SPEC = """
name: {name}
dims: {{n: 5, in: 3, out: 4}}
inputs: {{x: [n, in]}}
params: {{w: [in, out], b: [out]}}
reference: "{reference}"
implementation:
  file: {name}.py
  forward: "lin(x, w, b) -> out"
  backward: "lin_grad(grad_out, x, w, b) -> x, w, b"
"""


def test_user_code_switching_autograd_off_cannot_corrupt_the_reference(gradcheck, write_layer):
    first = write_layer(
        LIN_SPEC.format(name="nograd", reference="x @ w + b"), NO_GRAD_USER_CODE, name="nograd"
    )
    correct = NO_GRAD_USER_CODE.replace("torch.set_grad_enabled(False)", "")
    second = write_layer(LIN_SPEC.format(name="plain", reference="x @ w + b"), correct, name="plain")
    ran = gradcheck("run", str(first), str(second))
    assert ran.exit_code == 0, ran.stdout
    assert torch.is_grad_enabled()


def test_a_check_called_under_no_grad_still_differentiates_the_reference():
    with torch.no_grad():
        assert run_case(_case("linear")).status == "pass"


def test_a_reference_cut_from_the_graph_is_a_spec_error(gradcheck, write_layer):
    spec = write_layer(LIN_SPEC.format(name="cut", reference="(x @ w + b).detach()"), "", name="cut")
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2
    assert "does not depend on any checked tensor through autograd" in ran.stderr


CHANGING_REFERENCE = """
import torch


def lin(x, w, b):
    with torch.no_grad():
        w.clamp_(min=0.0)  # changes the tensor it is given, where autograd does not look
    return x @ w + b
"""


def test_a_reference_that_changes_a_checked_tensor_in_place_is_a_spec_error(gradcheck, write_layer):
    # The reference differentiates the drawn tensors themselves (no copy of each): one that
    # changes them would change what the checked code is handed, so it is stopped and named.
    spec = write_layer(
        LIN_SPEC.format(name="changing", reference="x @ w + b").replace(
            'reference: "x @ w + b"', 'reference: {file: ref.py, call: "lin(x, w, b)"}'
        ),
        NO_GRAD_USER_CODE.replace("torch.set_grad_enabled(False)", ""),
        name="changing",
    )
    (spec.parent / "ref.py").write_text(CHANGING_REFERENCE)
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2, ran.stdout
    assert "the reference changed w in place" in ran.stderr
