"""The CI examples in examples/ci/ run as written, on the spec folder beside them.

Each file is read as its CI server would read it; every ``gradcheck run``
command in it is run where the file runs it (examples/ci/, where a user's
repository root would be), and what it writes is where the file says it will be
read from. The GitHub and GitLab files install gradcheck from the checkout they
run in, never from a package index it is not on.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import EXAMPLES, REPO
from .junit_schema import assert_valid

CI = EXAMPLES / "ci"


def gradcheck_commands(lines: list[str]) -> list[list[str]]:
    """The argv after ``gradcheck`` of every ``gradcheck run`` command among ``lines``
    (a step's script may hold several, each ending at a shell operator such as ``||``)."""
    commands = []
    for text in lines:
        for line in text.splitlines():
            words = shlex.split(os.path.expandvars(line), comments=True)
            for operator in ("||", "&&", ";"):
                if operator in words:
                    words = words[: words.index(operator)]
            if words[:2] == ["gradcheck", "run"]:
                commands.append(words[1:])
    return commands


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.fixture
def in_ci_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(CI)
    return tmp_path


def needs_the_html_report() -> None:
    pytest.importorskip("gradcheck_cli.report.html", reason="the HTML renderer is not in this tree yet")


# -- GitHub Actions --------------------------------------------------------------------------

WORKFLOW: dict[str, Any] = yaml.safe_load((CI / "github-actions.yml").read_text())
JOB = WORKFLOW["jobs"]["gradcheck"]
STEPS = {step.get("name", step.get("uses")): step for step in JOB["steps"]}


def test_the_workflow_installs_gradcheck_from_the_checkout_with_a_pinned_torch():
    assert JOB["defaults"]["run"]["working-directory"] == "examples/ci"
    install = STEPS["Install gradcheck from the checkout (CPU torch is enough)"]
    assert install["working-directory"] == "."  # the repository root
    lines = install["run"].splitlines()
    assert re.fullmatch(r"python -m pip install torch==\d+\.\d+\.\d+ --index-url \S+/cpu", lines[0])
    assert lines[1] == "python -m pip install ."
    assert "gradcheck-cli" not in (CI / "github-actions.yml").read_text()
    assert (REPO / JOB["defaults"]["run"]["working-directory"] / "specs").is_dir()


def test_the_workflow_annotates_each_failing_tensor_on_the_diff(gradcheck, tmp_path, monkeypatch):
    (command,) = gradcheck_commands([STEPS["Check the backward passes"]["run"]])
    assert option(command, "--format") == "github"
    # As written, in this repository: the example specs pass; the run says so once.
    monkeypatch.chdir(CI)
    monkeypatch.setenv("GITHUB_WORKSPACE", str(REPO))
    ran = gradcheck(*command)
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    assert ran.stdout.splitlines() == ["::notice title=gradcheck::PASS: 1 passed, 0 failed, 0 errors"]
    # A checkout whose specs/ has a bias gradient never summed: annotated at the spec's path in
    # the repository, not in the step's working directory.
    checkout = tmp_path / "checkout"
    shutil.copytree(CI / "failing-suite", checkout / "examples" / "ci" / "specs")
    monkeypatch.chdir(checkout / "examples" / "ci")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(checkout))
    ran = gradcheck(*command)
    assert ran.exit_code == 1
    error, notice = ran.stdout.splitlines()
    assert re.fullmatch(
        r"::error file=examples/ci/specs/dense\.yaml,line=\d+,title=dense%3A b::"
        r"b: shape_error, expected \[out=3\], got \[batch=8, out=3\] \[missing_reduction\]: .*",
        error,
    )
    assert notice == "::notice title=gradcheck::FAIL: 1 passed, 1 failed, 0 errors"


def test_the_workflow_writes_the_job_summary_whatever_the_check_found(gradcheck, in_ci_folder, monkeypatch):
    step = STEPS["Write the reports"]
    assert step["if"] == "always()"
    summary = in_ci_folder / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    (command,) = [c for c in gradcheck_commands([step["run"]]) if option(c, "--format") == "markdown"]
    ran = gradcheck(*command)
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    assert summary.read_text().startswith("## ✅ gradcheck: PASS")
    assert ran.stdout.rstrip().endswith("PASS: 1 passed")  # the table, in the log


def test_the_workflow_keeps_the_html_report_as_an_artifact(gradcheck, in_ci_folder):
    (command,) = [c for c in gradcheck_commands([STEPS["Write the reports"]["run"]]) if "html" in c]
    upload = STEPS["actions/upload-artifact@v4"]
    assert upload["if"] == "always()"
    # The upload step reads from the repository root; the report is written in the job's folder.
    written = option(command, "--output")
    assert upload["with"]["path"] == f"{JOB['defaults']['run']['working-directory']}/{written}"
    needs_the_html_report()
    command[command.index("--output") + 1] = str(in_ci_folder / written)
    ran = gradcheck(*command)
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    assert "<html" in (in_ci_folder / written).read_text().lower()


