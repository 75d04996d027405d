"""The README and docs/ stay true: every command shown in them prints what it says.

Each ``$ `` line of a fenced block is run, and what it printed is compared with the lines below
it, up to the next ``$ `` line or the end of the block, with what differs from run to run (how
long a spec took) masked. scripts/refresh_doc_outputs.py runs them the same way (run_shown) and
pastes the output. What a block can run:

- ``$ gradcheck ARGS``: in-process, from the repository root, plain output (NO_COLOR, 120
  columns): what a pipe sees.
- ``$ cd DIR && gradcheck ARGS && gradcheck ARGS``: the commands in order, in DIR, each only if
  the one before it exited 0; the output is theirs, one after the other. ``cd scratch`` is a
  fresh empty folder, shown as ``/tmp/scratch``; any other DIR is a folder of the repository,
  run in a temporary copy of it, so that what the commands write there is thrown away (a DIR run
  this way needs nothing outside itself).
- ``$ pytest ARGS``: pytest in a process of its own (80 columns), from the repository root or
  the ``cd`` folder; the session header's platform, rootdir and plugin lines are left out, as
  the docs leave them out.
- A first output line ``^C``: the command runs in a process of its own, and is sent SIGINT once
  one of its workers has been running for half a second of CPU (a spec that spins).

An absolute path into the repository (or the copy that stands for it) is shown as
``/path/to/gradcheck/...``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PLAIN = {"NO_COLOR": "1", "TERMINAL_WIDTH": "120"}  # the environment of every run shown
SHOWN_REPO = "/path/to/gradcheck"
SHOWN_SCRATCH = "/tmp/scratch"
RUNNABLE = ("gradcheck ", "cd ", "pytest ")


def _blocks(document: Path) -> list[str]:
    blocks: list[str] = []
    current: list[str] | None = None
    for line in document.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return blocks


# Commands the docs show that are not run here, each with why. Every other ``$ `` line is run.
BENCHMARK = "a benchmark: its times and memory differ on every run and machine, and it takes minutes"
NOT_RUN: dict[str, str] = {
    "python benchmarks/bench_numerical.py --sizes 31,3.1K,20K": BENCHMARK,
    "python benchmarks/bench_numerical.py --sizes 20K,80K,1M --limit-s 60": BENCHMARK,
    "python benchmarks/bench_startup.py": BENCHMARK,
    "python benchmarks/bench_scale.py": BENCHMARK,
    "python benchmarks/bench_scale.py --layers linear_8k --sections layers --repeat 1": BENCHMARK,
    "python benchmarks/bench_isolation.py": BENCHMARK,
}


def _document_examples(document: Path, not_run: dict[str, str] = NOT_RUN) -> list[tuple[str, str]]:
    """(command, output shown) of every ``$ `` line in the document's fenced blocks, but those in not_run."""
    found = []
    for block in _blocks(document):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            if command not in not_run:
                found.append((command, output.rstrip("\n")))
    return found


def _commands_shown(document: Path) -> list[str]:
    """Every command the document shows being run: each line that is ``$ `` after its indent, in a
    fenced block or an indented one (even one _blocks does not see, inside a list)."""
    text = document.read_text(encoding="utf-8")
    return [m.group(1) for m in re.finditer(r"^[ \t>]*\$ (.*)$", text, flags=re.M)]


def _unchecked(documents: list[Path], not_run: dict[str, str]) -> list[str]:
    """``document: command`` for each command shown that is neither run as an example nor in not_run
    with a reason, and for each not_run entry that no document shows any more."""
    examples = {command for document in documents for command, _ in _document_examples(document, not_run)}
    shown = []
    problems = []
    for document in documents:
        for command in _commands_shown(document):
            shown.append(command)
            if command in not_run:
                if not not_run[command].strip():
                    problems.append(f"{document.name}: {command} (listed as not run, with no reason)")
            elif command not in examples or not command.startswith(RUNNABLE):
                problems.append(f"{document.name}: {command}")
    problems.extend(f"NOT_RUN: {command} (shown nowhere)" for command in not_run if command not in shown)
    return problems


EXAMPLES = [example for document in DOCUMENTS for example in _document_examples(document)]


