"""The diagnosis zoo: deliberately wrong backwards, and what gradcheck says about each.

Every spec in tests/zoo/ runs one everyday mistake (the code is in
tests/zoo/{functional,fastai,cs231n,classes,functions}.py, one file per
calling convention). For each, the test asserts the JSON ``diagnosis`` of the
check that must be flagged (None where no name fits: then the hint says how
the values relate to the expected ones), a key part of its ``hint``, and that
no other tensor is blamed. ``gradcheck run tests/zoo`` shows the whole zoo.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

import gradcheck_cli

ZOO = Path(__file__).resolve().parent / "zoo"
LAYER_SPECS = Path(__file__).resolve().parent.parent / "layer_specs"


@dataclass(frozen=True)
class Mistake:
    spec: str  # tests/zoo/{spec}.yaml
    tensor: str  # the check that must be flagged
    diagnosis: str | None
    hint: str  # a key part of the hint
    dtype: str = "float64"
    status: str = "mismatch"
    also: tuple[str, ...] = ()  # other checks that fail too (every other one passes)

    def __str__(self) -> str:
        return f"{self.spec}-{self.dtype}"


F32, F64 = "float32", "float64"
SHAPE, ERROR, MISSING = "shape_error", "error", "missing"

# fmt: off
MISTAKES = [
    # transposed: a shape error when the two dims differ, a value mismatch when they agree.
    Mistake("linear_weight_transposed", "weight", "transposed",
            "dim 0 (out=4) and dim 1 (in=3) swapped", F64, SHAPE),
    Mistake("linear_weight_transposed", "weight", "transposed",
            "[in=3, out=4] instead of [out=4, in=3]", F32, SHAPE),
    Mistake("linear_weight_transposed_square", "weight", "transposed",
            "the shapes agree only because out = in = 4", F32),
    Mistake("function_weight_transposed_square", "weight", "transposed", "the shapes agree only", F64),
    Mistake("affine_dw_transposed", "w", "transposed", "[M=4, D=3] instead of [D=3, M=4]", F64, SHAPE),
    Mistake("lin_grad_w_transposed", "w", "transposed", "dim 0 (in=3) and dim 1 (out=4) swapped", F32, SHAPE),
    Mistake("class_lin_w_transposed", "w", "transposed", "swap the matmul's operands", F64, SHAPE),
    # missing_reduction: the hint names the dim to sum.
    Mistake("linear_bias_not_summed", "bias", "missing_reduction", "sum over dim 0 (batch=5)", F64, SHAPE),
    Mistake("lin_grad_b_not_summed", "b", "missing_reduction", "(n=5), the dim b was broadcast", F32, SHAPE),
    Mistake("affine_db_not_summed", "b", "missing_reduction", "sum over dim 0 (N=5)", F32, SHAPE),
    # reshaped: keepdim, a column vector, flattened.
    Mistake("linear_bias_keepdim", "bias", "reshaped", "[1, out=4] instead of [out=4]", F64, SHAPE),
    Mistake("lin_grad_b_column", "b", "reshaped", "[out=4, 1] instead of [out=4]", F32, SHAPE),
    Mistake("linear_weight_flattened", "weight", "reshaped",
            "[12] instead of [out=4, in=3] (it was flattened)", F64, SHAPE),
    Mistake("affine_dx_flat", "x", "reshaped", "[15] instead of [N=5, D=3]", F32, SHAPE),
    Mistake("mse_grad_no_unsqueeze", "inp", "reshaped", "[n=5] instead of [n=5, 1]", F64, SHAPE),
    # scaled: c, and the dim whose size it matches.
    Mistake("mse_grad_no_mean", "inp", "scaled", "5 x the expected: a missing 1/n (n=5", F64),
    Mistake("mse_grad_no_two", "inp", "scaled", "1/2 x the expected: a missing factor 2", F32),
    Mistake("cross_entropy_sum_not_mean", "logits", "scaled",
            "5 x the expected: a missing 1/batch (batch=5", F32),
    Mistake("function_mse_no_mean", "inp", "scaled", "6 x the expected: a missing 1/n (n=6", F32),
    Mistake("mse_grad_no_mean_no_two", "inp", "scaled",
            "5/2 x the expected: a missing 1/n (n=5) and a missing factor 2", F64),
    Mistake("mse_all_elements_no_mean", "x", "scaled", "20 x the expected: a missing 1/(N*M) (N*M=20", F32),
    # sign_flipped, swapped, zero.
    Mistake("linear_x_sign_flipped", "x", "sign_flipped", "minus the expected one", F64),
    Mistake("linear_x_sign_flipped", "x", "sign_flipped", "minus the expected one", F32),
    Mistake("mul_swapped", "a", "swapped", "a holds the gradient of b", F64, also=("b",)),
    Mistake("mul_swapped", "b", "swapped", "b holds the gradient of a", F32, also=("a",)),
    Mistake("linear_return_order", "x", "swapped", "x holds the gradient of weight", F64, SHAPE, ("weight",)),
    Mistake("lin_grad_w_zero", "w", "zero", "w gradient is all zeros", F32),
    # nonfinite: says where, and what the input is there.
    Mistake("sigmoid_overflow", "x", "nonfinite", "2 of 12 elements are NaN, at [0, 0] (where x=940.1)", F64),
    Mistake("sigmoid_overflow", "x", "nonfinite", "are NaN, at [0, 0] (where x=940.1)", F32),
    # partial: the fraction, and the pattern when there is one.
    Mistake("relu_mask_forgotten", "x", "partial", "9 of 15 elements of x (60%) are wrong", F64),
    Mistake("relu_mask_forgotten", "x", "partial", "the wrong ones are exactly where x <= 0", F32),
    Mistake("relu_grad_no_mask", "x", "partial", "where x <= 0: a mask (like ReLU's) is missing", F32),
    Mistake("cs231n_relu_no_mask", "x", "partial", "exactly where x <= 0", F64),
    Mistake("class_relu_no_mask", "x", "partial", "exactly where x <= 0", F32),
    Mistake("class_lin_loop_from_one", "w", "partial", "exactly those with index 0 along dim 1 (out=4)", F64),
    Mistake("cross_entropy_no_one_hot", "logits", "partial", "exactly at the targ class of each row", F64),
    Mistake("cross_entropy_no_one_hot", "logits", "partial", "the -1 at the target is missing", F32),
    # forward_mismatch: on the output; the gradients computed from it are marked.
    Mistake("tanh_forward_typo", "out", "forward_mismatch", "not meaningful", F64, also=("x",)),
    # modified_input: the checked code changed what it was handed.
    Mistake("relu_inplace_forward", "x", "modified_input", "modified x in place", F64, ERROR),
    Mistake("relu_inplace_backward", "grad_out", "modified_input", "modified grad_out in place", F32, ERROR),
    # missing: no .g set, None returned.
    Mistake("lin_grad_b_forgotten", "b", "missing", "b.g", F64, MISSING),
    # Half precision: the same rules at float16/bfloat16 tolerances.
    Mistake("relu_mask_forgotten", "x", "partial", "exactly where x <= 0", "bfloat16"),
    Mistake("mse_grad_no_mean", "inp", "scaled", "5 x the expected: a missing 1/n (n=5", "float16"),
    Mistake("linear_weight_transposed_square", "weight", "transposed", "the shapes agree only", "bfloat16"),
    Mistake("linear_bias_none", "bias", "missing", "returned None for bias", F32, MISSING),
    Mistake("function_no_bias_grad", "bias", "missing", "returned None for bias", F64, MISSING),
    # cropped: smaller than expected, and right on the part it covers (cs231n conv backwards).
    Mistake("conv_stride_remainder", "x", "cropped",
            "[2, 2, 7, 7] instead of [N=2, C=2, H=8, W=8] and equals the expected one on the part it covers;"
            " missing: index 7 along dim 2 (H=8); index 7 along dim 3 (W=8)", F64, SHAPE),
    Mistake("conv_stride_remainder", "x", "cropped",
            "(out - 1) * stride + kernel, and the stride leaves a remainder", F32, SHAPE),
    Mistake("conv_stride_remainder_pad0", "x", "cropped",
            "The expected gradient there is 0 (no window reaches those elements, as when the stride leaves a"
            " remainder): pad the gradient with zeros back to [N=2, C=2, H=8, W=8]", F64, SHAPE),
    Mistake("conv_stride_remainder_pad0", "x", "cropped", "missing: index 7 along dim 2 (H=8)", F32, SHAPE),
    Mistake("conv_pad_zero_slice", "x", "cropped",
            "[2, 2, 0, 0] instead of [N=2, C=2, H=8, W=8]: dim 2 (H=8) and dim 3 (W=8) are empty",
            F64, SHAPE),
    Mistake("conv_pad_zero_slice", "x", "cropped", "the usual cause a [p:-p] slice with p = 0", F32, SHAPE),
    # overwritten: `=` where overlapping windows or repeated indices need `+=`.
    Mistake("max_pool_overlap_assign", "x", "overwritten",
            "each receives several contributions in the forward (overlapping windows) and holds the last of"
            " them, not their sum: `=` where `+=` is needed", F64),
    Mistake("max_pool_overlap_assign", "x", "overwritten", "(overlapping windows)", F32),
    Mistake("embedding_repeated_assign", "weight", "overwritten",
            "several contributions in the forward (an index repeated in indices)", F64),
    Mistake("embedding_repeated_assign", "weight", "overwritten", "`=` where `+=` is needed", F32),
    # blocks_swapped: gates, heads concatenated in another order than the forward splits them.
    Mistake("lstm_gates_reordered", "w_ih", "blocks_swapped",
            "the 4 blocks of hidden=4 along dim 0 (4*hidden=16) blocks 0 and 1 swapped (order 1, 0, 2, 3);"
            " gates i, f, g, o came back as f, i, g, o", F64, also=("x", "h", "w_hh", "b_ih", "b_hh")),
    Mistake("lstm_gates_reordered", "b_hh", "blocks_swapped", "gates i, f, g, o came back as f, i, g, o",
            F32, also=("x", "h", "w_ih", "w_hh", "b_ih")),
    Mistake("gru_gates_reordered", "w_hh", "blocks_swapped",
            "the 3 blocks of hidden=4 along dim 0 (3*hidden=12) blocks 0 and 1 swapped (order 1, 0, 2);"
            " gates r, z, n came back as z, r, n", F64, also=("x", "h", "w_ih", "b_ih", "b_hh")),
    Mistake("gru_gates_reordered", "w_ih", "blocks_swapped", "gates r, z, n came back as z, r, n",
            F32, also=("x", "h", "w_hh", "b_ih", "b_hh")),
    Mistake("attention_heads_reversed", "wq", "blocks_swapped",
            "the heads=3 blocks of head_dim=2 along dim 0 (heads*head_dim=6) blocks 0 and 2 swapped"
            " (order 2, 1, 0)", F64, also=("x", "wk", "wv")),
    Mistake("attention_heads_reversed", "wv", "blocks_swapped", "blocks 0 and 2 swapped (order 2, 1, 0)",
            F32, also=("x", "wq", "wk")),
    # partial, stated as ranges and blocks, and following the upstream gradient.
    Mistake("lstm_no_sigmoid_derivative", "w_ih", "partial",
            "exactly those with indices 0–7 of 16 along dim 0 (4*hidden=16): blocks 0 and 1 of the 4 blocks"
            " of hidden=4", F64, also=("x", "h", "w_hh", "b_ih", "b_hh")),
    Mistake("lstm_no_sigmoid_derivative", "b_ih", "partial",
            "exactly those at indices 0–7 of 16: blocks 0 and 1 of the 4 blocks of hidden=4",
            F32, also=("x", "h", "w_ih", "w_hh", "b_hh")),
    Mistake("lower_bound_surrogate", "x", "partial",
            "the wrong ones are exactly where x < bound (0.1) and grad_out <= 0: a surrogate gradient that"
            " depends on the upstream gradient", F64),
    Mistake("lower_bound_surrogate", "x", "partial", "exactly where x < bound (0.1) and grad_out <= 0", F32),
    Mistake("clipped_ste", "x", "partial", "the wrong ones are exactly where |grad_out| > 1", F64),
    Mistake("clipped_ste", "x", "partial", "exactly where |grad_out| > 1: the upstream gradient is large",
            F32),
    # null: no name fits; the hint says how the values relate to the expected ones.
    Mistake("rnn_tanh_derivative", "b_ih", None,
            "correlation 0.97 with the expected gradient, best-fit scale 2.09: a term is missing or an extra"
            " factor", F64, also=("x", "h", "w_ih", "w_hh", "b_hh")),
    Mistake("rnn_tanh_derivative", "w_ih", None,
            "correlation 0.38 with the expected gradient, best-fit scale 0.951: the formula differs, not a"
            " slip", F32, also=("x", "h", "w_hh", "b_ih", "b_hh")),
    Mistake("softmax_no_sum_term", "x", None,
            "correlation 0.80 with the expected gradient, best-fit scale 1.49: the formula differs", F64),
    Mistake("softmax_no_sum_term", "x", None, "correlation 0.94 with the expected gradient", F32),
]
# fmt: on

CORRECT = [
    "linear_correct", "lin_grad_correct", "affine_correct", "class_lin_correct", "function_correct",
    # the correct versions of the layers the round-2 mistakes are made in
    "conv_correct", "conv_pad_zero_correct", "lstm_correct", "gru_correct", "attention_correct",
    "lower_bound_correct", "max_pool_overlap_correct", "embedding_correct", "rnn_correct",
]  # fmt: skip


def run_json(gradcheck: Any, *args: str) -> dict[str, Any]:
    ran = gradcheck("run", *args, "--format", "json")
    assert ran.exit_code in (0, 1), ran.stderr
    report: dict[str, Any] = json.loads(ran.stdout)
    report["exit_code"] = ran.exit_code
    return report


def zoo(name: str) -> str:
    return str(ZOO / f"{name}.yaml")


def checks_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in result["checks"]}


def test_the_zoo_is_big_enough_and_covers_every_convention_and_the_whole_vocabulary() -> None:
    specs = {m.spec for m in MISTAKES}
    assert len(specs) >= 25
    assert all((ZOO / f"{s}.yaml").is_file() for s in specs | set(CORRECT))
    files = {re.search(r"file: (\S+)", (ZOO / f"{s}.yaml").read_text()).group(1) for s in specs}  # type: ignore[union-attr]
    assert files == {"functional.py", "fastai.py", "cs231n.py", "classes.py", "functions.py"}
    assert {m.dtype for m in MISTAKES} >= {F32, F64}
    vocabulary = {
        "transposed", "missing_reduction", "reshaped", "scaled", "sign_flipped", "swapped", "zero",
        "nonfinite", "partial", "forward_mismatch", "modified_input", "missing",
        "cropped", "overwritten", "blocks_swapped",
    }  # fmt: skip
    assert {m.diagnosis for m in MISTAKES} - {None} == vocabulary
    # Every mistake of round 2 is checked in float64 and in float32.
    for diagnosis in ("cropped", "overwritten", "blocks_swapped", None):
        assert {m.dtype for m in MISTAKES if m.diagnosis == diagnosis} == {F64, F32}


@pytest.mark.parametrize("mistake", MISTAKES, ids=str)
def test_each_mistake_is_diagnosed_and_nothing_else_is_blamed(gradcheck: Any, mistake: Mistake) -> None:
    report = run_json(gradcheck, zoo(mistake.spec), "--dtype", mistake.dtype)

    assert report["exit_code"] == 1
    (result,) = report["results"]
    assert result["status"] == "fail"
    assert result["dtype"] == mistake.dtype
    checks = checks_of(result)
    flagged = checks[mistake.tensor]
    assert flagged["status"] == mistake.status
    assert flagged["diagnosis"] == mistake.diagnosis
    assert mistake.hint in flagged["hint"]
    if mistake.diagnosis is None:
        assert flagged["hint"].startswith("no known mistake explains these values")
    failing = {name for name, c in checks.items() if c["status"] != "pass"}
    assert failing == {mistake.tensor, *mistake.also}


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("spec", CORRECT)
def test_a_correct_backward_in_each_convention_passes_with_no_diagnosis(
    gradcheck: Any, spec: str, dtype: str
) -> None:
    report = run_json(gradcheck, zoo(spec), "--dtype", dtype)

    assert report["exit_code"] == 0
    (result,) = report["results"]
    assert result["status"] == "pass"
    for check in result["checks"]:
        assert (check["status"], check["diagnosis"], check["hint"]) == ("pass", None, None)
        assert check["worst_index"] is None
    table = gradcheck("run", zoo(spec), "--dtype", dtype).stdout
    assert "note:" not in table  # quiet when all is well (square dims, even)


@pytest.mark.parametrize("dtype", [F64, F32])
def test_no_builtin_layer_gets_a_diagnosis(gradcheck: Any, dtype: str) -> None:
    # 27 correct backwards (convolutions, attention, norms, losses...): a diagnosis
    # never turns one of them into a failure, in either dtype.
    report = run_json(gradcheck, str(LAYER_SPECS), "--dtype", dtype)

    assert report["exit_code"] == 0
    assert report["summary"]["failed"] == report["summary"]["errors"] == 0
    assert [c for r in report["results"] for c in r["checks"] if c["diagnosis"] is not None] == []


# -- null: say so, never guess ---------------------------------------------------------


def test_random_numbers_get_no_diagnosis_and_the_hint_says_nothing_fits(gradcheck: Any) -> None:
    # At half precision a random number lands within tolerance now and then: still no guess.
    for dtype in (F64, F32, "float16", "bfloat16"):
        report = run_json(gradcheck, zoo("linear_noise"), "--dtype", dtype)
        weight = checks_of(report["results"][0])["weight"]

        assert weight["status"] == "mismatch"
        assert weight["diagnosis"] is None
        assert weight["hint"].startswith("no known mistake explains these values")


def test_a_wrong_shape_nothing_explains_gets_no_diagnosis_and_shows_both_shapes(gradcheck: Any) -> None:
    report = run_json(gradcheck, zoo("linear_noise_shape"))
    bias = checks_of(report["results"][0])["bias"]

    assert bias["status"] == "shape_error"
    assert bias["diagnosis"] is None
    assert bias["hint"] == (
        "shape [in=3] where [out=4] is expected; no known mistake explains the values"
        " (not a transpose, a missing sum, a reshape, a crop or a swap)"
    )


def test_when_the_expected_gradient_is_all_zeros_the_null_hint_says_so() -> None:
    # out = x * ones_like(y) does not depend on y's values: its gradient is zero.
    report = gradcheck_cli.check(
        reference=lambda x, y: x * torch.ones_like(y),
        backward=lambda grad_out, x, y: (grad_out, x * grad_out),  # as if out were x * y
        shapes={"x": (5, 3), "y": (5, 3)},
    )
    y = report["y"]

    assert (y.status, y.diagnosis) == ("mismatch", None)
    assert y.hint is not None and y.hint.endswith(
        "the expected gradient is all zeros: the output does not depend on y"
    )


def test_the_table_shows_no_diagnosis_label_when_nothing_fits(gradcheck: Any) -> None:
    ran = gradcheck("run", zoo("linear_noise"))

    assert ran.exit_code == 1
    assert "weight: no known mistake explains these values" in ran.stdout
    assert "weight: [" not in ran.stdout


# -- the table ---------------------------------------------------------------------------


def row_of(table: str, tensor: str) -> str:
    (line,) = [line for line in table.splitlines() if line.split()[:1] == [tensor] and "  " in line.strip()]
    return line


def test_the_table_shows_the_diagnosis_and_its_hint(gradcheck: Any) -> None:
    ran = gradcheck("run", zoo("linear_bias_not_summed"))

    assert ran.exit_code == 1
    assert (
        "bias: [missing_reduction] bias gradient has shape [batch=5, out=4] instead of [out=4]:" in ran.stdout
    )
    assert "sum over dim 0 (batch=5)" in ran.stdout


def test_a_shape_error_row_shows_expected_and_actual_shapes_with_dim_names(gradcheck: Any) -> None:
    ran = gradcheck("run", zoo("linear_bias_not_summed"))

    assert re.search(
        r"bias\s+param\s+\[out=4\]\s+\[batch=5, out=4\]\s+.*shape_error", row_of(ran.stdout, "bias")
    )
    ran = gradcheck("run", zoo("lin_grad_w_transposed"))
    assert re.search(
        r"w\s+param\s+\[in=3, out=4\]\s+\[out=4, in=3\]\s+.*shape_error", row_of(ran.stdout, "w")
    )


def test_every_mismatching_tensor_of_a_result_is_reported(gradcheck: Any) -> None:
    ran = gradcheck("run", zoo("linear_two_bugs"))
    assert ran.exit_code == 1
    assert "weight: [transposed]" in ran.stdout
    assert "bias: [missing_reduction]" in ran.stdout

    checks = checks_of(run_json(gradcheck, zoo("linear_two_bugs"))["results"][0])
    assert (checks["weight"]["diagnosis"], checks["bias"]["diagnosis"]) == ("transposed", "missing_reduction")
    assert (checks["x"]["status"], checks["out"]["status"]) == ("pass", "pass")


def test_gradients_computed_from_a_wrong_forward_are_marked_not_meaningful(gradcheck: Any) -> None:
    checks = checks_of(run_json(gradcheck, zoo("tanh_forward_typo"))["results"][0])

    assert checks["out"]["kind"] == "output"
    assert "the gradients below are computed from it" in checks["out"]["hint"]
    assert checks["x"]["status"] == "mismatch"
    assert checks["x"]["hint"].endswith("(forward differs: not meaningful)")


# -- the worst element ---------------------------------------------------------------------


def test_a_failing_check_names_its_worst_element_in_json(gradcheck: Any) -> None:
    checks = checks_of(run_json(gradcheck, zoo("linear_x_sign_flipped"))["results"][0])
    x = checks["x"]

    row, col = x["worst_index"]
    assert 0 <= row < 5 and 0 <= col < 3
    assert x["actual_value"] == pytest.approx(-x["expected_value"])
    assert abs(x["expected_value"]) == pytest.approx(x["max_abs_err"] / 2)
    for passing in ("out", "weight", "bias"):
        assert checks[passing]["worst_index"] is None
        assert checks[passing]["expected_value"] is None and checks[passing]["actual_value"] is None


def test_the_worst_element_of_a_forgotten_relu_mask_is_one_that_should_be_zero(gradcheck: Any) -> None:
    x = checks_of(run_json(gradcheck, zoo("relu_mask_forgotten"))["results"][0])["x"]

    assert x["expected_value"] == 0.0
    assert x["actual_value"] != 0.0
    assert abs(x["actual_value"]) == pytest.approx(x["max_abs_err"])


def test_the_table_shows_the_worst_element_on_failing_rows_only(gradcheck: Any) -> None:
    ran = gradcheck("run", zoo("linear_x_sign_flipped"))

    worst = [line.strip() for line in ran.stdout.splitlines() if "worst element" in line]
    assert len(worst) == 1
    assert re.fullmatch(r"x: worst element \[\d+, \d+\]: expected (-?[\d.]+), got (-?[\d.]+)", worst[0])
    got, expected = re.findall(r"(?:expected|got) (-?[\d.]+)", worst[0])[::-1]
    assert float(got) == pytest.approx(-float(expected))


def test_verbose_adds_expected_beside_got_around_the_worst_element(gradcheck: Any) -> None:
    plain = gradcheck("run", zoo("relu_mask_forgotten"))
    verbose = gradcheck("run", zoo("relu_mask_forgotten"), "--verbose")

    assert "|" not in plain.stdout
    lines = verbose.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "worst element" in line)
    header, *rows = lines[start + 1 : start + 4]
    assert header.split() == ["expected", "|", "got"]
    marked = [r for r in rows if "<" in r]
    assert len(marked) == 1
    left, right = marked[0].split("|")
    assert left.strip().startswith("[0, 0:3]")
    assert re.search(r"\b0<", left) and re.search(r"-2\.63<", right)


# -- a transpose the shapes cannot show -----------------------------------------------------


BLIND_SPOT = (
    "weight is [out=4, in=4]: a transposed gradient has the right shape here,"
    " so shapes alone cannot catch a transpose"
)


def test_square_dims_get_a_note_on_a_failure_or_with_verbose_that_shapes_cannot_catch_a_transpose(
    gradcheck: Any,
) -> None:
    square = gradcheck("linear", "--in", "4", "--out", "4")
    assert square.exit_code == 0
    assert "note:" not in square.stdout  # a pass is quiet about it...
    verbose = gradcheck("linear", "--in", "4", "--out", "4", "--verbose")
    assert f"note: {BLIND_SPOT}" in verbose.stdout  # ...unless asked
    failing = gradcheck("run", str(ZOO / "linear_weight_transposed_square.yaml"))
    assert failing.exit_code == 1 and "note: weight is [out=4, in=4]: a transposed gradient" in failing.stdout

    ran = gradcheck("linear", "--in", "4", "--out", "4", "--format", "json")
    (result,) = json.loads(ran.stdout)["results"]
    assert any(BLIND_SPOT in note for note in result["notes"])

    distinct = gradcheck("linear", "--in", "3", "--out", "4")
    assert "note:" not in distinct.stdout


def test_the_same_transpose_is_a_shape_error_at_3x4_and_a_value_mismatch_at_4x4() -> None:
    spec = ZOO / "linear_weight_transposed.yaml"
    at_3x4 = gradcheck_cli.check(spec)["weight"]
    at_4x4_report = gradcheck_cli.check(spec, **{"in": 4, "out": 4})
    at_4x4 = at_4x4_report["weight"]

    assert (at_3x4.status, at_3x4.diagnosis) == ("shape_error", "transposed")
    assert (at_4x4.status, at_4x4.diagnosis) == ("mismatch", "transposed")
    assert at_4x4.mismatched == 12  # the diagonal of a transpose is right
    assert any(BLIND_SPOT in note for note in at_4x4_report.results[0].notes)


# -- --sweep -----------------------------------------------------------------------------------


def test_a_bug_hidden_at_the_specs_own_sizes_passes_without_sweep(gradcheck: Any) -> None:
    # mean_sq_wrong_dim divides by features where batch belongs: batch == features == 4 hides it.
    ran = gradcheck("run", zoo("mean_sq_wrong_dim"))

    assert ran.exit_code == 0


def test_sweep_finds_the_hidden_bug_and_reports_the_worst_case(gradcheck: Any) -> None:
    report = run_json(gradcheck, zoo("mean_sq_wrong_dim"), "--sweep")

    assert report["exit_code"] == 1
    (result,) = report["results"]
    assert result["dims"]["batch"] != result["dims"]["features"]
    x = checks_of(result)["x"]
    batch, features = result["dims"]["batch"], result["dims"]["features"]
    assert x["diagnosis"] == "scaled"
    assert f"divided by features={features} where batch={batch} belongs" in x["hint"]
    # Every case run is listed; the one reported is the worst of the failing ones.
    cases = result["sweep"]
    assert {"dims": {"batch": 4, "features": 4}, "seed": 0, "status": "pass", "failing": []} in cases
    failing = [c for c in cases if c["status"] == "fail"]
    assert failing and all(c["failing"] == ["x"] for c in failing)
    assert {"dims": result["dims"], "seed": result["seed"], "status": "fail", "failing": ["x"]} in failing
    worst = max(abs(1 - c["dims"]["batch"] / c["dims"]["features"]) for c in failing)
    assert x["max_rel_err"] == pytest.approx(worst)


def test_sweep_is_summarised_under_the_table(gradcheck: Any) -> None:
    ran = gradcheck("run", zoo("mean_sq_wrong_dim"), "--sweep")

    assert ran.exit_code == 1
    assert re.search(
        r"sweep: \d+ cases, \d+ not passing; worst shown \(batch=\d+ features=\d+ seed=\d+: fail", ran.stdout
    )


def test_a_factor_two_dims_could_explain_names_both_and_picks_neither() -> None:
    report = gradcheck_cli.check(ZOO / "cross_entropy_sum_not_mean.yaml", batch=4, classes=4)
    logits = report["logits"]

    assert logits.diagnosis == "scaled"
    assert logits.hint == (
        "logits gradient is 4 x the expected:"
        " a missing 1/4 (batch=classes=4: the mean over batch or classes?)"
    )


# -- the README's three mistakes ---------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "mistakes"


@pytest.mark.parametrize(
    ("spec", "tensor", "diagnosis", "hint"),
    [
        ("transposed_weight", "w", "transposed", "(shape [out=4, in=3] instead of [in=3, out=4])"),
        ("bias_not_summed", "bias", "missing_reduction", "sum over dim 0 (batch=5)"),
        ("relu_mask", "x", "partial", "the wrong ones are exactly where x <= 0"),
    ],
)
def test_the_readme_mistakes_say_what_the_readme_shows(
    gradcheck: Any, spec: str, tensor: str, diagnosis: str, hint: str
) -> None:
    ran = gradcheck("run", str(EXAMPLES / f"{spec}.yaml"))

    assert ran.exit_code == 1
    assert f"{tensor}: [{diagnosis}] " in ran.stdout
    assert hint in ran.stdout


def test_a_few_elements_just_outside_tolerance_are_not_called_scaled(gradcheck, write_layer):
    spec = write_layer(
        """
        name: near
        dims: {n: 5, in: 3, out: 4}
        inputs: {x: [n, in]}
        params: {w: [in, out], b: [out]}
        reference: "x @ w + b"
        implementation:
          file: near.py
          backward: "lin_grad(grad_out, x, w, b) -> x, w, b"
        """,
        """
        def lin_grad(g, x, w, b):
            gb = g.sum(0)
            gb[0] += 2e-6  # one element a hair off: no "1 x the expected"
            return g @ w.T, x.T @ g, gb
        """,
        name="near",
    )
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 1
    assert "[scaled]" not in ran.stdout and "1 x the expected" not in ran.stdout
    worst = next(line for line in ran.stdout.splitlines() if "worst element" in line)
    expected, got = worst.split("expected ")[1].split(", got ")
    assert expected != got  # enough digits to see the difference


def test_a_factor_with_two_readings_names_both_and_chooses_neither(gradcheck, write_layer):
    spec = write_layer(
        """
        name: doubled
        dims: {n: 5, in: 3, out: 2}
        inputs: {x: [n, in]}
        params: {w: [in, out], b: [out]}
        reference: "x @ w + b"
        implementation:
          file: doubled.py
          backward: "lin_grad(grad_out, x, w, b) -> x, w, b"
        """,
        """
        def lin_grad(g, x, w, b):
            return g @ w.T, 2 * (x.T @ g), g.sum(0)  # w's gradient doubled, and out is 2
        """,
        name="doubled",
    )
    ran = gradcheck("run", str(spec), "--format", "json")
    w = {c["name"]: c for c in json.loads(ran.stdout)["results"][0]["checks"]}["w"]
    assert w["diagnosis"] == "scaled"
    assert "2 x the expected" in w["hint"]
    assert "out=2" in w["hint"] and "a factor 2 too many" in w["hint"]


# -- round 2: what the new rules say beyond the zoo's one-liners ----------------------------------


def test_gates_in_another_order_are_named_on_every_stacked_param_and_the_mixed_ones_get_numbers(
    gradcheck: Any,
) -> None:
    checks = checks_of(run_json(gradcheck, zoo("lstm_gates_reordered"))["results"][0])

    for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
        assert checks[name]["diagnosis"] == "blocks_swapped"
        assert "gates i, f, g, o came back as f, i, g, o" in checks[name]["hint"]
    # x and h mix the gates through the weights: no block order explains them, and nothing is guessed.
    for name in ("x", "h"):
        assert checks[name]["diagnosis"] is None
        assert re.search(
            r"correlation -?\d\.\d\d with the expected gradient, best-fit scale", checks[name]["hint"]
        )
    assert checks["c"]["status"] == "pass"


def test_a_pattern_searched_on_a_sample_of_a_big_tensor_is_confirmed_on_all_of_it() -> None:
    # 90,000 elements: the mask search looks at a sample; "exactly" is checked on every element.
    report = gradcheck_cli.check(
        reference=lambda x: torch.relu(x),
        backward=lambda grad_out, x: grad_out.clone(),  # the (x > 0) mask forgotten
        shapes={"x": (300, 300)},
    )
    x = report["x"]

    assert x.diagnosis == "partial"
    assert x.hint is not None and "the wrong ones are exactly where x <= 0" in x.hint
    assert "sample" not in x.hint


def embedding_check(vocab: int, dim: int, tokens: int, backward: Any) -> gradcheck_cli.Report:
    return gradcheck_cli.check(
        reference=lambda indices, weight: torch.nn.functional.embedding(indices, weight),
        backward=backward,
        shapes={"indices": {"shape": [tokens], "dtype": "int64", "low": 0, "high": vocab}},
        params={"weight": (vocab, dim)},
    )


def assign_rows(grad_out: torch.Tensor, indices: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    grad = torch.zeros_like(weight)
    grad[indices] = grad_out  # `=`: a repeated index keeps one row
    return grad


def test_on_a_big_tensor_overwritten_says_how_many_wrong_elements_it_was_judged_on() -> None:
    weight = embedding_check(1000, 64, 4000, assign_rows)["weight"]

    assert weight.diagnosis == "overwritten"
    found = re.search(r"\(checked on (\d+) of the (\d+) wrong elements\)", weight.hint or "")
    assert found is not None
    checked, wrong = map(int, found.groups())
    assert 3 <= checked < wrong == weight.mismatched


def test_a_correct_embedding_with_repeated_indices_passes() -> None:
    def add_rows(grad_out: torch.Tensor, indices: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(weight).index_add_(0, indices, grad_out)

    report = embedding_check(1000, 64, 4000, add_rows)
    assert report.ok
    assert report["weight"].diagnosis is None


def test_without_the_reference_in_its_context_the_same_rows_are_reported_as_partial() -> None:
    # A Context built the old way (no grad_outs, no reference): the contributions cannot be seen.
    from gradcheck_cli import diagnose
    from gradcheck_cli.compare import compare
    from gradcheck_cli.runner import generate, make_case, run_reference
    from gradcheck_cli.spec import load_spec

    case = make_case(load_spec(ZOO / "embedding_repeated_assign.yaml"))
    values = generate(case)
    expected = run_reference(case, values)
    rows = expected.grad_outs["out"].reshape(-1, case.dims["dim"])
    actual = assign_rows(rows, values["indices"].reshape(-1), values["weight"])
    want = expected.grads["weight"]
    context = diagnose.Context(
        case.spec, case.dims, case.spec.tensors["weight"], case.tolerance, expected.grads, values
    )
    assert compare("weight", "param", want, actual, case.tolerance).status == "mismatch"
    diagnosis, hint = diagnose.explain(want, actual, context)

    assert diagnosis == "partial"
    assert "exactly those with indices" in hint
    assert "along dim 0 (vocab=7)" in hint


class Lookup(torch.autograd.Function):
    """weight[indices], with a forward-mode formula and a backward that is not differentiable."""

    @staticmethod
    def forward(weight: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return weight[indices]

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        weight, indices = inputs
        ctx.save_for_backward(indices)
        ctx.indices, ctx.rows = indices, weight.shape[0]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> Any:  # type: ignore[override]
        (indices,) = ctx.saved_tensors
        return grad.new_zeros((ctx.rows, grad.shape[-1])).index_add_(0, indices, grad), None

    @staticmethod
    def jvp(ctx: Any, t_weight: torch.Tensor, t_indices: Any) -> torch.Tensor:  # type: ignore[override]
        return t_weight[ctx.indices]


def test_a_reference_without_a_double_backward_gets_its_contributions_in_forward_mode() -> None:
    # once_differentiable hands back an empty second derivative without an error: the terms
    # then do not add up to the expected gradient, and forward mode is asked instead.
    report = gradcheck_cli.check(
        reference=lambda indices, weight: Lookup.apply(weight, indices),
        backward=assign_rows,
        shapes={"indices": {"shape": [12], "dtype": "int64", "low": 0, "high": 7}},
        params={"weight": (7, 5)},
    )
    weight = report["weight"]

    assert weight.diagnosis == "overwritten"
    assert weight.hint is not None and "holds the last of them, not their sum" in weight.hint


def test_when_nothing_fits_a_big_tensor_its_concentration_is_estimated_on_a_sample() -> None:
    noise = 10 * torch.randn(200, 200, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    report = gradcheck_cli.check(
        reference=lambda x, w: x @ w,
        backward=lambda grad_out, x, w: (grad_out @ w.T, x.T @ grad_out + noise),
        shapes={"x": (5, 200), "w": (200, 200)},
    )
    w = report["w"]

    assert w.diagnosis is None
    assert w.hint is not None and w.hint.startswith("no known mistake explains these values")
    assert re.search(
        r"error spread over all elements \(90% of it in \d+% of them\) \(estimated on a sample", w.hint
    )
    assert "correlation" in w.hint and "the formula differs, not a slip" in w.hint


def test_a_slip_at_a_few_positions_is_told_apart_from_a_wrong_formula() -> None:
    # Every element a little off (an extra factor 1.001) and three far off: none is right, so not partial.
    def backward(grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> Any:
        gw = x.T @ grad_out * 1.001
        gw[0, :3] += 10.0
        return grad_out @ w.T, gw

    report = gradcheck_cli.check(
        reference=lambda x, w: x @ w, backward=backward, shapes={"x": (5, 40), "w": (40, 30)}
    )
    w = report["w"]

    assert w.diagnosis is None
    assert w.hint is not None and "90% of the error in 3 of 1200 elements" in w.hint
    assert "a slip at a few positions (an index, a boundary, a loop bound), not the formula" in w.hint
