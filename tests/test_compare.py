"""Comparing one tensor: tolerances per dtype, the worst element, the --verbose excerpt."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

from gradcheck_cli.compare import (
    NotATensor,
    Tolerance,
    as_tensor,
    compare,
    excerpt,
    tolerance_for,
)
from gradcheck_cli.result import Check

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
