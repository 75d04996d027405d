"""float32, bfloat16 and float16: judged by PyTorch's own error against a float64 truth.

A correct backward in low precision is as far from the truth as PyTorch's own, and passes;
an everyday mistake is off by the gradient's own scale, and fails, with its diagnosis. The
tolerance used is decided once per case, from the command line, the spec, [tool.gradcheck]
or the dtype's default, and the report says which.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import LAYER_SPECS, LINEAR_FORWARD, LINEAR_SPEC

ZOO = Path(__file__).resolve().parent / "zoo"
HALF = ("bfloat16", "float16")


def run_json(gradcheck, *args: str) -> tuple[int, dict]:
    ran = gradcheck(*args, "--format", "json")
    return ran.exit_code, json.loads(ran.stdout)["results"][0] if ran.stdout.strip() else {}


def checks_of(result: dict) -> dict[str, dict]:
    return {c["name"]: c for c in result["checks"]}


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize(
    ("spec", "tensor", "diagnosis"),
    [
        ("linear_weight_transposed_square", "weight", "transposed"),
        ("linear_bias_not_summed", "bias", "missing_reduction"),
        ("mse_grad_no_mean", "inp", "scaled"),
        ("relu_mask_forgotten", "x", "partial"),
        ("mul_swapped", "a", "swapped"),
    ],
)
def test_everyday_mistakes_are_still_caught_in_half_precision(gradcheck, dtype, spec, tensor, diagnosis):
    code, result = run_json(gradcheck, "run", str(ZOO / f"{spec}.yaml"), "--dtype", dtype)
    assert code == 1 and result["tolerance"]["mode"] == "calibrated"
    flagged = checks_of(result)[tensor]
    assert flagged["status"] in ("mismatch", "shape_error")
    assert flagged["diagnosis"] == diagnosis


LOW_PRECISION_SUMS = """

def linear_backward(grad_out, x, weight, bias):
    # Correct, but summed row by row in the checked dtype: each partial sum is rounded to it.
    grad_weight = torch.zeros_like(weight)
    grad_bias = torch.zeros_like(bias)
    for row in range(x.shape[0]):
        grad_weight = grad_weight + grad_out[row][:, None] * x[row][None, :]
        grad_bias = grad_bias + grad_out[row]
    return grad_out @ weight, grad_weight, grad_bias