# -- GitLab CI -------------------------------------------------------------------------------

GITLAB: dict[str, Any] = yaml.safe_load((CI / "gitlab-ci.yml").read_text())["gradcheck"]


def test_the_gitlab_job_installs_gradcheck_from_the_checkout():
    assert re.fullmatch(
        r"python -m pip install torch==\d+\.\d+\.\d+ --index-url \S+/cpu", GITLAB["before_script"][0]
    )
    assert GITLAB["before_script"][1] == "python -m pip install ."
    assert "gradcheck-cli" not in (CI / "gitlab-ci.yml").read_text()


def test_the_gitlab_job_writes_the_junit_report_it_declares(gradcheck, in_ci_folder):
    assert GITLAB["script"][0] == "cd examples/ci"
    (command,) = gradcheck_commands(GITLAB["script"])
    declared = GITLAB["artifacts"]["reports"]["junit"]
    assert GITLAB["artifacts"]["when"] == "always"  # the report is kept when the job fails
    output = option(command, "--output")
    assert declared == f"examples/ci/{output}"  # artifacts are found from the project's root
    command[command.index("--output") + 1] = str(in_ci_folder / output)
    ran = gradcheck(*command)
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    document = (in_ci_folder / output).read_text()
    assert_valid(document)
    root = ET.fromstring(document)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("1", "0", "0")


def test_the_gitlab_job_keeps_the_html_report_whether_it_passed_or_not(gradcheck, in_ci_folder):
    assert GITLAB["after_script"][0] == "cd examples/ci"  # after_script starts at the root again
    (command,) = gradcheck_commands(GITLAB["after_script"])
    output = option(command, "--output")
    assert GITLAB["artifacts"]["paths"] == [f"examples/ci/{output}"]
    needs_the_html_report()
    command[command.index("--output") + 1] = str(in_ci_folder / output)
    ran = gradcheck(*command)
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    assert "<html" in (in_ci_folder / output).read_text().lower()


# -- pre-commit ------------------------------------------------------------------------------

MANIFEST: list[dict[str, Any]] = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
# The keys of a hook in .pre-commit-hooks.yaml, from pre-commit's "Creating new hooks".
HOOK_KEYS = {
    "id", "name", "entry", "language", "files", "exclude", "types", "types_or", "exclude_types",
    "always_run", "fail_fast", "verbose", "pass_filenames", "require_serial", "description",
    "language_version", "minimum_pre_commit_version", "args", "stages",
}  # fmt: skip


def test_the_hooks_manifest_has_what_pre_commit_needs():
    assert [hook["id"] for hook in MANIFEST] == ["gradcheck", "gradcheck-system"]
    for hook in MANIFEST:
        assert {"id", "name", "entry", "language"} <= set(hook) <= HOOK_KEYS, hook["id"]
        assert hook["entry"] == "gradcheck run" and hook["pass_filenames"] is False
        assert {"python", "yaml"} <= set(hook["types_or"])  # a layer's code, or a spec
    assert {hook["id"]: hook["language"] for hook in MANIFEST} == {
        "gradcheck": "python",  # pre-commit pip-installs this repository
        "gradcheck-system": "system",
    }
    # `language: python` installs the repository: it must be a package that provides the command.
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'gradcheck = "gradcheck_cli.cli:app"' in pyproject


def test_the_example_config_points_a_repo_at_the_project():
    text = (CI / "pre-commit-config.yaml").read_text()
    (repo,) = yaml.safe_load(text)["repos"]
    # No public repository yet: the URL is a reserved, never-resolving name, marked as such.
    assert repo["repo"].startswith("https://example.invalid/") and "PLACEHOLDER" in text
    assert repo["rev"]
    assert {hook["id"] for hook in repo["hooks"]} <= {hook["id"] for hook in MANIFEST}


def test_the_pre_commit_hook_runs_the_specs_when_a_spec_or_its_code_changes(gradcheck, in_ci_folder):
    (repo,) = yaml.safe_load((CI / "pre-commit-config.yaml").read_text())["repos"]
    (configured,) = repo["hooks"]
    hook = {**next(h for h in MANIFEST if h["id"] == configured["id"]), **configured}  # as pre-commit merges
    files = re.compile(hook["files"])
    assert files.search("specs/dense.yaml") and files.search("specs/dense.py")
    assert not files.search("README.md") and not files.search("src/model.py")
    command = shlex.split(hook["entry"]) + hook["args"]
    assert command[:2] == ["gradcheck", "run"]
    ran = gradcheck(*command[1:], "--format", "json")
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    assert [r["spec"] for r in json.loads(ran.stdout)["results"]] == ["dense"]
