"""The shipped examples, one per convention: each passes as written, and a
copy of it with one realistic bug put in (WRONGS below) fails with the right row flagged.

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

CONVENTION_DIRS = (
    "functional", "fastai", "cs231n", "autograd_function", "lstm", "composite",
    "nnfs", "ipynb", "loss", "step",
)  # fmt: skip
EXAMPLE_SPECS = sorted(p for d in CONVENTION_DIRS for p in (EXAMPLES / d).glob("*.yaml"))
# Engineers' autograd Functions: surrogate gradients, repeatability, double backward, permutations.
FUNCTION_SPECS = sorted((EXAMPLES / "functions").glob("*.yaml"))
# Deliberately wrong, each one (docs/reading-failures.md, docs/autograd-functions.md, docs/numerical.md).
MISTAKE_SPECS = sorted((EXAMPLES / "mistakes").rglob("*.yaml"))


def checks_of(stdout: str) -> dict[str, dict]:
    """{tensor: check} of the one result in a JSON report."""
    (result,) = json.loads(stdout)["results"]
    return {c["name"]: c for c in result["checks"]}


def test_every_convention_has_an_example():
    assert {p.parent.name for p in EXAMPLE_SPECS} == set(CONVENTION_DIRS)
    assert len(EXAMPLE_SPECS) == 16
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
        "nnfs/dense.yaml": "numpy",  # the class convention on numpy arrays, gradients on attributes
        "nnfs/mae.yaml": "numpy",
        "ipynb/lin.yaml": "fastai",
        "ipynb/relu.yaml": "fastai",
        "loss/mse.yaml": "fastai",
        "loss/cross_entropy.yaml": "fastai",
        "step/train.yaml": "step",
    }


def test_the_function_examples_are_the_ones_the_docs_describe():
    assert [p.stem for p in FUNCTION_SPECS] == [
        "bias_norm", "gradient_reversal", "lower_bound", "reverse_sort", "softmax", "ste", "swish",
    ]  # fmt: skip


def test_every_mistake_example_fails(gradcheck):
    # --double: the mistake of mistakes/functions/swish_saved_sigmoid.yaml is in its double backward.
    ran = gradcheck("run", str(EXAMPLES / "mistakes"), "--double", "--format", "json")
    assert ran.exit_code == 1
    results = json.loads(ran.stdout)["results"]
    assert len(results) == len(MISTAKE_SPECS) >= 10
    assert [r["source"] for r in results if r["status"] != "fail"] == []


@pytest.mark.parametrize("spec", FUNCTION_SPECS, ids=lambda p: p.stem)
@pytest.mark.parametrize("flags", [(), ("--double",)], ids=["", "double"])
def test_function_example_passes_also_with_its_double_backward(gradcheck, spec, flags):
    ran = gradcheck("run", str(spec), "--format", "json", *flags)
    assert ran.exit_code == 0, ran.stdout
    checks = checks_of(ran.stdout)
    assert all(c["status"] == "pass" for c in checks.values()), checks
    once = spec.stem == "bias_norm"  # its backward is @once_differentiable: there is no second order
    assert any(name.endswith("(2nd order)") for name in checks) == (bool(flags) and not once)


@pytest.mark.parametrize("cwd", ["examples", "."])
def test_the_notebook_example_runs_as_jupyter_runs_it_from_examples_or_the_root(cwd, monkeypatch, capsys):
    """Jupyter runs cells with no __file__, from the folder it was started in."""
    monkeypatch.chdir(EXAMPLES.parent / cwd)
    code = compile((EXAMPLES / "notebook.py").read_text(), "notebook.ipynb", "exec")
    exec(code, {"__name__": "__main__"})


def test_the_notebook_example_runs_and_its_asserts_hold(capsys):
    runpy.run_path(str(EXAMPLES / "notebook.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "[missing_reduction]" in out  # the wrong lin_grad's report was printed
    assert "SpecError:" in out


# -- the wrong variants ---------------------------------------------------------------


@dataclass
class Wrong:
    """The example's own spec, run on a copy of its code with one realistic bug put in:
    in ``file``, the line ``right`` becomes ``wrong``."""

    example: str
    spec: str
    file: str
    right: str
    wrong: str
    flagged: dict[str, tuple[str, str | None]]  # tensor -> (status, diagnosis or None: any)
    passing: tuple[str, ...]
    hint: str | None = None  # a phrase the flagged row's hint must contain
    flags: tuple[str, ...] = ()  # run with these (--double); without them, the bug passes unseen
    edits: tuple[tuple[str, str], ...] = ()  # more (old, new) edits the bug needs in the same file


# examples/functions/swish.py saving the sigmoid its forward computes, instead of recomputing it.
SAVED_SIGMOID = (
    ("ctx.save_for_backward(x)", "sigmoid_x = torch.sigmoid(x)\n        ctx.save_for_backward(x, sigmoid_x)"),
    ("(x,) = ctx.saved_tensors\n        sigmoid_x = torch.sigmoid(x)", "x, sigmoid_x = ctx.saved_tensors"),
)


WRONGS = [
    Wrong(
        "functional", "linear.yaml", "linear.py",
        "grad_weight = grad_out.T @ x", "grad_weight = x.T @ grad_out  # BUG: the transpose",
        {"weight": ("shape_error", "transposed")}, ("out", "x", "bias"),
    ),
    Wrong(
        "fastai", "lin.yaml", "lin.py",
        "b.g = out.g.sum(0)", "b.g = out.g  # BUG: b was broadcast over the rows: sum it",
        {"b": ("shape_error", "missing_reduction")}, ("out", "x", "w"),
    ),
    Wrong(  # Relu.bwd without its mask: every gradient below the relu is wrong, above it right
        "fastai", "model.yaml", "model.py",
        "inp.g = (inp > 0).float() * out.g", "inp.g = out.g  # BUG: the mask (inp > 0) is forgotten",
        {"x": ("mismatch", None), "w1": ("mismatch", None), "b1": ("mismatch", None)},
        ("out", "w2", "b2"),
    ),
    Wrong(
        "cs231n", "affine.yaml", "layers.py",
        "dx = dout.dot(w.T).reshape(x.shape)", "dx = dout.dot(w.T)  # BUG: not reshaped back to x.shape",
        {"x": ("shape_error", "reshaped")}, ("out", "w", "b"),
    ),
    Wrong(
        "cs231n", "conv.yaml", "layers.py",
        "dx = dx_pad[:, :, pad : pad + H, pad : pad + W]", "dx = dx_pad  # BUG: the padding is never cut off",
        {"x": ("shape_error", None)}, ("out", "w", "b"),
    ),
    Wrong(
        "cs231n", "softmax.yaml", "layers.py",
        "dx /= N", "pass  # BUG: the loss is a mean over N, but dx is never divided by N",
        {"x": ("mismatch", "scaled")}, ("loss",), hint="1/N",
    ),
    Wrong(
        "autograd_function", "linear_function.yaml", "linear_function.py",
        "grad_bias = grad_output.sum(0)", "grad_bias = grad_output.mean(0)  # BUG: sum, not mean",
        {"bias": ("mismatch", "scaled")}, ("out", "x", "weight"), hint="batch=5",
    ),
    Wrong(  # several outputs: dprev_c misses the path through next_h
        "lstm", "lstm_step.yaml", "rnn_layers.py",
        "dprev_c = dc * f", "dprev_c = dnext_c * f  # BUG: misses the path through next_h",
        {"prev_c": ("mismatch", None)}, ("next_h", "next_c", "x", "prev_h", "Wx", "Wh", "b"),
    ),
    Wrong(  # the file reference is what the code is checked against: a wrong ref.py fails the right code
        "lstm", "lstm_step.yaml", "ref.py",
        "next_c = f * prev_c + i * g", "next_c = f * prev_c + g + 0 * i  # BUG: the input gate is forgotten",
        {
            "next_h": ("mismatch", "forward_mismatch"),
            "next_c": ("mismatch", "forward_mismatch"),
            **{t: ("mismatch", None) for t in ("x", "prev_h", "prev_c", "Wx", "Wh", "b")},
        },
        (),
    ),
    Wrong(
        "composite", "mlp.yaml", "mlp.py",
        "/ targ.shape[0]", "  # BUG: mse is a mean, divide by n",
        {t: ("mismatch", "scaled") for t in ("x", "w1", "b1", "w2", "b2")}, ("loss",), hint="1/n",
    ),
    Wrong(  # an attribute class: self.dweights transposed
        "nnfs", "dense.yaml", "layers.py",
        "self.dweights = np.dot(self.inputs.T, dvalues)",
        "self.dweights = np.dot(dvalues.T, self.inputs)  # BUG: transposed",
        {"w": ("shape_error", "transposed")}, ("out", "x", "b"),
    ),
    Wrong(  # the sign of |y_pred - y_true|'s slope the wrong way round
        "nnfs", "mae.yaml", "layers.py",
        "np.sign(dvalues - y_true) / outputs", "np.sign(y_true - dvalues) / outputs  # BUG: the sign",
        {"y_pred": ("mismatch", "sign_flipped")}, ("loss",),
    ),
    Wrong(  # a notebook: the bug is in one of its cells
        "ipynb", "lin.yaml", "backprop.ipynb",
        "b.g = out.g.sum(0)", "b.g = out.g  # BUG: b was broadcast over the rows",
        {"b": ("shape_error", "missing_reduction")}, ("out", "x", "w"),
    ),
    Wrong(
        "ipynb", "relu.yaml", "backprop.ipynb",
        "inp.g = (inp > 0).float() * out.g", "inp.g = out.g  # BUG: the mask is forgotten",
        {"x": ("mismatch", "partial")}, ("out",),
    ),
    Wrong(  # a loss gradient: the mean's 1/n forgotten
        "loss", "mse.yaml", "loss.py",
        ".unsqueeze(-1) / inp.shape[0]", ".unsqueeze(-1)  # BUG: mse is a mean, divide by n",
        {"inp": ("mismatch", "scaled")}, (), hint="1/n",
    ),
    Wrong(
        "loss", "cross_entropy.yaml", "loss.py",
        "inp.g = probs / inp.shape[0]", "inp.g = probs  # BUG: the loss is a mean over the batch",
        {"inp": ("mismatch", "scaled")}, (), hint="1/n",
    ),
    Wrong(  # a training step: the hidden layer's error skips the output sigmoid's slope
        "step", "train.yaml", "network.py",
        "hidden_errors = numpy.dot(self.who.T, output_deltas)",
        "hidden_errors = numpy.dot(self.who.T, output_errors)  # BUG: not through the sigmoid's slope",
        {"wih": ("mismatch", None)}, ("who",),
    ),
    Wrong(  # the clip of a clipped straight-through estimator forgotten for the input
        "functions", "ste.yaml", "ste.py",
        "ctx.grad_fn(grad_output.sum_to_size(ctx.in_shape)),",
        "grad_output.sum_to_size(ctx.in_shape),  # BUG: not clipped",
        {"x": ("mismatch", "partial")}, ("out",),
    ),
    Wrong(
        "functions", "gradient_reversal.yaml", "gradient_reversal.py",
        "return -ctx.alpha * grad_output, None", "return ctx.alpha * grad_output, None  # BUG: not reversed",
        {"x": ("mismatch", "sign_flipped")}, ("out",),
    ),
    Wrong(  # autograd of torch.max: the gradient stops below the bound
        "functions", "lower_bound.yaml", "lower_bound.py",
        "pass_through_if = (input >= bound) | (grad_output < 0)", "pass_through_if = input >= bound  # BUG",
        {"x": ("mismatch", "partial")}, ("out",), hint="6 of 24 elements of x (25%) are wrong",
    ),
    Wrong(  # icefall's own line: the saved tensors made to require grad keep their .grad
        "functions", "bias_norm.yaml", "bias_norm.py",
        "bias, log_scale = bias.detach().requires_grad_(), log_scale.detach().requires_grad_()",
        "bias.requires_grad = log_scale.requires_grad = True  # BUG: .grad accumulates across calls",
        {"bias": ("error", "not_repeatable"), "log_scale": ("error", "not_repeatable")}, ("out", "x"),
        hint="twice the first",
    ),
    Wrong(  # the sigmoid saved, and updated in place to save memory: a second backward cannot run
        "functions", "swish.yaml", "swish.py",
        "return grad_output * (sigmoid_x * (1 + x * (1 - sigmoid_x)))",
        "return grad_output * sigmoid_x.mul_(1 + x * (1 - sigmoid_x))  # BUG: in place on a saved tensor",
        {"MemoryEfficientSwish.backward": ("error", "not_repeatable")}, ("out", "x"),
        hint="modified by an inplace operation", edits=SAVED_SIGMOID,
    ),
    Wrong(  # the sigmoid saved from the forward: right gradients, but a constant to autograd
        "functions", "swish.yaml", "swish.py",
        "return x * torch.sigmoid(x)", "return x * sigmoid_x",
        {"x (2nd order)": ("mismatch", None)}, ("out", "x", "grad_out (2nd order)"),
        hint="a tensor computed in the forward and saved is a constant to it", flags=("--double",),
        edits=SAVED_SIGMOID,
    ),
    Wrong(  # the backward gathers by the inverse permutation instead of the sort
        "functions", "reverse_sort.yaml", "reverse_sort.py",
        "ctx.sorted_idx = sorted_idx", "ctx.sorted_idx = undo_sorted_idx  # BUG: the inverse",
        {"out_vectors": ("mismatch", None), "logits": ("mismatch", None)},
        ("unsorted_vectors", "unsorted_logits"),
    ),
]  # fmt: skip


def put_bug(tmp_path: Path, wrong: Wrong) -> Path:
    """Copy the example and put the bug in; returns the copied spec."""
    folder = tmp_path / wrong.example
    shutil.copytree(EXAMPLES / wrong.example, folder)
    code = folder / wrong.file
    text = code.read_text()
    for old, new in ((wrong.right, wrong.wrong), *wrong.edits):
        assert text.count(old) == 1, f"{old!r} is not once in {wrong.file}"
        text = text.replace(old, new)
    code.write_text(text)
    return folder / wrong.spec


@pytest.mark.parametrize("wrong", WRONGS, ids=lambda w: f"{w.example}/{w.file}:{w.spec}")
def test_wrong_variant_fails_with_its_row_flagged(gradcheck, tmp_path, wrong):
    ran = gradcheck("run", str(put_bug(tmp_path, wrong)), "--format", "json", *wrong.flags)

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
    if wrong.flags:  # the bug is one only those flags look for
        assert gradcheck("run", str(tmp_path / wrong.example / wrong.spec)).exit_code == 0


def test_a_wrong_variant_shows_its_diagnosis_in_the_table(gradcheck, tmp_path):
    ran = gradcheck("run", str(put_bug(tmp_path, WRONGS[1])))
    assert ran.exit_code == 1
    row = next(line for line in ran.stdout.splitlines() if line.split()[:2] == ["b", "param"])
    assert row.rstrip().endswith("shape_error")
    assert "b: [missing_reduction]" in ran.stdout