# -- running what a block shows ---------------------------------------------------------------


def run_shown(command: str, interrupt: bool = False) -> str:
    """What ``$ command`` prints, run as the module docstring says (``interrupt``: a ``^C`` is shown).

    In-process runs take the environment as it is: the caller sets PLAIN (and unsets FORCE_COLOR).
    """
    words = shlex.split(command)
    commands: list[list[str]] = [[]]
    for word in words:
        if word == "&&":
            commands.append([])
        else:
            commands[-1].append(word)
    with _folder(commands[0]) as (cwd, shown):
        if commands[0][0] == "cd":
            commands = commands[1:]
        if interrupt and len(commands) != 1:
            raise ValueError(f"a ^C is shown after one command, not {len(commands)}: {command}")
        outputs = []
        for argv in commands:
            exit_code, output = _run_one(argv, cwd, interrupt)
            outputs.append(output)
            if exit_code != 0:
                break
        text = "\n".join(outputs)
        for real, stands_for in shown:
            text = text.replace(real, stands_for)
        return ("^C\n" if interrupt else "") + text


@contextlib.contextmanager
def _folder(first: list[str]) -> Iterator[tuple[Path, list[tuple[str, str]]]]:
    """The folder a command runs in, and (real path, path shown) for what its output names."""
    if first[0] != "cd":
        yield REPO, [(str(REPO), SHOWN_REPO)]
        return
    if len(first) != 2:
        raise ValueError(f"'cd' takes one folder: {shlex.join(first)}")
    with tempfile.TemporaryDirectory(prefix="gradcheck-docs-") as temporary:
        root = Path(temporary).resolve()
        if first[1] == "scratch":
            cwd = root / "scratch"
            cwd.mkdir()
            shown = [(str(cwd), SHOWN_SCRATCH)]
        else:
            source = (REPO / first[1]).resolve()
            if not source.is_dir() or not source.is_relative_to(REPO):
                raise ValueError(f"'cd {first[1]}': not a folder of the repository")
            cwd = root / source.relative_to(REPO)
            shutil.copytree(source, cwd)
            shown = [(str(root), SHOWN_REPO)]
        yield cwd, [*shown, (str(REPO), SHOWN_REPO)]


def _run_one(argv: list[str], cwd: Path, interrupt: bool) -> tuple[int, str]:
    """(exit code, stdout without its last newlines) of one command."""
    if argv[0] == "pytest":
        return _run_pytest(argv[1:], cwd)
    if argv[0] != "gradcheck":
        raise ValueError(f"a block can run gradcheck and pytest, not {argv[0]!r}")
    if interrupt:
        return _run_interrupted(argv[1:], cwd)
    from typer.testing import CliRunner

    from gradcheck_cli.cli import app

    with contextlib.chdir(cwd):
        result = CliRunner().invoke(app, argv[1:], prog_name="gradcheck")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout.rstrip("\n")


def _environment(**more: str) -> dict[str, str]:
    """This process's environment, plain, without what the pytest running it set (xdist's worker).

    ``CI`` and ``BUILD_NUMBER`` go too: under them pytest prints each short-summary line in full
    where the documents show it cut to the terminal's width.
    """
    dropped = {"FORCE_COLOR", "CI", "BUILD_NUMBER"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k not in dropped}
    return {**env, **PLAIN, **more}


