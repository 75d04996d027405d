"""The wheel is the product: build it, install it into a fresh venv, use it from elsewhere.

The editable install this suite runs from finds ``layer_specs/`` at the top of
the checkout; an installed wheel must carry it inside the package. The venv
borrows the already-installed torch, numpy, typer, rich and PyYAML through a
``.pth`` file (so it takes seconds, not a torch download), and nothing of the
checkout: ``gradcheck_cli`` itself comes from the wheel alone.

Deselect with ``-m "not slow"``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow

SPEC = """\
name: affine
dims: {n: 4, d: 3}
inputs:
  x: [n, d]
params:
  scale: [d]
reference: "x * scale"
implementation:
  file: affine.py
  backward: "backward(grad_out, x, scale) -> x, scale"
"""

CODE = """\
def backward(grad_out, x, scale):
    return grad_out * scale, (grad_out * x).sum(0)
"""


def run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def borrow_dependencies(venv_python: Path, into: Path) -> None:
    """Make this interpreter's installed packages, but not gradcheck_cli, importable in the venv."""
    site_packages = Path(sysconfig.get_paths()["purelib"])
    mirror = into / "borrowed-site-packages"
    mirror.mkdir()
    for entry in site_packages.iterdir():
        name = entry.name.lower()
        if name.startswith(("gradcheck", "_editable_impl_gradcheck")) or name.endswith(".pth"):
            continue
        (mirror / entry.name).symlink_to(entry)
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    target = Path(run(venv_python, "-c", code, cwd=into).stdout.strip())
    (target / "borrowed.pth").write_text(f"{mirror}\n")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = run(sys.executable, "-m", "build", "--wheel", "--outdir", out, REPO, cwd=out)
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = out.glob("gradcheck_cli-*.whl")
    return path


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; returns its bin/ folder."""
    root = tmp_path_factory.mktemp("venv")
    made = run(sys.executable, "-m", "venv", "--without-pip", root / "env", cwd=root)
    assert made.returncode == 0, made.stderr
    bin_dir = root / "env" / ("Scripts" if os.name == "nt" else "bin")
    borrow_dependencies(bin_dir / "python", root)
    installed = run(
        sys.executable, "-m", "pip", "--python", bin_dir / "python", "install",
        "--no-deps", "--no-index", "--ignore-installed", wheel,
        cwd=root,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return bin_dir


@pytest.fixture
def elsewhere(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder outside the checkout, and an environment that knows nothing of it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["NO_COLOR"] = "1"
    assert REPO not in tmp_path.parents
    return tmp_path, env


def test_the_wheel_ships_the_builtin_specs_and_the_pytest_plugin(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "gradcheck_cli/layer_specs/linear.yaml" in names
    assert sum(n.startswith("gradcheck_cli/layer_specs/") and n.endswith(".yaml") for n in names) >= 4
    assert "gradcheck_cli/py.typed" in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "gradcheck = gradcheck_cli.cli:app" in text
    assert "[pytest11]" in text and "gradcheck = gradcheck_cli.pytest_plugin" in text


def test_the_package_comes_from_the_wheel_not_the_checkout(venv, elsewhere):
    cwd, env = elsewhere
    code = "\n".join(
        [
            "import gradcheck_cli",
            "from gradcheck_cli.catalogue import builtin_dir",
            "print(gradcheck_cli.__file__)",
            "print(builtin_dir())",
        ]
    )
    ran = run(venv / "python", "-c", code, cwd=cwd, env=env)
    assert ran.returncode == 0, ran.stderr
    package, specs = ran.stdout.splitlines()
    env_dir = venv.parent
    assert Path(package).is_relative_to(env_dir)
    assert Path(specs).is_relative_to(env_dir) and Path(specs).name == "layer_specs"


def test_installed_gradcheck_runs_a_builtin_layer(venv, elsewhere):
    cwd, env = elsewhere
    ran = run(venv / "gradcheck", "linear", "--in", "3", "--out", "4", cwd=cwd, env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.startswith("linear [batch=5 in=3 out=4] dtype=float64 device=cpu seed=0")
    assert ran.stdout.rstrip().endswith("PASS: 1 passed")


def test_installed_gradcheck_runs_a_custom_spec(venv, elsewhere):
    cwd, env = elsewhere
    (cwd / "affine.yaml").write_text(SPEC)
    (cwd / "affine.py").write_text(CODE)
    ran = run(
        venv / "gradcheck",
        "run",
        "affine.yaml",
        "--format",
        "junit",
        "--output",
        "report.xml",
        cwd=cwd,
        env=env,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.rstrip().endswith("PASS: 1 passed")
    assert 'tests="1" failures="0" errors="0"' in (cwd / "report.xml").read_text()

    (cwd / "affine.py").write_text(CODE.replace(".sum(0)", ""))
    ran = run(venv / "gradcheck", "run", ".", cwd=cwd, env=env)
    assert ran.returncode == 1
    assert "scale: [missing_reduction]" in ran.stdout


def test_installed_pytest_plugin_collects_specs(venv, elsewhere):
    cwd, env = elsewhere
    specs = cwd / "specs"
    specs.mkdir()
    (specs / "affine.yaml").write_text(SPEC)
    (specs / "affine.py").write_text(textwrap.dedent(CODE))
    ran = run(
        venv / "python", "-m", "pytest", "--gradcheck", "specs", "-p", "no:cacheprovider", cwd=cwd, env=env
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "specs/affine.yaml ." in ran.stdout and "1 passed" in ran.stdout
