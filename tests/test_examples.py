"""The shipped examples, one per convention: each passes as written, and a
deliberately wrong copy of it (under tests/wrong/) fails with the right row flagged.

A wrong variant is the example's own spec run against a copy of its code with
one realistic bug, so the spec is the same and only the code differs.
"""

from __future__ import annotations

import json
import runpy
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES

WRONG = Path(__file__).parent / "wrong"
CONVENTION_DIRS = ("functional", "fastai", "cs231n", "autograd_function", "lstm", "composite")
EXAMPLE_SPECS = sorted(p for d in CONVENTION_DIRS for p in (EXAMPLES / d).glob("*.yaml"))


def checks_of(stdout: str) -> dict[str, dict]:
    """{tensor: check} of the one result in a JSON report."""
    (result,) = json.loads(stdout)["results"]
    return {c["name"]: c for c in result["checks"]}


def test_every_convention_has_an_example():
    assert {p.parent.name for p in EXAMPLE_SPECS} == set(CONVENTION_DIRS)
    assert len(EXAMPLE_SPECS) == 9
    assert (EXAMPLES / "notebook.py").is_file()


@pytest.mark.parametrize("spec", EXAMPLE_SPECS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_example_passes(gradcheck, spec):
    ran = gradcheck("run", str(spec), "--format", "json")
    assert ran.exit_code == 0, ran.stdout
    checks = checks_of(ran.stdout)
    assert all(c["status"] == "pass" for c in checks.values()), checks
    assert any(c["kind"] != "output" for c in checks.values())


def test_the_examples_run_together_as_one_suite(gradcheck):
    ran = gradcheck("run", *(str(EXAMPLES / d) for d in CONVENTION_DIRS))
    assert ran.exit_code == 0
    assert ran.stdout.rstrip().endswith(f"PASS: {len(EXAMPLE_SPECS)} passed")


def test_examples_conventions_are_the_ones_they_claim():
    from gradcheck_cli import load_spec

    conventions = {
        p.relative_to(EXAMPLES).as_posix(): load_spec(p).implementation.convention for p in EXAMPLE_SPECS
    }
    assert conventions == {
        "autograd_function/linear_function.yaml": "autograd_function",
        "composite/mlp.yaml": "functional",
        "cs231n/affine.yaml": "numpy",
        "cs231n/conv.yaml": "numpy",
        "cs231n/softmax.yaml": "numpy",
        "fastai/lin.yaml": "fastai",
        "fastai/model.yaml": "class",
        "functional/linear.yaml": "functional",
        "lstm/lstm_step.yaml": "numpy",
    }


def test_the_notebook_example_runs_and_its_asserts_hold(capsys):
    runpy.run_path(str(EXAMPLES / "notebook.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "[missing_reduction]" in out  # the wrong lin_grad's report was printed
    assert "SpecError:" in out


# -- the wrong variants ---------------------------------------------------------------


@dataclass
class Wrong:
    """tests/wrong/<variant>/* copied over examples/<example>/, then <spec> is run."""

    variant: str
    example: str
    spec: str
    flagged: dict[str, tuple[str, str | None]]  # tensor -> (status, diagnosis or None: any)
    passing: tuple[str, ...]
    hint: str | None = None  # a phrase the flagged row's hint must contain


WRONGS = [
    Wrong(
        "functional", "functional", "linear.yaml",
        {"weight": ("shape_error", "transposed")}, ("out", "x", "bias"),
    ),
    Wrong(
        "fastai", "fastai", "lin.yaml",
        {"b": ("shape_error", "missing_reduction")}, ("out", "x", "w"),
    ),
    Wrong(  # Relu.bwd without its mask: every gradient below the relu is wrong, above it right
        "fastai", "fastai", "model.yaml",
        {"x": ("mismatch", None), "w1": ("mismatch", None), "b1": ("mismatch", None)},
        ("out", "w2", "b2"),
    ),
    Wrong(
        "cs231n", "cs231n", "affine.yaml",
        {"x": ("shape_error", "reshaped")}, ("out", "w", "b"),
    ),
    Wrong(  # dx_pad returned without cutting the padding off
        "cs231n", "cs231n", "conv.yaml",
        {"x": ("shape_error", None)}, ("out", "w", "b"),
    ),
    Wrong(
        "cs231n", "cs231n", "softmax.yaml",
        {"x": ("mismatch", "scaled")}, ("loss",), hint="1/N",
    ),
    Wrong(
        "autograd_function", "autograd_function", "linear_function.yaml",
        {"bias": ("mismatch", "scaled")}, ("out", "x", "weight"), hint="batch=5",
    ),
    Wrong(  # several outputs: dprev_c misses the path through next_h
        "lstm", "lstm", "lstm_step.yaml",
        {"prev_c": ("mismatch", None)}, ("next_h", "next_c", "x", "prev_h", "Wx", "Wh", "b"),
    ),
    Wrong(  # the file reference is what the code is checked against: a wrong ref.py fails the right code
        "lstm_reference", "lstm", "lstm_step.yaml",
        {
            "next_h": ("mismatch", "forward_mismatch"),
            "next_c": ("mismatch", "forward_mismatch"),
            **{t: ("mismatch", None) for t in ("x", "prev_h", "prev_c", "Wx", "Wh", "b")},
        },
        (),
    ),
    Wrong(
        "composite", "composite", "mlp.yaml",
        {t: ("mismatch", "scaled") for t in ("x", "w1", "b1", "w2", "b2")}, ("loss",), hint="1/n",
    ),
]  # fmt: skip


@pytest.mark.parametrize("wrong", WRONGS, ids=lambda w: f"{w.variant}/{w.spec}")
def test_wrong_variant_fails_with_its_row_flagged(gradcheck, tmp_path, wrong):
    folder = tmp_path / wrong.example
    shutil.copytree(EXAMPLES / wrong.example, folder)
    bugs = list((WRONG / wrong.variant).glob("*.py"))
    assert bugs, f"tests/wrong/{wrong.variant} is empty"
    for bug in bugs:
        assert (folder / bug.name).is_file(), f"{bug.name} does not replace a file of the example"
        assert "# BUG:" in bug.read_text()
        shutil.copy(bug, folder / bug.name)

    ran = gradcheck("run", str(folder / wrong.spec), "--format", "json")

    assert ran.exit_code == 1
    checks = checks_of(ran.stdout)
    for name, (status, diagnosis) in wrong.flagged.items():
        assert checks[name]["status"] == status, (name, checks[name])
        if diagnosis is not None:
            assert checks[name]["diagnosis"] == diagnosis, (name, checks[name])
        if wrong.hint:
            assert wrong.hint in checks[name]["hint"], (name, checks[name]["hint"])
    for name in wrong.passing:
        assert checks[name]["status"] == "pass", (name, checks[name])
    assert set(checks) == set(wrong.flagged) | set(wrong.passing)


def test_a_wrong_variant_shows_its_diagnosis_in_the_table(gradcheck, tmp_path):
    shutil.copytree(EXAMPLES / "fastai", tmp_path / "fastai")
    shutil.copy(WRONG / "fastai" / "lin.py", tmp_path / "fastai" / "lin.py")
    ran = gradcheck("run", str(tmp_path / "fastai" / "lin.yaml"))
    assert ran.exit_code == 1
    row = next(line for line in ran.stdout.splitlines() if line.split()[:2] == ["b", "param"])
    assert row.rstrip().endswith("shape_error")
    assert "b: [missing_reduction]" in ran.stdout
