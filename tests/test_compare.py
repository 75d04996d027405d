"""Comparing one tensor: tolerances per dtype, the worst element, the --verbose excerpt."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

from gradcheck_cli.compare import (
    Judge,
    NotATensor,
    Tolerance,
    all_close,
    as_tensor,
    compare,
    excerpt,
    judge,
    tolerance_for,
)
from gradcheck_cli.result import Check
from gradcheck_cli.tolerance import decide_tolerance

TOL = tolerance_for("float64")


def test_tolerances_scale_with_the_dtype_and_can_be_overridden() -> None:
    f64, f32 = tolerance_for("float64"), tolerance_for("float32")
    assert f64.atol < f32.atol < tolerance_for("float16").atol < tolerance_for("bfloat16").atol
    assert f64.rtol < f32.rtol
    assert tolerance_for("float32", atol=0.5) == Tolerance(0.5, f32.rtol)
    assert tolerance_for("float32", rtol=0.0) == Tolerance(f32.atol, 0.0)


def test_float32_summation_noise_passes_at_float32_tolerance_but_not_at_float64s() -> None:
    # A hand-written float32 backward sums in another order than autograd: a few ulps off.
    expected = torch.randn(50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    noisy = (expected * (1 + 3e-6)).to(torch.float32)

    assert compare("x", "input", expected, noisy, tolerance_for("float32")).status == "pass"
    assert compare("x", "input", expected, noisy, tolerance_for("float64")).status == "mismatch"


def test_allclose_is_elementwise_atol_plus_rtol_times_expected() -> None:
    tol = Tolerance(atol=0.1, rtol=0.1)
    expected = torch.tensor([0.0, 10.0, 10.0])
    actual = torch.tensor([0.1, 11.1, 11.0])
    assert tol.allclose(actual, expected).tolist() == [True, False, True]


def test_nan_is_never_close_and_an_infinity_only_to_the_same_infinity() -> None:
    inf, nan = float("inf"), float("nan")
    expected = torch.tensor([inf, inf, 1.0, nan, -inf])
    actual = torch.tensor([5.0, inf, inf, nan, inf])
    # A finite value is not "within rtol * inf" of an infinity.
    assert Tolerance(1e-7, 1e-7).allclose(actual, expected).tolist() == [False, True, False, False, False]


def test_a_passing_compare_has_no_worst_element() -> None:
    t = torch.randn(3, 4, dtype=torch.float64)
    check = compare("w", "param", t, t.clone(), TOL)

    assert (check.status, check.mismatched, check.numel) == ("pass", 0, 12)
    assert check.max_abs_err == 0.0
    assert check.worst_index is None and check.expected_value is None and check.actual_value is None


def test_a_mismatch_names_the_element_furthest_outside_the_tolerance() -> None:
    expected = torch.zeros(3, 4, dtype=torch.float64)
    actual = expected.clone()
    actual[0, 1] = 0.5
    actual[2, 3] = -2.0
    check = compare("w", "param", expected, actual, TOL)

    assert (check.status, check.mismatched) == ("mismatch", 2)
    assert check.worst_index == [2, 3]
    assert (check.expected_value, check.actual_value) == (0.0, -2.0)
    assert check.max_abs_err == 2.0


def test_the_worst_element_is_measured_against_the_tolerance_not_the_raw_error() -> None:
    # 1.0 off on an element of 1000 is within rtol=1e-2; 0.5 off on an element of 1 is not.
    tol = Tolerance(atol=0.0, rtol=1e-2)
    expected = torch.tensor([1000.0, 1.0], dtype=torch.float64)
    actual = torch.tensor([1001.0, 1.5], dtype=torch.float64)
    check = compare("x", "input", expected, actual, tol)

    assert check.mismatched == 1
    assert check.worst_index == [1]
    assert check.max_abs_err == 1.0  # the largest raw error is still reported


def test_a_nan_is_the_worst_element_and_keeps_the_error_columns_finite() -> None:
    expected = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    actual = torch.tensor([[1.5, 2.0], [float("nan"), 4.0]], dtype=torch.float64)
    check = compare("x", "input", expected, actual, TOL)

    assert check.mismatched == 2
    assert check.worst_index == [1, 0]
    assert check.expected_value == 3.0 and np.isnan(check.actual_value)  # type: ignore[arg-type]
    assert check.max_abs_err == 0.5


def test_matching_infinities_are_not_picked_as_the_worst_element() -> None:
    inf = float("inf")
    expected = torch.tensor([inf, 1.0, 2.0], dtype=torch.float64)
    actual = torch.tensor([inf, 1.0, 2.5], dtype=torch.float64)
    check = compare("x", "input", expected, actual, TOL)

    assert check.mismatched == 1
    assert check.worst_index == [2]


def test_a_0d_mismatch_has_an_empty_worst_index() -> None:
    check = compare("loss", "output", torch.tensor(1.0), torch.tensor(2.0), TOL)

    assert check.worst_index == []
    assert (check.expected_value, check.actual_value) == (1.0, 2.0)


def test_a_shape_error_compares_no_values() -> None:
    check = compare("b", "param", torch.zeros(4), torch.zeros(5, 4), TOL, ["out"], ["batch", "out"])

    assert check.status == "shape_error"
    assert (check.expected_shape, check.actual_shape) == ([4], [5, 4])
    assert check.shapes_text() == ("[out=4]", "[batch=5, out=4]")
    assert check.mismatched is None and check.worst_index is None


def test_values_are_compared_in_float64_whatever_the_dtypes() -> None:
    expected = torch.tensor([1.0, 2.0], dtype=torch.float32)
    actual = np.array([1.0, 2.0], dtype=np.float64)
    assert compare("x", "input", expected, as_tensor(actual), tolerance_for("float32")).status == "pass"


def test_as_tensor_takes_tensors_numpy_arrays_and_numbers_only() -> None:
    array = np.arange(3.0)
    converted = as_tensor(array)
    array[0] = 99.0  # a copy: later changes to the array do not leak in
    assert converted.tolist() == [0.0, 1.0, 2.0]
    assert as_tensor(2.5).item() == 2.5
    assert as_tensor(torch.ones(2, requires_grad=True)).requires_grad is False
    with pytest.raises(NotATensor, match="a list"):
        as_tensor([1.0, 2.0])
    with pytest.raises(NotATensor, match="Python objects"):
        as_tensor(np.array([object()]))


# -- the --verbose excerpt --------------------------------------------------------------


def marked(text: str) -> list[str]:
    return [line for line in text.splitlines() if "<" in line]


def test_the_excerpt_puts_expected_beside_got_and_marks_the_element() -> None:
    expected = torch.arange(30, dtype=torch.float64).reshape(5, 6)
    actual = expected.clone()
    actual[2, 3] = -7.0
    text = excerpt(expected, actual, [2, 3])

    header, *rows = text.splitlines()
    assert header.split() == ["expected", "|", "got"]
    assert [r.split("]")[0] + "]" for r in rows] == ["[1, 1:6]", "[2, 1:6]", "[3, 1:6]"]
    (line,) = marked(text)
    left, right = line.split("|")
    assert left.split() == ["[2,", "1:6]", "13", "14", "15<", "16", "17"]
    assert right.split() == ["13", "14", "-7<", "16", "17"]


def test_the_excerpt_is_clipped_at_the_edges() -> None:
    expected = torch.zeros(2, 2, dtype=torch.float64)
    actual = expected.clone()
    actual[0, 0] = 1.0
    rows = excerpt(expected, actual, [0, 0]).splitlines()[1:]

    assert [r.split("]")[0] + "]" for r in rows] == ["[0, 0:2]", "[1, 0:2]"]


def test_the_excerpt_of_a_vector_is_one_row() -> None:
    expected = torch.zeros(10, dtype=torch.float64)
    actual = expected.clone()
    actual[7] = 3.0
    text = excerpt(expected, actual, [7])

    assert len(text.splitlines()) == 2
    (line,) = marked(text)
    assert line.startswith("[5:10]")
    assert line.split("|")[1].split() == ["0", "0", "3<", "0", "0"]


def test_the_excerpt_of_a_higher_rank_tensor_keeps_the_leading_index() -> None:
    expected = torch.zeros(2, 3, 4, 5, dtype=torch.float64)
    actual = expected.clone()
    actual[1, 2, 0, 4] = 5.0
    text = excerpt(expected, actual, [1, 2, 0, 4])

    (line,) = marked(text)
    assert line.startswith("[1, 2, 0, 2:5]")
    assert line.split("|")[1].split() == ["0", "0", "5<"]


def test_the_excerpt_of_a_scalar_is_one_line() -> None:
    assert excerpt(torch.tensor(1.5), torch.tensor(2.0), []) == "expected 1.5  got 2"


# -- verdicts that cannot be fooled --------------------------------------------------------------


def test_an_infinite_or_nan_gradient_fails_even_with_an_infinite_tolerance() -> None:
    inf = float("inf")
    expected = torch.tensor([1.0, 2.0, 3.0, inf], dtype=torch.float64)
    actual = torch.tensor([1.0, inf, float("nan"), inf], dtype=torch.float64)
    check = compare("x", "input", expected, actual, Tolerance(atol=inf, rtol=inf))

    assert (check.status, check.mismatched) == ("mismatch", 2)  # the matching infinity is fine
    assert check.worst_index == [1]


def test_a_complex_gradient_with_an_imaginary_part_fails_and_says_why() -> None:
    expected = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    actual = torch.tensor([1.0, 2.0 + 1000j, 3.0], dtype=torch.complex128)
    check = compare("x", "input", expected, actual, TOL)

    assert check.status == "error"
    assert check.mismatched == 1 and check.worst_index == [1]
    assert check.hint is not None
    assert "complex with a nonzero imaginary part (1 of 3 elements, largest |imag| 1e+03)" in check.hint


def test_a_complex_gradient_with_a_zero_imaginary_part_is_judged_by_its_real_part() -> None:
    expected = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert compare("x", "input", expected, expected.to(torch.complex64), tolerance_for("float32")).ok


def test_a_python_number_is_not_a_gradient_nor_a_numpy_array_of_strings() -> None:
    assert as_tensor(2.5).item() == 2.5  # a loss output may be a float
    with pytest.raises(NotATensor, match="a Python float"):
        as_tensor(2.5, gradient=True)
    with pytest.raises(NotATensor, match="a numpy array of <U1"):
        as_tensor(np.array(["a"]))


# -- max rel err ---------------------------------------------------------------------------------


def test_max_rel_err_skips_expected_values_the_tolerance_counts_as_zero() -> None:
    # Within atol of 0 a relative error means nothing: before, this passing row showed inf.
    expected = torch.tensor([0.0, 5e-8, 2.0], dtype=torch.float64)
    actual = torch.tensor([5e-8, 0.0, 2.0 + 2e-7], dtype=torch.float64)
    check = compare("x", "input", expected, actual, TOL)

    assert check.ok
    assert check.max_rel_err == pytest.approx(1e-7)


def test_max_rel_err_is_none_when_every_expected_value_is_about_zero() -> None:
    check = compare("x", "input", torch.zeros(4, dtype=torch.float64), torch.full((4,), 1e-9), TOL)

    assert check.ok and check.max_rel_err is None


def test_a_mismatch_where_zero_is_expected_is_infinitely_relative() -> None:
    # A missing ReLU mask: the wrong elements are where 0 was expected, the others exact.
    expected = torch.tensor([0.0, 0.0, 2.0, 3.0], dtype=torch.float64)
    actual = torch.tensor([0.5, 0.0, 2.0, 3.0], dtype=torch.float64)
    check = compare("x", "input", expected, actual, TOL)

    assert check.status == "mismatch"
    assert check.max_rel_err == float("inf")  # not 0.0: that would read "no relative error"


def test_max_rel_err_is_never_inf_on_a_passing_row() -> None:
    gen = torch.Generator().manual_seed(3)
    for atol in (0.0, 1e-7, 1e-3):
        tol = Tolerance(atol, 1e-3)
        expected = torch.randn(200, generator=gen, dtype=torch.float64)
        expected[::7] = 0.0
        actual = expected + (torch.rand(200, generator=gen, dtype=torch.float64) - 0.5) * atol
        check = compare("x", "input", expected, actual, tol)
        assert check.ok
        assert check.max_rel_err is not None and check.max_rel_err < 1.0


# -- calibrated: judged against a float64 truth and PyTorch's own error ---------------------------

BF16 = decide_tolerance("bfloat16")


def low_precision_matmul(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, g, truth, torch's own) for a weight gradient g.T @ x in bfloat16, batch 64."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 32, generator=gen, dtype=torch.float64).bfloat16()
    g = torch.randn(64, 16, generator=gen, dtype=torch.float64).bfloat16()
    return x, g, g.double().T @ x.double(), g.T @ x


def test_a_correct_low_precision_result_passes_and_reports_the_three_errors() -> None:
    x, g, truth, own = low_precision_matmul()
    # A correct kernel that adds bfloat16 partial sums of 16 rows: off more than PyTorch, not much.
    got = sum((g[i : i + 16].T @ x[i : i + 16] for i in range(0, 64, 16)), torch.zeros(16, 32).bfloat16())
    check = compare("weight", "param", truth, got, BF16, reference=own)

    assert check.ok
    assert check.truth_error == check.max_abs_err == pytest.approx(float((got.double() - truth).abs().max()))
    assert check.reference_error == pytest.approx(float((own.double() - truth).abs().max()))
    assert check.error_ratio == pytest.approx(check.truth_error / check.reference_error)
    assert check.error_ratio > 1  # it is worse than PyTorch's, within the allowance


def test_an_error_of_the_gradients_own_scale_fails() -> None:
    x, g, truth, own = low_precision_matmul()
    wrong = (g.T @ x) * 1.25  # a factor off: what a missing 1/n or a wrong mask looks like

    check = compare("weight", "param", truth, wrong, BF16, reference=own)

    assert check.status == "mismatch"
    assert check.error_ratio is not None and check.error_ratio > 20
    # One allowance for the tensor: elements far below its scale may still be within it.
    assert check.mismatched is not None and check.mismatched > check.numel // 4  # type: ignore[operator]


def test_an_element_is_mismatched_when_it_exceeds_the_one_allowance_of_its_tensor() -> None:
    x, g, truth, own = low_precision_matmul()
    j = judge(BF16, truth, own)
    got = own.clone()
    got[3, 4] = float(truth[3, 4]) + 3 * j.atol  # one element far out, the rest PyTorch's own

    check = compare("weight", "param", truth, got, j)

    assert (check.status, check.mismatched, check.worst_index) == ("mismatch", 1, [3, 4])
    assert j.rtol == 0.0 and j.reference_error == check.reference_error


def test_the_floor_lets_an_exact_case_pass_where_pytorch_itself_has_no_error() -> None:
    # PyTorch's own result is exact (as a bias sum of a batch of 1, a ReLU mask): without a floor
    # any rounding at all in the checked code would fail it.
    truth = torch.tensor([1.0, -2.5, 0.375], dtype=torch.float64)
    own = truth.bfloat16()
    got = own.clone()
    got[1] += 2**-6  # one bfloat16 unit off at 2.5
    no_floor = Tolerance(0.0, 0.0, "calibrated", 2.0)

    assert compare("b", "param", truth, got, no_floor, reference=own).status == "mismatch"
    assert compare("b", "param", truth, got, BF16, reference=own).ok


def test_a_bias_summed_row_by_row_in_bfloat16_passes() -> None:
    gen = torch.Generator().manual_seed(1)
    grad_out = torch.randn(64, 4, generator=gen, dtype=torch.float64).bfloat16()
    truth, own = grad_out.double().sum(0), grad_out.sum(0)
    got = torch.zeros(4).bfloat16()
    for row in grad_out:  # one bfloat16 rounding per row: correct, and several times PyTorch's error
        got = got + row

    check = compare("bias", "param", truth, got, BF16, reference=own)

    assert check.ok
    assert check.error_ratio is not None and check.error_ratio > 2  # the floor is what passes it


def test_a_gradient_that_is_zero_in_exact_arithmetic_is_judged_against_pytorchs_noise() -> None:
    # An attention key bias: the exact gradient is 0, and both results are rounding noise.
    truth = torch.zeros(8, dtype=torch.float64)
    own = torch.tensor([1, -2, 0, 1, 2, 0, -1, 1], dtype=torch.float64).bfloat16() * 2**-9
    noise = own * 5  # five times PyTorch's noise: still noise
    j = judge(BF16, truth, own)

    assert j.noise
    assert compare("bk", "param", truth, noise, j).ok
    assert compare("bk", "param", truth, torch.full((8,), 0.25).bfloat16(), j).status == "mismatch"


def test_a_calibrated_tolerance_needs_pytorchs_own_result() -> None:
    with pytest.raises(ValueError, match="reference="):
        compare("x", "input", torch.zeros(2, dtype=torch.float64), torch.zeros(2), BF16)
    with pytest.raises(TypeError, match="judge"):
        BF16.allclose(torch.zeros(2), torch.zeros(2))


def test_the_judge_is_what_diagnoses_use_as_a_tolerance() -> None:
    x, g, truth, own = low_precision_matmul()
    j = judge(BF16, truth, own)
    got = own.clone()
    got[0, :5] += 1.0

    check = compare("weight", "param", truth, got, j)
    close = j.allclose(got.double(), truth)

    assert check.mismatched == int((~close).sum())
    assert j.loosened(8.0).atol == 8.0 * j.atol
    assert judge(TOL, truth) == Judge(TOL.atol, TOL.rtol)  # absolute: the tolerance's own numbers


# -- scale: chunks, views, devices ---------------------------------------------------------------


def messy(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An expected and an actual float32 tensor with NaN, infinities, zeros and mismatches."""
    gen = torch.Generator().manual_seed(seed)
    expected = torch.randn(n, generator=gen)
    actual = expected + 1e-6 * torch.randn(n, generator=gen)
    picks = torch.randperm(n, generator=gen)[:12]
    expected[picks[:2]], actual[picks[:2]] = 0.0, 1e-9
    actual[picks[2:5]] += torch.tensor([0.5, -3.0, 0.01])
    actual[picks[5]] = float("nan")
    actual[picks[6]] = float("inf")
    expected[picks[7]] = actual[picks[7]] = float("-inf")
    return expected, actual


