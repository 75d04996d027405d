"""Deciding a case's tolerance: the defaults per dtype, the levels that may say otherwise
(the command line, the spec, [tool.gradcheck]), the mode each setting implies, bad values."""

from __future__ import annotations

import math

import pytest
import torch

from gradcheck_cli.errors import GradcheckError
from gradcheck_cli.tolerance import (
    DEFAULT_RATIO,
    DEFAULT_TOLERANCES,
    Judge,
    Tolerance,
    ToleranceSettings,
    decide_tolerance,
    default_floor,
)

S = ToleranceSettings


# -- defaults ------------------------------------------------------------------------------


def test_float64_defaults_to_the_absolute_tolerance_of_before() -> None:
    tol = decide_tolerance("float64")

    assert tol == Tolerance(1e-7, 1e-7, "absolute", None, "default")
    assert not tol.calibrated


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_low_precision_defaults_to_calibrated_with_ratio_2_and_the_dtypes_floor(dtype: str) -> None:
    tol = decide_tolerance(dtype)

    assert (tol.mode, tol.ratio, tol.source) == ("calibrated", DEFAULT_RATIO, "default")
    assert DEFAULT_RATIO == 2.0
    assert (tol.atol, tol.rtol) == default_floor(dtype)


def test_the_floor_is_a_few_units_of_the_dtypes_rounding() -> None:
    # rtol is the floor at the tensor's scale: coarser dtypes get a larger one.
    rtols = {d: default_floor(d)[1] for d in ("float32", "float16", "bfloat16")}
    assert rtols["float32"] < rtols["float16"] < rtols["bfloat16"] < 0.1
    assert rtols["bfloat16"] / 2.0**-7 == rtols["float32"] / 2.0**-23  # the same number of units


# -- each level, and the precedence -------------------------------------------------------------


@pytest.mark.parametrize("level", ["cli", "spec", "config"])
def test_each_level_can_set_an_absolute_tolerance_and_is_named_as_the_source(level: str) -> None:
    tol = decide_tolerance("float32", **{level: S(atol=1e-3, rtol=2e-3)})  # type: ignore[arg-type]

    assert tol == Tolerance(1e-3, 2e-3, "absolute", None, level)


def test_the_command_line_beats_the_spec_which_beats_the_config() -> None:
    cli, spec, config = S(atol=1.0), S(atol=2.0), S(atol=3.0)

    assert decide_tolerance("float64", cli=cli, spec=spec, config=config).atol == 1.0
    assert decide_tolerance("float64", spec=spec, config=config).atol == 2.0
    assert decide_tolerance("float64", config=config).atol == 3.0
    assert decide_tolerance("float64", cli=S(), spec=S(), config=config).source == "config"


def test_a_lower_level_fills_what_a_higher_one_leaves_open_in_the_same_mode() -> None:
    tol = decide_tolerance("float64", cli=S(rtol=1e-3), config=S(atol=1e-4))

    assert (tol.atol, tol.rtol, tol.source) == (1e-4, 1e-3, "cli")


def test_absolute_in_a_low_precision_dtype_without_numbers_uses_that_dtypes_table() -> None:
    tol = decide_tolerance("bfloat16", cli=S(mode="absolute"))

    assert (tol.mode, (tol.atol, tol.rtol), tol.ratio) == ("absolute", DEFAULT_TOLERANCES["bfloat16"], None)


# -- the mode each setting implies ----------------------------------------------------------------


def test_atol_or_rtol_alone_imply_absolute_even_where_calibrated_is_the_default() -> None:
    assert decide_tolerance("bfloat16", cli=S(atol=0.05)).mode == "absolute"
    assert decide_tolerance("float16", spec=S(rtol=0.01)).mode == "absolute"


def test_a_ratio_implies_calibrated_even_in_float64() -> None:
    tol = decide_tolerance("float64", cli=S(ratio=3.0))

    assert (tol.mode, tol.ratio) == ("calibrated", 3.0)
    assert (tol.atol, tol.rtol) == default_floor("float64")


def test_atol_beside_calibrated_at_the_same_level_sets_the_floor() -> None:
    explicit = decide_tolerance("float32", cli=S(mode="calibrated", atol=1e-6))
    with_ratio = decide_tolerance("float32", spec=S(ratio=4.0, rtol=1e-5))

    assert (explicit.mode, explicit.atol, explicit.ratio) == ("calibrated", 1e-6, DEFAULT_RATIO)
    assert (with_ratio.mode, with_ratio.rtol, with_ratio.ratio) == ("calibrated", 1e-5, 4.0)


def test_an_absolute_atol_from_a_lower_level_never_becomes_a_floor() -> None:
    # The spec's atol is an absolute tolerance; the command line chose calibrated.
    tol = decide_tolerance("float32", cli=S(ratio=3.0), spec=S(atol=0.5))

    assert (tol.mode, tol.ratio, tol.source) == ("calibrated", 3.0, "cli")
    assert tol.atol == default_floor("float32")[0]