"""


@pytest.mark.parametrize("dtype", (*HALF, "float32"))
def test_a_correct_kernel_that_accumulates_in_low_precision_passes(gradcheck, write_layer, dtype):
    spec = write_layer(LINEAR_SPEC.replace("batch: 5", "batch: 64"), LINEAR_FORWARD + LOW_PRECISION_SUMS)
    code, result = run_json(gradcheck, "run", str(spec), "--dtype", dtype)
    assert code == 0, result
    weight = checks_of(result)["weight"]
    assert weight["truth_error"] > 0 and weight["reference_error"] >= 0


def test_the_built_in_layers_pass_in_half_precision_by_the_calibrated_rule(gradcheck):
    for dtype in HALF:
        ran = gradcheck("run", "--builtin", "--dtype", dtype, "--format", "json")
        report = json.loads(ran.stdout)
        assert ran.exit_code == 0, [r["spec"] for r in report["results"] if r["status"] != "pass"]
        assert {r["tolerance"]["mode"] for r in report["results"]} == {"calibrated"}


def test_each_row_says_its_error_against_the_truth_pytorchs_own_and_their_ratio(gradcheck):
    code, result = run_json(gradcheck, "conv2d", "--dtype", "bfloat16")
    assert code == 0
    assert result["tolerance"] == {
        "mode": "calibrated",
        "atol": result["tolerance"]["atol"],
        "rtol": 8 * 2**-7,
        "ratio": 2.0,
        "source": "default",
    }
    for check in result["checks"]:
        assert check["truth_error"] == check["max_abs_err"]
        if check["reference_error"]:
            assert check["error_ratio"] == pytest.approx(check["truth_error"] / check["reference_error"])
    table = gradcheck("conv2d", "--dtype", "bfloat16").stdout
    assert "dtype=bfloat16 device=cpu seed=0 ratio<=2 vs float64 truth (default)" in table.splitlines()[0]
    assert "vs truth  torch vs truth  ratio" in table


# -- where the tolerance comes from ------------------------------------------------------


def _tolerance(gradcheck, *args: str) -> dict:
    code, result = run_json(gradcheck, *args)
    assert code == 0, result
    return dict(result["tolerance"])


def test_float64_is_absolute_and_the_others_calibrated_by_default(gradcheck):
    assert _tolerance(gradcheck, "linear") == {
        "mode": "absolute", "atol": 1e-7, "rtol": 1e-7, "ratio": None, "source": "default",
    }  # fmt: skip
    for dtype in ("float32", *HALF):
        found = _tolerance(gradcheck, "linear", "--dtype", dtype)
        assert (found["mode"], found["ratio"], found["source"]) == ("calibrated", 2.0, "default")


def test_the_command_line_spec_and_config_each_decide_and_say_so(
    gradcheck, write_layer, monkeypatch, tmp_path
):
    spec = write_layer(LINEAR_SPEC + "tolerance: {ratio: 3}\n", LINEAR_FORWARD + LOW_PRECISION_SUMS)
    f32 = ("run", str(spec), "--dtype", "float32")
    assert _tolerance(gradcheck, *f32) | {"atol": 0, "rtol": 0} == {
        "mode": "calibrated", "atol": 0, "rtol": 0, "ratio": 3.0, "source": "spec",
    }  # fmt: skip
    assert _tolerance(gradcheck, *f32, "--ratio", "4")["ratio"] == 4.0  # cli over spec
    cli = _tolerance(gradcheck, *f32, "--atol", "1e-3", "--rtol", "1e-3")  # atol/rtol imply absolute
    assert (cli["mode"], cli["atol"], cli["source"]) == ("absolute", 1e-3, "cli")
    assert _tolerance(gradcheck, *f32, "--tolerance", "absolute")["mode"] == "absolute"

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.gradcheck]\ntolerance = "absolute"\natol = 1e-3\n')
    plain = write_layer(LINEAR_SPEC, LINEAR_FORWARD + LOW_PRECISION_SUMS, name="plain")
    config = _tolerance(gradcheck, "run", str(plain), "--dtype", "float32")
    assert (config["mode"], config["atol"], config["source"]) == ("absolute", 1e-3, "config")
    assert _tolerance(gradcheck, *f32)["source"] == "spec"  # the spec's own over the project's


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tolerance", "loose"), "--tolerance: unknown tolerance mode 'loose'"),
        (("--ratio", "-1"), "--ratio must be a positive number"),
        (("--ratio", "2", "--tolerance", "absolute"), "--ratio: a ratio applies only to the calibrated mode"),
    ],
)
def test_bad_tolerance_settings_are_usage_errors(gradcheck, args, message):
    ran = gradcheck("linear", *args)
    assert ran.exit_code == 2 and ran.stdout == ""
    assert message in ran.stderr and len(ran.stderr.strip().splitlines()) == 1


def test_a_spec_with_a_ratio_for_the_absolute_mode_is_a_spec_error_at_its_line(gradcheck, write_layer):
    spec = write_layer(LINEAR_SPEC + "tolerance: {mode: absolute, ratio: 2}\n", LINEAR_FORWARD)
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2
    assert f"{spec}:13: tolerance.ratio: a ratio applies only to the calibrated mode" in ran.stderr


def test_the_python_api_takes_the_same_settings():
    from gradcheck_cli import check

    report = check(LAYER_SPECS / "linear.yaml", dtype="float16", ratio=3.0)
    assert report.results[0].tolerance == {
        **report.results[0].tolerance, "mode": "calibrated", "ratio": 3.0, "source": "cli",
    }  # fmt: skip
    assert check(LAYER_SPECS / "linear.yaml", dtype="float16", tolerance="absolute").ok is not None
