"""`gradcheck new NAME --convention ...`: a spec and a template that fails until filled in."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gradcheck_cli.templates import CONVENTIONS

# What a user writes in place of the TODO, per convention (the template's own names).
FILLED_IN = {
    "functional": ["return grad_out @ w.T, x.T @ grad_out, grad_out.sum(0)"],
    "fastai": ["inp.g = out.g @ w.t()", "w.g = inp.t() @ out.g", "b.g = out.g.sum(0)"],
    "cs231n": ["dx = dout.dot(w.T).reshape(x.shape)", "dw = x.reshape(x.shape[0], -1).T.dot(dout)",
               "db = dout.sum(axis=0)", "return dx, dw, db"],
    "autograd_function": ["return grad_out @ weight, grad_out.T @ x, grad_out.sum(0)"],
    "class": ["self.inp.g = self.out.g @ self.w.t()", "self.w.g = self.inp.t() @ self.out.g",
              "self.b.g = self.out.g.sum(0)"],
    "step": ["self.w -= self.lr * x.T @ dout", "self.b -= self.lr * dout.sum(0)"],
}  # fmt: skip
# A plausible wrong fill-in: the bias gradient a mean over the batch, not a sum.
WRONG_BIAS = {
    "functional": ("grad_out.sum(0)", "grad_out.mean(0)"),
    "fastai": ("out.g.sum(0)", "out.g.mean(0)"),
    "cs231n": ("dout.sum(axis=0)", "dout.mean(axis=0)"),
    "autograd_function": ("grad_out.sum(0)", "grad_out.mean(0)"),
    "class": ("self.out.g.sum(0)", "self.out.g.mean(0)"),
    "step": ("dout.sum(0)", "dout.mean(0)"),
}
BIAS_NAME = {
    "functional": "b",
    "fastai": "b",
    "cs231n": "b",
    "autograd_function": "bias",
    "class": "b",
    "step": "b",
}
TODO = re.compile(r'^( *)raise NotImplementedError\("TODO.*$', re.M)


def fill_in(path, lines: list[str]) -> None:
    text = path.read_text()
    (match,) = TODO.finditer(text)
    indent = match.group(1)
    path.write_text(text[: match.start()] + "\n".join(indent + line for line in lines) + text[match.end() :])


def test_every_convention_has_a_template():
    assert (
        set(CONVENTIONS)
        == set(FILLED_IN)
        == {"functional", "fastai", "cs231n", "autograd_function", "class", "step"}
    )


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_a_template_fails_clearly_until_filled_in_then_passes(gradcheck, tmp_path, convention):
    ran = gradcheck("new", "my_layer", "--convention", convention, "--dir", str(tmp_path))
    assert ran.exit_code == 0
    spec, code = tmp_path / "my_layer.yaml", tmp_path / "my_layer.py"
    assert ran.stdout.splitlines() == [
        f"wrote {spec}",
        f"wrote {code}",
        f"write the backward in {code}, then: gradcheck run {spec}",
    ]
    assert "TODO" in code.read_text()

    # Before it is filled in: exit 1, an error naming the TODO and where it is.
    ran = gradcheck("run", str(spec), "--format", "json")
    assert ran.exit_code == 1
    (result,) = json.loads(ran.stdout)["results"]
    assert result["status"] == "error"
    assert "NotImplementedError: TODO" in result["error"]
    assert f"{code}:" in result["error"]

    # Filled in with a wrong bias gradient: exit 1, the bias row flagged.
    fill_in(code, FILLED_IN[convention])
    right = code.read_text()
    code.write_text(right.replace(*WRONG_BIAS[convention]))
    assert code.read_text() != right
    ran = gradcheck("run", str(spec), "--format", "json")
    assert ran.exit_code == 1
    (result,) = json.loads(ran.stdout)["results"]
    failing = {c["name"]: c["diagnosis"] for c in result["checks"] if c["status"] != "pass"}
    assert failing == {BIAS_NAME[convention]: "scaled"}

    # Filled in right: it passes.
    code.write_text(right)
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 0, ran.stdout
    assert ran.stdout.rstrip().endswith("PASS: 1 passed")


def test_the_spec_is_named_after_the_layer(gradcheck, tmp_path):
    gradcheck("new", "attention_head", "--dir", str(tmp_path))  # functional by default
    text = (tmp_path / "attention_head.yaml").read_text()
    assert text.startswith("name: attention_head\n")
    assert "file: attention_head.py" in text
    assert "def attention_head_backward(" in (tmp_path / "attention_head.py").read_text()


def test_new_never_overwrites(gradcheck, tmp_path):
    (tmp_path / "mine.py").write_text("# my work\n")
    ran = gradcheck("new", "mine", "--dir", str(tmp_path))
    assert ran.exit_code == 2
    assert "mine.py already exists; not overwriting it" in ran.stderr
    assert (tmp_path / "mine.py").read_text() == "# my work\n"
    assert not (tmp_path / "mine.yaml").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["new", "my_layer", "--convention", "keras"], "unknown convention 'keras'"),
        (["new", "My-Layer"], "layer name 'My-Layer' must match [a-z][a-z0-9_]*"),
    ],
)
def test_new_rejects_bad_input_with_exit_2(gradcheck, tmp_path, args, message):
    ran = gradcheck(*args, "--dir", str(tmp_path))
    assert ran.exit_code == 2
    assert message in ran.stderr
    assert list(tmp_path.iterdir()) == []


def _one_line_error(ran, fragment):
    assert ran.exit_code == 2, (ran.stdout, ran.stderr)
    assert "Traceback" not in ran.stderr + ran.stdout
    assert ran.stderr.strip().splitlines() == [f"gradcheck: error: {fragment}"]


def test_new_into_a_file_is_a_usage_error(gradcheck, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    _one_line_error(gradcheck("new", "lin", "--dir", str(afile)), f"--dir {afile} is a file, not a directory")
    _one_line_error(
        gradcheck("new", "lin", "--dir", str(afile / "sub")),
        f"cannot create --dir {afile / 'sub'}: Not a directory",
    )
    assert afile.read_text() == "mine\n"


def test_new_into_a_directory_it_cannot_write_is_a_usage_error(gradcheck, tmp_path):
    import os

    if os.geteuid() == 0:  # root writes through any mode bits; sysfs refuses even root
        locked = Path("/sys")
        if not locked.is_dir():
            pytest.skip("no /sys to be refused by")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
    _one_line_error(
        gradcheck("new", "lin", "--dir", str(locked)),
        f"cannot write {locked / 'lin.yaml'}: Permission denied",
    )
    assert not (locked / "lin.yaml").exists()


def test_new_that_cannot_finish_leaves_no_half_written_layer(gradcheck, tmp_path, monkeypatch):
    import builtins
    import errno
    import os

    import gradcheck_cli.templates as templates

    def full_disk(path, *args, **kwargs):
        if str(path).endswith(".py"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(templates, "open", full_disk, raising=False)
    _one_line_error(
        gradcheck("new", "lin", "--dir", str(tmp_path)),
        f"cannot write {tmp_path / 'lin.py'}: No space left on device",
    )
    assert list(tmp_path.iterdir()) == []  # the spec written first is gone again


def test_new_never_writes_through_a_dangling_symlink(gradcheck, tmp_path):
    (tmp_path / "lin.yaml").symlink_to(tmp_path / "elsewhere.yaml")
    _one_line_error(
        gradcheck("new", "lin", "--dir", str(tmp_path)),
        f"{tmp_path / 'lin.yaml'} already exists; not overwriting it",
    )
    assert not (tmp_path / "elsewhere.yaml").exists()
