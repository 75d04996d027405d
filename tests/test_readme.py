"""The README and docs/ stay true: every `$ gradcheck ...` shown in them prints what it says."""

from __future__ import annotations

import re
import shlex

import pytest

from .conftest import REPO

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _examples() -> list[tuple[str, str]]:
    found = []
    for document in DOCUMENTS:
        found.extend(_document_examples(document))
    return found


def _document_examples(document) -> list[tuple[str, str]]:
    blocks, current = [], None
    for line in document.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    found = []
    for block in blocks:
        chunks = re.split(r"^\$ ", block, flags=re.M)
        for chunk in chunks[1:]:
            command, _, output = chunk.partition("\n")
            if command.startswith("gradcheck "):
                found.append((command, output.rstrip("\n")))
    return found


EXAMPLES = _examples()


def test_the_readme_shows_real_runs():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize(("command", "output"), EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_readme_example_output_is_current(gradcheck, monkeypatch, command, output):
    monkeypatch.chdir(REPO)
    ran = gradcheck(*shlex.split(command)[1:])
    assert _stable(ran.stdout.rstrip("\n")) == _stable(output)


def _stable(text: str) -> str:
    """The output with what differs from run to run (how long a spec took) masked."""
    text = re.sub(r'("duration_s": )[0-9.e-]+', r"\1<seconds>", text)
    return re.sub(r'(time=")[0-9.]+(")', r"\1<seconds>\2", text)


def _python_snippets() -> list[str]:
    text = "\n".join(d.read_text(encoding="utf-8") for d in DOCUMENTS)
    return [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if b.startswith("from gradcheck_cli")]


@pytest.mark.parametrize("snippet", _python_snippets())
def test_readme_python_api_snippets_run_as_written(snippet, monkeypatch):
    monkeypatch.chdir(REPO)
    exec(compile(snippet, "README.md", "exec"), {})
