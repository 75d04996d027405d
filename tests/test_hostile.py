"""Hostile and careless input: nothing a spec or the checked code does can hang gradcheck,
crash it silently, or fool it.

Each case asserts the exit code, the one-line message and, in a directory run, that the
other specs' results are all there. (tests/test_robustness.py holds the everyday mistakes.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import LINEAR_FORWARD, LINEAR_SPEC

CORRECT_BACKWARD = """
def linear_backward(grad_out, x, weight, bias):
    return grad_out @ weight, grad_out.T @ x, grad_out.sum(0)
"""


def one_line_error(ran, fragment: str, code: int = 2) -> None:
    assert ran.exit_code == code, (ran.stdout, ran.stderr)
    err = ran.stderr.strip()
    assert "Traceback" not in err and "Traceback" not in ran.stdout
    assert len(err.splitlines()) == 1, err
    assert err.startswith("gradcheck: error:"), err
    assert fragment in err, err


def good_spec(folder: Path, name: str = "good") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(LINEAR_FORWARD + CORRECT_BACKWARD))
    spec = folder / f"{name}.yaml"
    spec.write_text(
        textwrap.dedent(LINEAR_SPEC).replace("name: layer", f"name: {name}").replace("layer.py", f"{name}.py")
    )
    return spec


def results(ran) -> dict[str, dict]:
    return {r["source"].rsplit("/", 1)[-1]: r for r in json.loads(ran.stdout)["results"]}


# -- loading a spec is bounded ------------------------------------------------------------

BILLION_LAUGHS = """\
name: lol
a: &a {x: 1, y: 1, z: 1}
b: &b {p: *a, q: *a, r: *a, s: *a, t: *a, u: *a, v: *a, w: *a, aa: *a}
c: &c {p: *b, q: *b, r: *b, s: *b, t: *b, u: *b, v: *b, w: *b, aa: *b}
d: &d {p: *c, q: *c, r: *c, s: *c, t: *c, u: *c, v: *c, w: *c, aa: *c}
e: &e {p: *d, q: *d, r: *d, s: *d, t: *d, u: *d, v: *d, w: *d, aa: *d}
f: &f {p: *e, q: *e, r: *e, s: *e, t: *e, u: *e, v: *e, w: *e, aa: *e}
g: &g {p: *f, q: *f, r: *f, s: *f, t: *f, u: *f, v: *f, w: *f, aa: *f}
h: &h {p: *g, q: *g, r: *g, s: *g, t: *g, u: *g, v: *g, w: *g, aa: *g}
i: &i {p: *h, q: *h, r: *h, s: *h, t: *h, u: *h, v: *h, w: *h, aa: *h}
reference: x
implementation: {file: x.py, backward: "f(x) -> x"}
"""


def test_a_yaml_alias_bomb_is_a_spec_error_not_gigabytes(gradcheck, tmp_path):
    spec = tmp_path / "lol.yaml"
    spec.write_text(BILLION_LAUGHS)
    one_line_error(gradcheck("run", str(spec)), "unknown key")


def test_an_alias_bomb_under_spec_paths_does_not_hang_help_or_list(gradcheck, tmp_path, monkeypatch):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "lol.yaml").write_text(BILLION_LAUGHS)
    (tmp_path / "pyproject.toml").write_text('[tool.gradcheck]\nspec_paths = ["specs"]\n')
    monkeypatch.chdir(tmp_path)
    assert gradcheck("--help").exit_code == 0
    ran = gradcheck("list")
    assert ran.exit_code == 0 and "linear" in ran.stdout


@pytest.mark.parametrize(
    "shape, message",
    [
        ("10 ** 10 ** 10", "too large a number"),
        ("2 ** 100000", "too large a number"),
        ("batch / 0", "division"),
    ],
)
def test_shape_arithmetic_is_bounded(gradcheck, write_layer, shape, message):
    spec = write_layer(LINEAR_SPEC.replace("x: [batch, in]", f'x: [batch, "{shape}"]'), LINEAR_FORWARD)
    one_line_error(gradcheck("run", str(spec)), message)


def test_dev_zero_is_not_read_without_end(gradcheck):
    one_line_error(gradcheck("run", "/dev/zero"), "not a regular file")


def test_a_file_too_large_to_be_a_spec(gradcheck, tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (2 << 20) + "\nname: big\n")
    one_line_error(gradcheck("run", str(big)), "larger than a spec can be")


def test_a_fifo_named_yaml_in_a_scanned_folder_does_not_hang(gradcheck, tmp_path):
    good_spec(tmp_path)
    os.mkfifo(tmp_path / "pipe.yaml")
    ran = gradcheck("run", str(tmp_path), "--format", "json")
    assert ran.exit_code == 2
    found = results(ran)
    assert found["good.yaml"]["status"] == "pass"
    assert "not a regular file" in found["pipe.yaml"]["error"]


def test_a_symlink_loop_in_a_scanned_folder_does_not_hang(gradcheck, tmp_path):
    good_spec(tmp_path / "specs")
    (tmp_path / "specs" / "loop").symlink_to(tmp_path / "specs")
    (tmp_path / "specs" / "a.yaml").symlink_to(tmp_path / "specs" / "b.yaml")
    (tmp_path / "specs" / "b.yaml").symlink_to(tmp_path / "specs" / "a.yaml")
    ran = gradcheck("run", str(tmp_path / "specs"), "--format", "json")
    assert ran.exit_code == 2
    found = results(ran)
    assert found["good.yaml"]["status"] == "pass"
    assert "Too many levels of symbolic links" in found["a.yaml"]["error"]


# -- encodings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding, message",
    [("utf-16", "the file is UTF-16, not UTF-8"), ("latin-1", "the file is not UTF-8: byte 0xe9")],
)
def test_an_undecodable_spec_named_on_the_command_line(gradcheck, write_layer, tmp_path, encoding, message):
    text = textwrap.dedent(LINEAR_SPEC).replace("name: layer", "name: layer\ndescription: café")
    spec = tmp_path / "layer.yaml"
    spec.write_bytes(text.encode(encoding))
    one_line_error(gradcheck("run", str(spec)), message)


def test_an_undecodable_spec_in_a_scanned_folder_is_an_error_result_never_skipped(gradcheck, tmp_path):
    good_spec(tmp_path)
    (tmp_path / "ps.yaml").write_bytes("name: ps\nreference: x\n".encode("utf-16"))
    ran = gradcheck("run", str(tmp_path), "--format", "json")
    assert ran.exit_code == 2  # never PASS
    found = results(ran)
    assert found["good.yaml"]["status"] == "pass"
    assert found["ps.yaml"]["status"] == "error" and "UTF-16" in found["ps.yaml"]["error"]


def test_an_undecodable_file_under_spec_paths_breaks_no_command(gradcheck, tmp_path, monkeypatch):
    good_spec(tmp_path / "specs")
    (tmp_path / "specs" / "ps.yaml").write_bytes("name: ps\nreference: x\n".encode("utf-16"))
    (tmp_path / "pyproject.toml").write_text('[tool.gradcheck]\nspec_paths = ["specs"]\n')
    monkeypatch.chdir(tmp_path)
    assert gradcheck("--help").exit_code == 0
    listed = gradcheck("list")
    assert listed.exit_code == 0 and "good" in listed.stdout and "UTF-16" in listed.stderr
    assert gradcheck("good").exit_code == 0


# -- verdicts cannot be fooled -------------------------------------------------------------


def test_a_reference_that_gives_nan_is_a_spec_error_about_the_reference(gradcheck, write_layer):
    spec = write_layer(
        LINEAR_SPEC.replace('"F.linear(x, weight, bias)"', '"F.linear(x, weight, bias).log()"'),
        "import torch\n\ndef linear_forward(x, weight, bias):\n    return (x @ weight.T + bias).log()\n"
        + CORRECT_BACKWARD,
    )
    one_line_error(gradcheck("run", str(spec)), "reference: the reference's output 'out' is NaN or Inf at")


def test_output_never_overwrites_a_file_the_checked_spec_reads(gradcheck, tmp_path):
    spec = good_spec(tmp_path)
    code = tmp_path / "good.py"
    before = code.read_text()
    one_line_error(
        gradcheck("run", str(spec), "-o", str(code)), "is good's implementation file: gradcheck will not"
    )
    one_line_error(gradcheck("run", str(tmp_path), "-o", str(spec)), "is good's spec file")
    assert code.read_text() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (("--seed", "18446744073709551615"), "--seed must be an integer from 0 to 2**63 - 1"),
        (("--batch", "99999999999999999999999999"), "--batch is 99999999999999999999999999: larger than any"),
        (("--atol", "inf"), "--atol must be a non-negative number, got inf"),
    ],
)
def test_out_of_range_numbers_are_usage_errors(gradcheck, args, message):
    one_line_error(gradcheck("linear", *args), message)


def test_an_exception_message_with_a_lone_surrogate_is_printed(gradcheck, write_layer):
    spec = write_layer(
        LINEAR_SPEC,
        LINEAR_FORWARD
        + "\ndef linear_backward(grad_out, x, weight, bias):\n    raise ValueError('bad \\udc80 byte')\n",
    )
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 1
    assert "ValueError: bad \\udc80 byte" in ran.stdout


def test_checked_code_that_closes_stdout_does_not_take_the_report_with_it(gradcheck, write_layer):
    spec = write_layer(
        LINEAR_SPEC,
        LINEAR_FORWARD
        + "\nimport sys\n"
        + CORRECT_BACKWARD.replace("    return", "    sys.stdout.close()\n    return"),
    )
    # --pdb runs the checked code in gradcheck's own process; a real one (CliRunner's stdout
    # is a buffer that closing destroys).
    ran = subprocess.run(
        [sys.executable, "-m", "gradcheck_cli", "run", str(spec), "--pdb"], capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    assert "PASS: 1 passed" in ran.stdout


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"spec": 123}, TypeError, "spec must be a path or a Spec, got int"),
        (
            {"reference": lambda x: x, "shapes": "x", "backward": lambda g, x: g},
            TypeError,
            "shapes must be a mapping",
        ),
        ({"spec": "layer_specs/linear.yaml", "device": None}, TypeError, "device must be str"),
        ({"spec": "layer_specs/linear.yaml", "seed": 2**70}, Exception, "seed must be an integer from 0"),
        ({"spec": "layer_specs/linear.yaml", "atol": "x"}, TypeError, "atol must be int or float"),
        ({"spec": "layer_specs/linear.yaml", "atol": -1.0}, Exception, "atol must be a non-negative number"),
        ({"spec": "layer_specs/linear.yaml", "rtol": float("nan")}, Exception, "rtol must be a non-negative"),
    ],
)
def test_check_given_wrong_types_names_the_argument(kwargs, error, message, monkeypatch):
    from gradcheck_cli import GradcheckError, check
    from tests.conftest import REPO

    monkeypatch.chdir(REPO)
    spec = kwargs.pop("spec", None)
    with pytest.raises(error, match=message.replace("*", r"\*")) as info:
        check(spec, **kwargs)
    if error is Exception:
        assert isinstance(info.value, GradcheckError)
