"""No reference: the hand-written backward against finite differences of the hand-written forward.

The same rows, shape errors, worst element and diagnoses as with a reference; elements at a
kink are ``unstable`` and left out; big tensors are sampled, and the report says so.
``--numerical`` on a spec with a reference checks the reference against its own finite
differences: a reference whose autograd gradients are not its derivative is a spec error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXAMPLES, LINEAR_FORWARD, LINEAR_SPEC, WRONG_DTYPE_BIAS, WRONG_DTYPE_IDS
from tests.test_diagnose import MISTAKES, ZOO

NUMERICAL = EXAMPLES / "numerical"


def run_json(gradcheck, *args: str) -> tuple[int, dict]:
    ran = gradcheck("run", *args, "--format", "json")
    return ran.exit_code, json.loads(ran.stdout)["results"][0]


def checks_of(result: dict) -> dict[str, dict]:
    return {c["name"]: c for c in result["checks"]}


def without_reference(spec: Path, folder: Path) -> Path:
    """A copy of ``spec`` with no reference (its code files found where they were)."""
    data = yaml.safe_load(spec.read_text())
    data.pop("reference", None)
    data.pop("reference_grads", None)
    implementation = data["implementation"]
    if "file" in implementation:
        implementation["file"] = str((spec.parent / implementation["file"]).resolve())
    copy = folder / spec.name
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


@pytest.mark.parametrize(
    "spec",
    [
        NUMERICAL / "conv.yaml",  # numpy, cs231n's (out, cache) and (dout, cache)
        NUMERICAL / "lin.yaml",  # fast.ai: gradients on .g
        NUMERICAL / "linear_function.yaml",  # an autograd.Function
        EXAMPLES / "functional" / "linear.yaml",  # functional torch (its reference removed below)
        EXAMPLES / "fastai" / "model.yaml",  # the lesson's Module classes
        EXAMPLES / "lstm" / "lstm_step.yaml",  # two outputs
        EXAMPLES / "nnfs" / "dense.yaml",  # a class keeping its results on attributes
    ],
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
def test_every_convention_passes_by_finite_differences_of_its_own_forward(gradcheck, tmp_path, spec):
    spec = spec if spec.parent == NUMERICAL else without_reference(spec, tmp_path)
    code, result = run_json(gradcheck, str(spec))
    assert code == 0, result
    assert result["reference"].startswith("numerical (central differences, eps=")
    assert all(c["kind"] != "output" for c in result["checks"])  # the forward is the definition
    table = gradcheck("run", str(spec)).stdout
    assert "reference: numerical (central differences, eps=6.1e-06 relative)" in table.splitlines()[0]


# Every mistake of the zoo in the backward; a mistake in the forward (forward_mismatch) has
# nothing to be found against without a reference: the forward is the definition here.
CHECKED = [m for m in MISTAKES if m.dtype in ("float64", "float32") and m.diagnosis != "forward_mismatch"]


@pytest.mark.parametrize("mistake", CHECKED, ids=str)
def test_every_mistake_of_the_zoo_is_caught_with_its_diagnosis_without_its_reference(
    gradcheck, tmp_path, mistake
):
    spec = without_reference(ZOO / f"{mistake.spec}.yaml", tmp_path)
    code, result = run_json(gradcheck, str(spec), "--dtype", mistake.dtype, "--samples", "0")
    assert code == 1
    flagged = checks_of(result)[mistake.tensor]
    assert flagged["status"] == mistake.status
    assert flagged["diagnosis"] == mistake.diagnosis


def test_the_correct_zoo_layers_pass_without_their_reference(gradcheck, tmp_path):
    correct = sorted(ZOO.glob("*_correct.yaml"))
    assert len(correct) >= 5
    for spec in correct:
        code, result = run_json(gradcheck, str(without_reference(spec, tmp_path)))
        assert code == 0, (spec.name, result)


def test_elements_at_a_kink_are_unstable_left_out_and_counted():
    # Random inputs never sit exactly at a kink; a ReLU's input with exact zeros does.
    import torch

    from gradcheck_cli.case import make_case
    from gradcheck_cli.numerical import numerical_vjp
    from gradcheck_cli.numerical_mode import _row
    from gradcheck_cli.spec import load_spec

    case = make_case(load_spec(EXAMPLES / "mistakes" / "relu_mask.yaml"))
    x = torch.tensor(
        [[-1.0, 0.0, 2.0], [0.0, 3.0, -2.0], [1.0, -1.0, 0.0], [0.5, 0.0, -0.5]], dtype=torch.float64
    )
    g = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3)
    found = numerical_vjp(lambda v: {"out": v["x"].clamp(min=0)}, {"x": x}, {"out": g}, ["x"])
    right = g * (x > 0)
    row = _row(
        case.spec,
        case,
        case.spec.tensors["x"],
        found["x"],
        right,
        case.tolerance,
        {"x": x},
        found,
        {"out": g},
    )
    assert row.status == "pass" and row.unstable == 4  # the four zeros, whatever the backward says there
    wrong = _row(
        case.spec, case, case.spec.tensors["x"], found["x"], g, case.tolerance, {"x": x}, found, {"out": g}
    )
    assert wrong.status == "mismatch" and wrong.diagnosis == "partial" and wrong.mismatched == 4


def test_a_tensor_with_every_element_at_a_kink_is_an_error_not_a_pass():
    # Nothing left to compare is no evidence: a row of 0 of 12 compared must not read as PASS.
    import torch

    from gradcheck_cli.case import make_case
    from gradcheck_cli.numerical import numerical_vjp
    from gradcheck_cli.numerical_mode import _row
    from gradcheck_cli.spec import load_spec

    case = make_case(load_spec(EXAMPLES / "mistakes" / "relu_mask.yaml"))
    x = torch.zeros(4, 3, dtype=torch.float64)
    g = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3)
    found = numerical_vjp(lambda v: {"out": v["x"].clamp(min=0)}, {"x": x}, {"out": g}, ["x"])
    assert found["x"].n_unstable == 12
    args = (case.tolerance, {"x": x}, found, {"out": g})
    row = _row(case.spec, case, case.spec.tensors["x"], found["x"], g * 0, *args)
    assert row.status == "error" and not row.ok
    assert row.hint.startswith("no element of x could be compared (12 at a kink)")
    assert row.shapes_text() == ("[batch=4, features=3]", "[batch=4, features=3]")  # the shape is right


def test_a_big_tensor_is_sampled_and_a_wrong_element_outside_the_sample_is_caught(gradcheck, write_layer):
    spec = write_layer(
        LINEAR_SPEC.replace("{batch: 5, in: 3, out: 4}", "{batch: 8, in: 96, out: 96}"),
        LINEAR_FORWARD
        + "\ndef linear_backward(grad_out, x, weight, bias):\n"
        + "    gw = grad_out.T @ x\n    gw[95, 95] += 1.0  # one element wrong\n"
        + "    return grad_out @ weight, gw, grad_out.sum(0)\n",
    )
    data = yaml.safe_load(spec.read_text())
    del data["reference"]
    spec.write_text(yaml.safe_dump(data))
    code, result = run_json(gradcheck, str(spec), "--samples", "100")
    assert code == 1
    weight = checks_of(result)["weight"]
    assert weight["sampled"] == {"elements": 100, "numel": 9216, "directions": 4}
    assert weight["status"] == "mismatch"
    assert any("finite differences of weight: 100 of 9,216 elements" in note for note in result["notes"])
    table = gradcheck("run", str(spec), "--samples", "100").stdout
    row = next(line.split() for line in table.splitlines() if line.lstrip().startswith("weight "))
    assert row[-2] == f"{weight['mismatched']}/100"  # counted over the sampled elements, not all 9,216
    code, result = run_json(gradcheck, str(spec), "--samples", "0")  # every element: the one is named
    weight = checks_of(result)["weight"]
    assert weight["sampled"] is None and weight["mismatched"] == 1 and weight["worst_index"] == [95, 95]


def test_numerical_on_a_wrong_reference_is_a_spec_error(gradcheck, write_layer):
    # The value is 2 x (x @ w.T + b), but autograd sees only one of the two terms.
    wrong = LINEAR_SPEC.replace(
        '"F.linear(x, weight, bias)"', '"F.linear(x, weight, bias) + F.linear(x, weight, bias).detach()"'
    )
    backward = (
        "\ndef linear_backward(grad_out, x, weight, bias):\n"
        "    return grad_out @ weight, grad_out.T @ x, grad_out.sum(0)\n"
    )
    doubled = LINEAR_FORWARD.replace("return x @ weight.T + bias", "return 2 * (x @ weight.T + bias)")
    spec = write_layer(wrong, doubled + backward)
    assert gradcheck("run", str(spec)).exit_code == 0  # the backward agrees with the (wrong) reference
    ran = gradcheck("run", str(spec), "--numerical")
    assert ran.exit_code == 2
    assert "--numerical: the reference's autograd gradients disagree with finite differences" in ran.stderr
    good = write_layer(LINEAR_SPEC.replace("layer.py", "good.py"), LINEAR_FORWARD + backward, name="good")
    code, result = run_json(gradcheck, str(good), "--numerical")
    assert (
        code == 0
        and "--numerical: the reference's gradients agree with its finite differences" in result["notes"]
    )


def test_without_reference_or_forward_is_a_spec_error(gradcheck, write_layer):
    spec = write_layer(LINEAR_SPEC.replace('reference: "F.linear(x, weight, bias)"\n', "").replace(
        '  forward: "linear_forward(x, weight, bias) -> out"\n', ""), LINEAR_FORWARD)  # fmt: skip
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2
    assert "with no reference, the expected gradients are finite differences of the hand-written forward" in (
        ran.stderr
    )


def test_a_calibrated_tolerance_needs_a_reference(gradcheck):
    ran = gradcheck("run", str(NUMERICAL / "lin.yaml"), "--tolerance", "calibrated", "--dtype", "float32")
    assert ran.exit_code == 2 and "a calibrated tolerance needs PyTorch's own result" in ran.stderr
    code, result = run_json(gradcheck, str(NUMERICAL / "lin.yaml"), "--dtype", "float32")
    assert code == 0 and result["tolerance"]["mode"] == "absolute"
    assert "finite differences in float64; the backward ran in float32" in result["notes"]


NO_REFERENCE = LINEAR_SPEC.replace('reference: "F.linear(x, weight, bias)"\n', "")


@pytest.mark.parametrize("bias_grad, status, hint", WRONG_DTYPE_BIAS, ids=WRONG_DTYPE_IDS)
def test_a_complex_or_integer_gradient_of_a_real_tensor_is_a_wrong_dtype_by_finite_differences(
    gradcheck, write_layer, bias_grad, status, hint
):
    # As with a reference (test_robustness): autograd refuses both for a float64 tensor.
    code = LINEAR_FORWARD + (
        "\ndef linear_backward(grad_out, x, weight, bias):\n"
        f"    return grad_out @ weight, grad_out.T @ x, {bias_grad}\n"
    )
    exit_code, result = run_json(gradcheck, str(write_layer(NO_REFERENCE, code)))
    assert exit_code == 1
    bias = checks_of(result)["bias"]
    assert (bias["status"], bias["diagnosis"]) == (status, "wrong_dtype")
    assert hint in bias["hint"]
    assert checks_of(result)["x"]["status"] == checks_of(result)["weight"]["status"] == "pass"


def test_an_integer_output_is_left_out_of_the_finite_differences(gradcheck, write_layer):
    # A quantized copy of x beside the float output: its steps under the perturbation are no gradient.
    spec = NO_REFERENCE.replace("implementation:", "outputs: [out, levels]\nimplementation:").replace(
        "-> out", "-> out, levels"
    )
    code = (
        "def linear_forward(x, weight, bias):\n"
        "    return x @ weight.T + bias, (x * 1e7).long()\n"
        "\ndef linear_backward(grad_out, x, weight, bias):\n"
        "    return grad_out @ weight, grad_out.T @ x, grad_out.sum(0)\n"
    )
    exit_code, result = run_json(gradcheck, str(write_layer(spec, code)))
    assert {c["name"]: c["status"] for c in result["checks"]} == {
        "x": "pass",
        "weight": "pass",
        "bias": "pass",
    }
    assert exit_code == 0


def test_the_double_backward_is_said_not_checked_in_numerical_mode(gradcheck, tmp_path):
    # Finite differences give first order only: --double (or double: true) must not pass in silence.
    spec = NUMERICAL / "linear_function.yaml"
    code, result = run_json(gradcheck, str(spec))
    assert code == 0 and not any("double backward" in note for note in result["notes"])
    code, result = run_json(gradcheck, str(spec), "--double")
    assert code == 0 and all("2nd order" not in c["name"] for c in result["checks"])
    assert "--double: the double backward is not checked in numerical mode" in " ".join(result["notes"])
    data = yaml.safe_load(spec.read_text())
    data["double"] = True
    data["implementation"]["file"] = str((spec.parent / data["implementation"]["file"]).resolve())
    (tmp_path / "double.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    code, result = run_json(gradcheck, str(tmp_path / "double.yaml"))
    assert "double: true: the double backward is not checked in numerical mode" in " ".join(result["notes"])


def _relu_row(x, backward_gives, samples=None):
    """The table lines and the row a ReLU's x gradient gets against finite differences."""
    import torch

    from gradcheck_cli.case import make_case
    from gradcheck_cli.numerical import numerical_vjp
    from gradcheck_cli.numerical_mode import _row
    from gradcheck_cli.report.table import details, row
    from gradcheck_cli.spec import load_spec

    case = make_case(load_spec(EXAMPLES / "mistakes" / "relu_mask.yaml"))
    g = torch.linspace(-1, 1, x.numel(), dtype=torch.float64).reshape(x.shape)
    found = numerical_vjp(
        lambda v: {"out": v["x"].clamp(min=0)}, {"x": x}, {"out": g}, ["x"], samples=samples
    )
    args = (case.tolerance, {"x": x}, found, {"out": g})
    check = _row(case.spec, case, case.spec.tensors["x"], found["x"], backward_gives(g), *args)
    return check, row(check), details(check, False)