def _run_pytest(args: list[str], cwd: Path) -> tuple[int, str]:
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=cwd,
        env=_environment(COLUMNS="80"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = ran.stdout.rstrip("\n").splitlines()
    if lines and "test session starts" in lines[0]:  # platform, rootdir, configfile, plugins: left out
        end = next((i for i, line in enumerate(lines) if line.startswith("collect")), 1)
        lines = [lines[0], *lines[end:]]
    return ran.returncode, "\n".join(lines)


def _run_interrupted(args: list[str], cwd: Path) -> tuple[int, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gradcheck_cli", *args],
        cwd=cwd,
        env=_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not _a_worker_is_busy(process.pid):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gradcheck {shlex.join(args)}: no worker ran long enough to interrupt")
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stdout.rstrip("\n")


def _a_worker_is_busy(pid: int, cpu_seconds: float = 0.5) -> bool:
    """Whether a worker of gradcheck ``pid`` (a child of its fork server) is running and has used
    ``cpu_seconds`` of CPU. Linux only: it reads /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    ticks = os.sysconf("SC_CLK_TCK") * cpu_seconds
    # Not the fork server itself: it is busy too, importing torch, before any spec has run.
    for worker in (w for server in parents.get(pid, []) for w in parents.get(server, [])):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] == "R" and int(fields[11]) >= ticks:  # state, user time
                return True
    return False


def _stable(text: str) -> str:
    """The output with what differs from run to run (how long a spec or a pytest session took) masked."""
    text = re.sub(r'("duration_s": )[0-9.e-]+', r"\1<seconds>", text)
    text = re.sub(r'(time=")[0-9.]+(")', r"\1<seconds>\2", text)
    return re.sub(r"^=+ (.+) in [0-9.]+s( \([0-9:]+\))? =+$", r"= \1 in <seconds> =", text, flags=re.M)


# -- the tests --------------------------------------------------------------------------------


def test_the_readme_shows_real_runs() -> None:
    assert len(EXAMPLES) >= 4


def test_every_command_shown_is_run_or_listed_as_not_run_with_a_reason() -> None:
    """A ``$ `` line that is not run here could go stale unseen: each is one run_shown runs, or in NOT_RUN."""
    assert _unchecked(DOCUMENTS, NOT_RUN) == []


def test_a_command_shown_but_not_run_is_caught(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "```\n$ gradcheck list\nlinear\n```\n\n"  # run: fine
        "```\n$ python make_data.py\n```\n\n"  # in a fenced block, not a command run_shown runs
        "1. Then:\n\n   ```\n   $ gradcheck run specs\n   ```\n\n"  # a fence in a list: _blocks misses it
        "    $ python bench.py\n    1.0 s\n",  # an indented block
        encoding="utf-8",
    )
    assert _unchecked([doc], {}) == [
        "doc.md: python make_data.py",
        "doc.md: gradcheck run specs",
        "doc.md: python bench.py",
    ]
    reasons = {"python make_data.py": "writes 2 GB", "python bench.py": "timings", "gradcheck run specs": "x"}
    assert _unchecked([doc], reasons) == []
    assert _unchecked([doc], {**reasons, "python bench.py": " "}) == [
        "doc.md: python bench.py (listed as not run, with no reason)"
    ]
    assert _unchecked([doc], {**reasons, "python gone.py": "was shown once"}) == [
        "NOT_RUN: python gone.py (shown nowhere)"
    ]


def _broken_links(documents: list[Path]) -> list[str]:
    """Each relative link ``[text](path)`` or ``[text](path#anchor)`` whose file does not exist."""
    broken = []
    for document in documents:
        for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text(encoding="utf-8")):
            path = target.split("#", 1)[0]
            if path and not re.match(r"[a-z]+:", path) and not (document.parent / path).exists():
                broken.append(f"{document.name}: {target}")
    return broken


def test_every_relative_link_in_the_docs_leads_to_a_file() -> None:
    assert _broken_links(DOCUMENTS) == []


def test_a_broken_link_is_caught(tmp_path: Path) -> None:
    (tmp_path / "here.md").write_text("x", encoding="utf-8")
    doc = tmp_path / "doc.md"
    doc.write_text("[a](here.md#top) [b](gone.md) [c](https://example.com/x) [d](#local)", encoding="utf-8")
    assert _broken_links([doc]) == ["doc.md: gone.md"]


@pytest.mark.parametrize(("command", "output"), EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_readme_example_output_is_current(monkeypatch: pytest.MonkeyPatch, command: str, output: str) -> None:
    for name, value in PLAIN.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.chdir(REPO)
    ran = run_shown(command, interrupt=output.startswith("^C"))
    assert _stable(ran) == _stable(output)


def _python_snippets() -> list[str]:
    text = "\n".join(d.read_text(encoding="utf-8") for d in DOCUMENTS)
    return [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if b.startswith("from gradcheck_cli")]


@pytest.mark.parametrize("snippet", _python_snippets())
def test_readme_python_api_snippets_run_as_written(snippet: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    exec(compile(snippet, "README.md", "exec"), {})
