"""Precision lost inside a float64 check: a passing row whose errors are those of a
lower precision gets a note naming it (icefall's softmax computes its backward in
float32: in float64 it passes, with errors ~1e-7 where float64 gives ~1e-16)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from gradcheck_cli.checks import precision_note
from gradcheck_cli.result import Check
from tests.conftest import EXAMPLES

SOFTMAX = EXAMPLES / "functions" / "softmax.yaml"


def notes_of(gradcheck, spec, *args: str) -> tuple[int, list[str]]:
    ran = gradcheck("run", str(spec), "--format", "json", *args)
    (result,) = json.loads(ran.stdout)["results"]
    return ran.exit_code, result["notes"]


def test_a_float64_check_of_a_float32_backward_passes_with_a_note(gradcheck):
    exit_code, notes = notes_of(gradcheck, SOFTMAX)
    assert exit_code == 0
    (note,) = notes
    assert note.startswith("x: errors ~1e-7 relative (max abs err ")
    assert note.endswith("far above float64 rounding (~1e-16): this backward appears to compute in float32")


def test_the_same_backward_in_float64_has_no_note(gradcheck, tmp_path):
    folder = tmp_path / "functions"
    shutil.copytree(EXAMPLES / "functions", folder)
    code = folder / "softmax.py"
    code.write_text(code.read_text().replace("torch.float32", "torch.float64"))
    assert notes_of(gradcheck, folder / "softmax.yaml") == (0, [])


def test_there_is_no_note_in_float32_where_float32_errors_are_expected(gradcheck):
    assert notes_of(gradcheck, SOFTMAX, "--dtype", "float32") == (0, [])


def row(max_abs_err: float, kind: str = "input", status: str = "pass") -> Check:
    return Check("x", kind, [4], [4], status, max_abs_err=max_abs_err)


@pytest.mark.parametrize(
    ("relative", "precision"),
    [(3e-8, "float32"), (1e-6, "float32"), (4e-4, "float16"), (9e-3, "bfloat16")],
)
def test_the_note_names_the_precision_nearest_the_errors(relative, precision):
    note = precision_note(row(relative * 2.0), torch.tensor([2.0, -1.0], dtype=torch.float64), "float64")
    assert note is not None and note.endswith(f"appears to compute in {precision}")


@pytest.mark.parametrize(
    ("check", "dtype"),
    [
        (row(2e-13), "float64"),  # float64 rounding of a long sum: no note
        (row(1e-7), "float32"),  # only float64 checks
        (row(1e-7, status="mismatch"), "float64"),  # a failing row says more than a note
        (row(0.0), "float64"),
    ],
)
def test_no_note_for_float64_rounding_other_dtypes_or_failing_rows(check, dtype):
    assert precision_note(check, torch.ones(4, dtype=torch.float64), dtype) is None


def test_a_forward_output_is_said_to_be_the_forward():
    note = precision_note(row(1e-7, kind="output"), torch.ones(4, dtype=torch.float64), "float64")
    assert note is not None and "this forward appears to compute in float32" in note