def same(a: Check, b: Check) -> bool:
    """Equal checks, NaN equal to NaN."""
    left, right = asdict(a), asdict(b)
    nan = [k for k, v in left.items() if isinstance(v, float) and math.isnan(v)]
    return all(isinstance(right[k], float) and math.isnan(right[k]) for k in nan) and {
        k: v for k, v in left.items() if k not in nan
    } == {k: v for k, v in right.items() if k not in nan}


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_the_result_does_not_depend_on_the_chunk_size(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    import gradcheck_cli.compare as compare_module

    expected, actual = messy(5000, seed=chunk)
    expected, actual = expected.reshape(50, 100), actual.reshape(50, 100)
    whole = compare("x", "input", expected, actual, tolerance_for("float32"))
    monkeypatch.setattr(compare_module, "CPU_CHUNK", chunk)
    chunked = compare("x", "input", expected, actual, tolerance_for("float32"))

    assert same(chunked, whole)
    assert whole.mismatched == 5 and whole.worst_index is not None
    assert np.isnan(whole.actual_value) or np.isinf(whole.actual_value)  # type: ignore[arg-type]


def test_a_view_is_compared_element_by_element_in_its_own_layout() -> None:
    base = torch.zeros(6, 4, dtype=torch.float64)
    expected = base.T  # [4, 6], not contiguous
    actual = expected.clone()
    actual[3, 5] = 1.0

    check = compare("w", "param", expected, actual, TOL)

    assert (check.worst_index, check.actual_value) == ([3, 5], 1.0)


def test_a_mismatch_does_not_import_sympy() -> None:
    # torch.unravel_index imports sympy on first use (0.35-0.65 s).
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from gradcheck_cli.compare import compare, tolerance_for\n"
        "c = compare('x', 'input', torch.zeros(3, 4, dtype=torch.float64), torch.ones(3, 4),"
        " tolerance_for('float64'))\n"
        "assert c.worst_index == [0, 0], c.worst_index\n"
        "print('sympy' in sys.modules)\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "False"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_tensors_on_the_gpu_are_compared_there_with_the_same_result() -> None:
    expected, actual = messy(3_000_000, seed=5)
    on_cpu = compare("x", "input", expected, actual, tolerance_for("float32"))
    on_gpu = compare("x", "input", expected.cuda(), actual.cuda(), tolerance_for("float32"))
    assert same(on_gpu, on_cpu)

    x, g, truth, own = low_precision_matmul()
    got = own * (1 + 2**-8)
    cpu = compare("w", "param", truth, got, BF16, reference=own)
    gpu = compare("w", "param", truth.cuda(), got.cuda(), BF16, reference=own.cuda())
    assert gpu == cpu


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_all_close_is_allclose_all_chunk_by_chunk(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    import gradcheck_cli.compare as compare_module

    monkeypatch.setattr(compare_module, "CPU_CHUNK", chunk)
    expected, actual = messy(5000, seed=3)
    expected, actual = expected.double(), actual.double()
    loose = Judge(1e-3, 1e-3)
    # NaN, an infinity and mismatches: not close; the same without them: close; the same
    # infinity on both sides is close to itself, as in allclose.
    finite = torch.isfinite(actual) & (torch.isfinite(expected) | (actual == expected))
    repaired = torch.where(finite, actual, expected)
    repaired[(repaired - expected).abs() > 1e-4] = expected[(repaired - expected).abs() > 1e-4]
    for got in (actual, repaired, repaired + 2e-3, expected):
        assert all_close(got, expected, loose) == bool(loose.allclose(got, expected).all())
    assert not all_close(actual, expected, loose) and all_close(repaired, expected, loose)


def test_an_exact_match_has_errors_of_zero_not_minus_zero() -> None:
    expected = -torch.rand(4, 5, dtype=torch.float64)  # every element negative: d / e is -0.0
    check = compare("x", "input", expected, expected.clone(), TOL)
    assert (check.max_abs_err, check.max_rel_err) == (0.0, 0.0)
    assert math.copysign(1.0, check.max_rel_err) == 1.0 and math.copysign(1.0, check.max_abs_err) == 1.0
