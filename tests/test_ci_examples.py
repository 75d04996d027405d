"""The CI examples in examples/ci/ run as written, on the spec folder beside them.

Each file is read as its CI server would read it; every ``gradcheck run``
command in it is run in examples/ci/ (where a user's repository root would
be), and what it writes is where the file says it will be read from.
"""

from __future__ import annotations

import json
import os
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from .conftest import EXAMPLES

CI = EXAMPLES / "ci"


def gradcheck_commands(lines: list[str]) -> list[list[str]]:
    """The argv after ``gradcheck`` of every ``gradcheck run`` command among ``lines``."""
    commands = []
    for line in lines:
        words = shlex.split(os.path.expandvars(line))
        if words[:2] == ["gradcheck", "run"]:
            commands.append(words[1:])
    return commands


@pytest.fixture
def in_ci_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(CI)
    return tmp_path


def test_github_actions_workflow_writes_the_job_summary(gradcheck, in_ci_folder, monkeypatch):
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    steps = workflow["jobs"]["gradcheck"]["steps"]
    summary = in_ci_folder / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    (command,) = gradcheck_commands([s["run"] for s in steps if "run" in s])
    ran = gradcheck(*command)
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    assert summary.read_text().startswith("## ✅ gradcheck: PASS")
    assert ran.stdout.rstrip().endswith("PASS: 1 passed")


def test_gitlab_job_writes_the_junit_report_it_declares(gradcheck, in_ci_folder):
    job = yaml.safe_load((CI / "gitlab-ci.yml").read_text())["gradcheck"]
    (command,) = gradcheck_commands(job["script"])
    declared = job["artifacts"]["reports"]["junit"]
    assert job["artifacts"]["when"] == "always"  # the report is kept when the job fails
    output = command[command.index("--output") + 1]
    assert output == declared
    command[command.index("--output") + 1] = str(in_ci_folder / declared)
    ran = gradcheck(*command)
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    root = ET.parse(in_ci_folder / declared).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("1", "0", "0")


def test_pre_commit_hook_runs_the_specs(gradcheck, in_ci_folder):
    config = yaml.safe_load((CI / "pre-commit-config.yaml").read_text())
    (hook,) = config["repos"][0]["hooks"]
    assert hook["pass_filenames"] is False and hook["language"] == "system"
    (command,) = gradcheck_commands([hook["entry"]])
    ran = gradcheck(*command, "--format", "json")
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    assert [r["spec"] for r in json.loads(ran.stdout)["results"]] == ["dense"]