def test_a_mismatch_counts_only_the_compared_elements_and_says_how_many_were_left_out():
    # 4 of the 12 elements sit at the kink and are left out: "4 of 12" would claim 12 were compared.
    import torch

    x = torch.tensor(
        [[-1.0, 0.0, 2.0], [0.0, 3.0, -2.0], [1.0, -1.0, 0.0], [0.5, 0.0, -0.5]], dtype=torch.float64
    )
    check, _, lines = _relu_row(x, lambda g: g)  # the mask forgotten: wrong wherever x < 0
    assert (check.status, check.mismatched, check.unstable) == ("mismatch", 4, 4)
    assert check.hint.startswith(
        "4 of 8 compared elements mismatch (4 left out: 4 at a kink, taken as right below); "
    )
    assert lines[0].startswith("x: [partial] 4 of 8 compared elements mismatch (4 left out: 4 at a kink")
    right, _, _ = _relu_row(x, lambda g: g * (x > 0))
    assert right.status == "pass" and right.hint is None
    wrong_without_kinks, _, _ = _relu_row(x + 0.25, lambda g: g)  # nothing left out: nothing to say
    assert wrong_without_kinks.status == "mismatch" and "compared elements" not in wrong_without_kinks.hint


def test_a_sampled_mismatch_counts_the_compared_elements_of_the_sample():
    import torch

    x = torch.linspace(-3, 3, 40, dtype=torch.float64).reshape(8, 5)
    x[::2] = 0.0  # half the elements at the kink
    check, _, _ = _relu_row(x, lambda g: g, samples=20)
    sampled, compared = check.sampled["elements"], 20 - check.unstable
    assert check.status == "mismatch" and check.sampled["elements"] == sampled == 20
    assert check.hint.startswith(
        f"{check.mismatched} of the {compared} compared elements are wrong (20 sampled of 40;"
        f" {check.unstable} left out: {check.unstable} at a kink)"
    )