def test_a_mode_from_the_command_line_overrides_the_mode_a_spec_implies() -> None:
    tol = decide_tolerance("float32", cli=S(mode="calibrated"), spec=S(atol=1e-3), config=S(ratio=5.0))

    assert (tol.mode, tol.ratio, tol.atol) == ("calibrated", 5.0, default_floor("float32")[0])


# -- the JSON form and the report's line -----------------------------------------------------------


def test_to_dict_gives_mode_atol_rtol_ratio_and_source() -> None:
    assert decide_tolerance("float64", cli=S(atol=1e-6)).to_dict() == {
        "mode": "absolute",
        "atol": 1e-6,
        "rtol": 1e-7,
        "ratio": None,
        "source": "cli",
    }
    calibrated = decide_tolerance("bfloat16").to_dict()
    assert calibrated["mode"] == "calibrated" and calibrated["ratio"] == 2.0
    assert (calibrated["atol"], calibrated["rtol"]) == default_floor("bfloat16")  # the floor


# -- bad values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (S(atol=-1e-3), "--atol: expected a finite number >= 0, got -0.001"),
        (S(rtol=math.nan), "--rtol: expected a finite number >= 0, got nan"),
        (S(atol=math.inf), "--atol: expected a finite number >= 0, got inf"),
        (S(ratio=-2.0), "--ratio: expected a finite number >= 0, got -2.0"),
        (S(atol="x"), "--atol: expected a number, got 'x'"),  # type: ignore[arg-type]
        (S(atol=True), "--atol: expected a number, got True"),
        (S(mode="relative"), "--tolerance: unknown tolerance mode 'relative'; choose absolute or calibrated"),
        (
            S(mode="absolute", ratio=2.0),
            "--ratio: a ratio applies only to the calibrated mode, not to absolute",
        ),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_setting(settings: ToleranceSettings, message: str) -> None:
    with pytest.raises(GradcheckError) as caught:
        decide_tolerance("float32", cli=settings)

    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_a_bad_value_is_an_error_even_at_a_level_that_loses() -> None:
    with pytest.raises(GradcheckError, match=r"^lin.yaml:7: tolerance.rtol: expected a finite number"):
        decide_tolerance("float64", cli=S(atol=1e-3), spec=S(rtol=-1.0, where="lin.yaml:7: "))
    with pytest.raises(GradcheckError, match=r"^\[tool.gradcheck\] atol: expected a finite number"):
        decide_tolerance("float64", config=S(atol=math.inf))


def test_an_unknown_dtype_or_mode_is_refused_by_the_data_too() -> None:
    with pytest.raises(GradcheckError, match="unknown dtype 'int8'"):
        decide_tolerance("int8")
    with pytest.raises(GradcheckError, match="unknown tolerance mode 'loose'"):
        Tolerance(1e-3, 1e-3, "loose")


# -- one tensor's allowance: how far outside it each element is ----------------------------


SPECIAL = [0.0, 1.0, -1.0, 1e-9, 3.0, math.inf, -math.inf, math.nan]


@pytest.mark.parametrize("judge", [Judge(1e-3, 1e-2), Judge(0.5, 0.0), Judge(0.0, 0.0), Judge(0.0, 1e-3)])
def test_excess_above_one_is_exactly_what_allclose_rejects(judge: Judge) -> None:
    pairs = [(a, e) for a in SPECIAL for e in SPECIAL]
    actual = torch.tensor([a for a, _ in pairs], dtype=torch.float32)  # a float32 result...
    expected = torch.tensor([e for _, e in pairs], dtype=torch.float64)  # ...against the float64 truth
    excess = judge.excess(actual, expected)
    assert excess.dtype == torch.float64 and not excess.isnan().any()
    assert torch.equal(excess <= 1.0, judge.allclose(actual.double(), expected))


def test_excess_counts_allowances_zero_where_equal_and_inf_where_not_finite() -> None:
    expected = torch.tensor([1.0, 2.0, math.inf, 0.0, 1.0], dtype=torch.float64)
    actual = torch.tensor([1.5, 2.0, math.inf, math.nan, math.inf], dtype=torch.float64)
    assert Judge(0.25, 0.0).excess(actual, expected).tolist() == [2.0, 0.0, 0.0, math.inf, math.inf]
    # a zero allowance: inf, not the largest finite number (an error map's colour scale reads it)
    assert Judge(0.0, 0.0).excess(torch.tensor([2, 1]), torch.tensor([0, 1])).tolist() == [math.inf, 0.0]
    # bools (a mask output) have no subtraction: counted as 0 and 1
    assert Judge(0.0, 0.0).excess(torch.tensor([True, True]), torch.tensor([False, True])).tolist() == [
        math.inf,
        0.0,
    ]
    # rtol: the allowance grows with |expected|; 1 + 0.5 * 2 = 2 allowed at the second element
    assert Judge(1.0, 0.5).excess(torch.tensor([1.0, 5.0]), torch.tensor([0.0, 2.0])).tolist() == [1.0, 1.5]
