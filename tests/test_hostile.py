"""Hostile and careless input: nothing a spec or the checked code does can hang gradcheck,
crash it silently, or fool it.

Each case asserts the exit code, the one-line message and, in a directory run, that the
other specs' results are all there. (tests/test_robustness.py holds the everyday mistakes.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
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
        ({"spec": "layer_specs/linear.yaml", "seed": 2**70}, Exception, "seed= must be an integer from 0"),
        ({"spec": "layer_specs/linear.yaml", "atol": "x"}, TypeError, "atol must be int or float"),
        ({"spec": "layer_specs/linear.yaml", "atol": -1.0}, Exception, "atol= must be a non-negative number"),
        (
            {"spec": "layer_specs/linear.yaml", "rtol": float("nan")},
            Exception,
            "rtol= must be a non-negative",
        ),
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


# -- the checked code cannot end or wedge the run --------------------------------------------

ENDINGS = {
    "exits_0": "import os\n    os._exit(0)",
    "exits_7": "import os\n    os._exit(7)",
    "exits_in_c": "import ctypes\n    ctypes.CDLL(None)._exit(5)",  # under Python's os._exit
    "segfaults": "import ctypes\n    ctypes.string_at(0)",
    "sys_exit": "import sys\n    sys.exit(3)",
    "spins": "while True:\n        pass",
}


def ending_spec(folder: Path, name: str, body: str) -> Path:
    """A linear spec whose backward does ``body`` (ends the process, crashes, spins)."""
    spec = good_spec(folder, name)
    code = folder / f"{name}.py"
    code.write_text(
        textwrap.dedent(LINEAR_FORWARD) + f"\n\ndef linear_backward(grad_out, x, weight, bias):\n    {body}\n"
    )
    return spec


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_spec_whose_process_dies_is_an_error_result_and_the_run_goes_on(gradcheck, tmp_path, jobs):
    good_spec(tmp_path, "a_good")
    for name, body in ENDINGS.items():
        ending_spec(tmp_path, name, body)
    good_spec(tmp_path, "z_good")
    out = tmp_path / "report.json"
    ran = gradcheck(
        "run", str(tmp_path), "--jobs", jobs, "--timeout", "1", "-o", str(out), "--format", "json"
    )
    assert ran.exit_code == 1  # never 0 when a spec did not complete
    found = {r["source"].rsplit("/", 1)[-1]: r for r in json.loads(out.read_text())["results"]}
    assert found["a_good.yaml"]["status"] == found["z_good.yaml"]["status"] == "pass"
    errors = {name: found[f"{name}.yaml"]["error"] for name in ENDINGS}
    # os._exit is refused where the checked code runs, and said with the line that called it
    for code in (0, 7):
        at = f"at {tmp_path / f'exits_{code}.py'}:10"
        assert errors[f"exits_{code}"] == f"backward linear_backward() called os._exit({code}) {at}"
    # an exit under Python's (C code's) ends the worker, which is said as well
    assert errors["exits_in_c"] == "the checked code ended the process: exit code 5"
    assert (
        errors["segfaults"] == f"the checked code was killed by SIGSEGV (at {tmp_path / 'segfaults.py'}:10)"
    )
    assert "SystemExit" in errors["sys_exit"]  # raised in the checked code: caught where it ran
    assert errors["spins"].startswith("timed out after 1 s; the checked code was at ")
    assert f"{tmp_path / 'spins.py'}:" in errors["spins"]


def test_a_module_that_spins_at_import_is_stopped_with_its_line(gradcheck, tmp_path):
    spec = good_spec(tmp_path, "loops")
    (tmp_path / "loops.py").write_text("import time\n\nwhile True:\n    time.sleep(0.01)\n")
    ran = gradcheck("run", str(spec), "--timeout", "1", "--format", "json")
    assert ran.exit_code == 1
    (result,) = json.loads(ran.stdout)["results"]
    assert result["error"].startswith("timed out after 1 s; the checked code was at ")
    assert f"{tmp_path / 'loops.py'}:4" in result["error"]


def test_one_specs_side_effects_never_reach_another(gradcheck, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    specs = tmp_path / "specs"
    good_spec(specs, "a_moves")
    (specs / "a_moves.py").write_text(
        (specs / "a_moves.py").read_text()
        + "\nimport os\nimport torch.nn.functional as F\nos.chdir('/')\nF.linear = lambda *a, **k: 0\n"
    )
    good_spec(specs, "b_good")
    ran = gradcheck("run", str(specs), "-o", "rep.json", "--format", "json")
    assert ran.exit_code == 0
    report = json.loads((tmp_path / "rep.json").read_text())  # written where it was asked for
    assert [r["status"] for r in report["results"]] == ["pass", "pass"]


def test_two_hundred_specs_some_of_which_die_give_two_hundred_results(gradcheck, tmp_path):
    bodies = list(ENDINGS.items())
    for i in range(200):
        if i % 40 == 7:
            name, body = bodies[(i // 40) % len(bodies)]
            ending_spec(tmp_path, f"s{i:03d}_{name}", body)
        else:
            good_spec(tmp_path, f"s{i:03d}")
    for jobs in ("1", "2"):
        out = tmp_path / f"report{jobs}.json"
        ran = gradcheck(
            "run", str(tmp_path), "--jobs", jobs, "--timeout", "1", "-o", str(out), "--format", "json"
        )
        assert ran.exit_code == 1
        report = json.loads(out.read_text())
        assert len(report["results"]) == 200
        assert report["summary"]["passed"] == 195 and report["summary"]["errors"] == 5


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    children = _children()
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_write_the_report_and_leave_no_worker_behind(tmp_path, signum, code):
    good_spec(tmp_path, "a_good")
    good_spec(tmp_path, "b_good")
    ending_spec(tmp_path, "c_spins", ENDINGS["spins"])
    good_spec(tmp_path, "d_good")
    out = tmp_path / "rep.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gradcheck_cli",
            "run",
            str(tmp_path),
            "-o",
            str(out),
            "-f",
            "json",
            "--timeout",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        spinning = False
        while time.monotonic() < deadline and not spinning:  # until the spinning worker burns CPU
            time.sleep(0.2)
            children = _children()
            workers = [w for server in children.get(process.pid, []) for w in children.get(server, [])]
            for pid in workers:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                spinning = spinning or (fields[0] == "R" and int(fields[11]) > 50)  # utime > 0.5 s
        assert spinning, "the spinning spec never started"
        family = _descendants(process.pid)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == code
    assert "Traceback" not in stderr
    report = json.loads(out.read_text())
    statuses = [r["status"] for r in report["results"]]
    assert statuses == ["pass", "pass", "interrupted", "interrupted"]
    assert report["summary"]["interrupted"] == 2
    time.sleep(1)
    alive = {pid for pid in family if Path(f"/proc/{pid}").exists()}
    assert not alive, f"left behind: {alive}"


@pytest.mark.parametrize(
    "grad_x",
    [
        "(grad_out @ weight).to(torch.complex128) + 1000j",
        "(grad_out @ weight).numpy() + 1000j",
        "torch.full_like(x, float('inf'))",
        "torch.full_like(x, float('nan'))",
    ],
    ids=["torch-imaginary", "numpy-imaginary", "inf", "nan"],
)
def test_an_imaginary_or_non_finite_gradient_fails_whatever_the_tolerance(gradcheck, write_layer, grad_x):
    code = LINEAR_FORWARD + (
        "\ndef linear_backward(grad_out, x, weight, bias):\n"
        f"    return {grad_x}, grad_out.T @ x, grad_out.sum(0)\n"
    )
    spec = write_layer(LINEAR_SPEC, code)
    ran = gradcheck("run", str(spec), "--atol", "1e30", "--rtol", "1e30", "--format", "json")
    assert ran.exit_code == 1
    x = next(c for c in json.loads(ran.stdout)["results"][0]["checks"] if c["name"] == "x")
    assert x["status"] in ("mismatch", "error")
