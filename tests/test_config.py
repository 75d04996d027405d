"""[tool.gradcheck] in the nearest pyproject.toml: spec_paths and defaults; flags win."""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest

from gradcheck_cli.config import load_config
from tests.conftest import EXAMPLES, REPO


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project with my_lin (the fast.ai lin example, renamed) under specs/, as cwd.

    ``project(extra_toml)`` writes pyproject.toml with spec_paths and the extra lines.
    """
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(EXAMPLES / "fastai" / "lin.py", specs / "lin.py")
    spec = (EXAMPLES / "fastai" / "lin.yaml").read_text().replace("name: fastai_lin", "name: my_lin")
    (specs / "my_lin.yaml").write_text(spec)
    monkeypatch.chdir(tmp_path)

    def write(extra: str = "") -> None:
        (tmp_path / "pyproject.toml").write_text(
            '[project]\nname = "mine"\n\n[tool.gradcheck]\nspec_paths = ["specs"]\n' + textwrap.dedent(extra)
        )

    return write


def headline(stdout: str) -> str:
    return stdout.splitlines()[0]


def test_spec_paths_make_a_spec_runnable_by_name(gradcheck, project):
    project()
    ran = gradcheck("my_lin", "--n", "7")
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    assert headline(ran.stdout).startswith("my_lin [n=7 in=3 out=4] dtype=float64")
    assert ran.stdout.rstrip().endswith("PASS: 1 passed")


def test_spec_paths_are_listed_with_the_builtins(gradcheck, project):
    project()
    ran = gradcheck("list", "--format", "json")
    assert ran.exit_code == 0
    names = {row["name"]: row for row in json.loads(ran.stdout)}
    assert names["my_lin"]["dims"] == {"n": 5, "in": 3, "out": 4}
    assert "linear" in names  # the built-ins are still there
    table = gradcheck("list").stdout
    assert any(line.startswith("my_lin") and "specs/my_lin.yaml" in line for line in table.splitlines())


def test_a_spec_by_name_gets_its_dims_as_options(gradcheck, project):
    project()
    ran = gradcheck("my_lin", "--help")
    assert ran.exit_code == 0
    assert "--n" in ran.stdout and "--in" in ran.stdout and "--out" in ran.stdout


def test_without_the_config_the_name_is_unknown(gradcheck, project):
    ran = gradcheck("my_lin")  # no pyproject.toml written
    assert ran.exit_code == 2
    assert "unknown layer 'my_lin'" in ran.stderr


def test_the_config_is_found_from_a_subfolder(gradcheck, project, tmp_path, monkeypatch):
    project()
    (tmp_path / "notebooks" / "deep").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "notebooks" / "deep")
    assert gradcheck("my_lin").exit_code == 0


def test_defaults_apply(gradcheck, project):
    project('dtype = "float32"\nseed = 4\natol = 1e-3\nrtol = 1e-3\n')
    ran = gradcheck("my_lin")
    assert ran.exit_code == 0
    assert "dtype=float32 device=cpu seed=4" in headline(ran.stdout)
    ran = gradcheck("run", "specs", "--format", "json")
    (result,) = json.loads(ran.stdout)["results"]
    assert (result["dtype"], result["seed"]) == ("float32", 4)


def test_cli_flags_win_over_the_config(gradcheck, project):
    project('dtype = "float32"\nseed = 4\n')
    ran = gradcheck("my_lin", "--dtype", "float64", "--seed", "0")
    assert "dtype=float64 device=cpu seed=0" in headline(ran.stdout)
    ran = gradcheck("run", "specs", "--dtype", "float64", "--format", "json")
    (result,) = json.loads(ran.stdout)["results"]
    assert (result["dtype"], result["seed"]) == ("float64", 4)


def test_a_tolerance_from_the_config_decides_pass_or_fail(gradcheck, project):
    """Made visible with a tolerance so tight float32 rounding fails, then a flag loosening it."""
    project('dtype = "float32"\natol = 0.0\nrtol = 0.0\n')
    tight = gradcheck("my_lin", "--n", "50", "--in", "30", "--out", "20", "--format", "json")
    assert tight.exit_code == 1
    (result,) = json.loads(tight.stdout)["results"]
    assert {c["status"] for c in result["checks"]} <= {"pass", "mismatch"} and result["status"] == "fail"
    loose = gradcheck("my_lin", "--n", "50", "--in", "30", "--out", "20", "--atol", "1e-4", "--rtol", "1e-4")
    assert loose.exit_code == 0


def test_an_unknown_key_is_an_error_with_a_suggestion(gradcheck, project):
    project('dtpye = "float32"\n')
    ran = gradcheck("my_lin")
    assert ran.exit_code == 2
    assert "[tool.gradcheck]: unknown key 'dtpye' (did you mean 'dtype'?)" in ran.stderr


def test_the_nearest_pyproject_with_the_table_wins(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[tool.gradcheck]\ndtype = "float32"\n')
    inner = tmp_path / "pkg"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "pkg"\n')  # no table: keep walking up
    monkeypatch.chdir(inner)
    config = load_config()
    assert config.dtype == "float32" and config.path == tmp_path / "pyproject.toml"


def test_list_warns_about_shadowed_duplicate_and_unreadable_specs(gradcheck, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.gradcheck]\nspec_paths = ["specs"]\n')
    specs = tmp_path / "specs"
    specs.mkdir()
    lin = (REPO / "layer_specs" / "lin.yaml").read_text()
    (specs / "a.yaml").write_text(lin.replace("name: lin", "name: linear"))  # shadows the built-in
    (specs / "b.yaml").write_text(lin.replace("name: lin", "name: mine"))
    (specs / "c.yaml").write_text(lin.replace("name: lin", "name: mine"))  # the same name twice
    (specs / "d.yaml").write_text("name: broken\nreference: [\n")  # not YAML
    ran = gradcheck("list")
    assert ran.exit_code == 0
    warnings = ran.stderr.splitlines()
    assert any("'linear' is also the built-in" in w for w in warnings)
    assert any("c.yaml: the name 'mine' is also" in w and "b.yaml" in w for w in warnings)
    assert any("d.yaml:" in w and "invalid YAML" in w for w in warnings)
    assert all(w.startswith("gradcheck: warning: ") for w in warnings)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("timeout = -1", "[tool.gradcheck] timeout must be a positive number of seconds, got -1"),
        ('timeout = "10s"', "[tool.gradcheck] timeout must be a positive number of seconds, got '10s'"),
        ("seed = -1", "[tool.gradcheck] seed must be an integer from 0 to 2**63 - 1, got -1"),
        (
            f"seed = {10**40}",
            "[tool.gradcheck] seed must be an integer from 0 to 2**63 - 1, got about 2**132",
        ),
        ("atol = -1", "[tool.gradcheck] atol must be a non-negative number, got -1"),
        ("rtol = inf", "[tool.gradcheck] rtol must be a non-negative number, got inf"),
        (
            "ratio = 0",
            "[tool.gradcheck] ratio must be a positive number (a multiple of PyTorch's own error), got 0",
        ),
        (
            'dtype = "float8"',
            "[tool.gradcheck] dtype must be one of float64, float32, bfloat16, float16, got",
        ),
        ('device = "tpu"', "[tool.gradcheck] device must be cpu, cuda or cuda:N, got 'tpu'"),
        (
            'tolerance = "relative"',
            "[tool.gradcheck] tolerance must be absolute or calibrated, got 'relative'",
        ),
        (f"seed = {'1' * 5000}", "pyproject.toml: cannot read: an integer has too many digits"),
    ],
)
def test_a_bad_config_value_is_named_by_its_config_key_not_a_flag(
    gradcheck, project, tmp_path, line, message
):
    project(line + "\n")
    for ran in (gradcheck("my_lin"), gradcheck("run", "specs")):
        assert ran.exit_code == 2, ran.stdout
        err = ran.stderr.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert err.startswith(f"gradcheck: error: {tmp_path / 'pyproject.toml'}"), err
        assert message in err and "--" not in err, err


def test_a_ratio_of_0_on_the_command_line_is_refused_as_in_a_spec_and_the_config(gradcheck):
    ran = gradcheck("linear", "--dtype", "float32", "--ratio", "0")
    assert ran.exit_code == 2
    assert ran.stderr.strip() == (
        "gradcheck: error: --ratio must be a positive number (a multiple of PyTorch's own error), got 0"
    )
