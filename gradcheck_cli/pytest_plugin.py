"""pytest plugin: ``pytest --gradcheck PATH`` runs every spec under PATH as a test.

Registered through the ``pytest11`` entry point, so pytest always loads it,
but it stays inert unless ``--gradcheck`` is given: nothing is collected and
neither torch nor the runner is imported.

With ``--gradcheck specs/``, each spec file under ``specs/`` is one test item
named after the spec (``specs/dense.yaml::dense``). The specs join whatever
pytest collects anyway; to run only them, name the folder as an argument too
(``pytest specs --gradcheck specs``). A failing item shows the gradcheck table
of that spec; ``-k``, ``-x``, ``--junit-xml`` and pytest-xdist's ``-n`` work as
for any test. A spec that cannot load is a failing item of its own, never a
collection error that would stop the session.

A result's status becomes pytest's outcome: ``skip`` (a spec's ``skip:``) is
skipped with its reason, ``xfail`` is xfailed with its reason, ``xpass`` (an
``xfail:`` spec that passed) fails, as under pytest's ``xfail_strict``, and
``interrupted`` stops the session as Ctrl-C does. Items record no
``user_properties``: pytest would write them as per-testcase ``<properties>``,
which the JUnit schema pytest's ``--junit-xml`` follows does not allow.
"""

from __future__ import annotations

import math
import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .result import CaseResult
    from .suite import Item as Collected
    from .suite import RunOptions

_ROOTS: pytest.StashKey[list[Path]] = pytest.StashKey()
_OPTIONS: pytest.StashKey[RunOptions] = pytest.StashKey()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradcheck", "gradcheck: hand-written backward passes against autograd")
    group.addoption(
        "--gradcheck",
        action="append",
        default=[],
        metavar="PATH",
        help="Run every gradcheck spec under PATH (a spec file or a directory) as a test. Repeatable.",
    )
    group.addoption(
        "--gradcheck-dtype",
        default=None,
        metavar="DTYPE",
        help="dtype of the gradcheck specs: float64 (default), float32, bfloat16 or float16.",
    )
    group.addoption(
        "--gradcheck-device",
        default=None,
        metavar="DEVICE",
        help="Device of the gradcheck specs: cpu (default) or cuda.",
    )
    group.addoption(
        "--gradcheck-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="Stop a gradcheck spec that runs longer (default 120; or [tool.gradcheck] timeout, or a"
        " spec's timeout:).",
    )


def _absolute(path: str | Path, base: Path) -> Path:
    return Path(os.path.abspath(base / path))


def _covers(arg: Path, path: Path) -> bool:
    return arg == path or arg in path.parents


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gradcheck: a gradcheck spec collected by --gradcheck PATH")
    given: list[str] = config.getoption("gradcheck")
    if not given:
        return
    from .cli_options import timeout_problem
    from .config import load_config
    from .errors import GradcheckError
    from .suite import RunOptions

    base = config.invocation_params.dir
    roots = []
    for text in given:
        root = _absolute(text, base)
        if not root.exists():
            raise pytest.UsageError(f"--gradcheck {text}: no such file or directory")
        roots.append(root)
    config.stash[_ROOTS] = roots

    # Collect PATH even where pytest would not look by itself (outside testpaths).
    collected = [_absolute(arg.split("::")[0], base) for arg in config.args]
    for text, root in zip(given, roots):
        if not any(_covers(arg, root) for arg in collected):
            config.args.append(text)
            collected.append(root)

    # [tool.gradcheck] as the command line reads it: dtype, device, seed, tolerances, timeout. A bad
    # value, there or in an option, is pytest's usage error (exit 4), never an internal error.
    try:
        settings = load_config(config.rootpath)
    except GradcheckError as exc:
        raise pytest.UsageError(str(exc)) from None
    timeout: float | None = config.getoption("gradcheck_timeout")
    if timeout is not None and not 0 < timeout < math.inf:
        raise pytest.UsageError(f"--gradcheck-timeout must be a positive number of seconds, got {timeout!r}")
    for value, name in ((timeout, "--gradcheck-timeout"), (settings.timeout, "[tool.gradcheck] timeout")):
        problem = timeout_problem(value, name)
        if problem:
            raise pytest.UsageError(problem)
    try:
        config.stash[_OPTIONS] = RunOptions.merged(
            settings,
            dtype=config.getoption("gradcheck_dtype"),
            device=config.getoption("gradcheck_device"),
            timeout=timeout,
            verbose=config.get_verbosity() > 1,
        )
    except GradcheckError as exc:
        raise pytest.UsageError(str(exc)) from None


# An old-style wrapper: it works with every pluggy a user's pytest may come with.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """A skipped spec is reported at its spec file (``specs/dense.yaml:1: reason``), not at the
    line of this plugin that skipped it."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if isinstance(item, SpecItem) and report.skipped and isinstance(report.longrepr, tuple):
        report.longrepr = (str(item.path), 1, report.longrepr[2])


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> SpecFile | None:
    roots = parent.config.stash.get(_ROOTS, None)
    if not roots:
        return None
    from .spec import has_spec_suffix, looks_like_spec

    if not has_spec_suffix(file_path):
        return None
    path = _absolute(file_path, Path.cwd())
    if not any(_covers(root, path) for root in roots):
        return None

    if path not in roots and not looks_like_spec(path):
        return None
    return SpecFile.from_parent(parent, path=file_path)


class SpecFile(pytest.File):
    """A spec file: one item, named after the spec (the file's stem if it does not load)."""

    def collect(self) -> Iterator[SpecItem]:
        from .suite import collect

        for entry in collect([self.path]):
            yield SpecItem.from_parent(self, name=entry.name, entry=entry)


class SpecFailed(Exception):
    """Raised by a spec item that did not pass; carries the result to report."""

    def __init__(self, result: CaseResult) -> None:
        from .report.junit import result_message

        super().__init__(result_message(result))
        self.result = result


class SpecItem(pytest.Item):
    """One spec case, run by the same code as ``gradcheck run``."""

    def __init__(self, *, entry: Collected, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entry = entry
        self.add_marker("gradcheck")

    def runtest(self) -> None:
        from .suite import run_supervised

        # In a worker process, as `gradcheck run` does: os._exit or a crash in the checked code
        # is this item's failure, never the end of the session (or a green one).
        result = run_supervised(self.entry, self.config.stash[_OPTIONS])
        if result.status in ("skip", "xfail"):
            from .report.status import reason

            why = reason(result) or f"the spec says {result.status}"
            if result.status == "skip":
                pytest.skip(why)
            pytest.xfail(why)
        if result.status == "interrupted":
            raise KeyboardInterrupt
        if not result.ok:
            raise SpecFailed(result)

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str | Any:
        if isinstance(excinfo.value, SpecFailed):
            # The first line is what pytest's short summary and --junit-xml show.
            from .report.junit import case_text, result_message

            result = excinfo.value.result
            return f"{result_message(result)}\n\n{case_text(result)}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"gradcheck spec {self.name}"
