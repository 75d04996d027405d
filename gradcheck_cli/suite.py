"""Running many specs: collection, -k selection, fail-fast, and where each spec runs.

Every spec runs in a worker process of :mod:`.supervisor` (serial runs too),
forked from a server that imported torch once: this process reads specs and
renders reports, and never imports torch. One spec that cannot load, raises,
ends its process, crashes or runs past its timeout never stops the others: it
becomes an ``error`` result of its own and the run goes on.
"""

from __future__ import annotations

import atexit
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import GradcheckError, SpecError
from .names import NAME_RE
from .result import CaseResult, Report
from .settings import RunSettings
from .spec import Spec, find_spec_files, load_spec, parse_yaml, read_spec_text
from .supervisor import Call, Died, Supervisor

RunOptions = RunSettings  # the name the pytest plugin and older callers use


@dataclass
class Item:
    """A collected spec file: loaded, or the error that stopped it loading."""

    path: Path
    spec: Spec | None = None
    error: SpecError | None = None
    declared_name: str | None = None  # the YAML's `name:` when the spec did not load
    # The code files its YAML names (implementation/reference `file:`) when the spec did not load.
    declared_files: dict[str, Path] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The spec's name; for a spec that did not load, its YAML's name, else the file's stem."""
        if self.spec is not None:
            return self.spec.name
        return self.declared_name or self.path.stem


def declared(path: Path) -> tuple[str | None, dict[str, Path]]:
    """What a spec file that does not load still says, when its YAML can be read: its valid
    ``name:``, and the ``file:`` of its implementation and reference (by section)."""
    try:
        data, _ = parse_yaml(read_spec_text(path), path)  # no FIFO, device or huge file is read
    except SpecError:
        return None, {}
    if not isinstance(data, dict):
        return None, {}
    name = data.get("name")
    files: dict[str, Path] = {}
    for key in ("implementation", "reference"):
        section = data.get(key)
        file = section.get("file") if isinstance(section, dict) else None
        if isinstance(file, str) and file and "\x00" not in file:
            files[key] = path.parent / file
    return (name if isinstance(name, str) and NAME_RE.match(name) else None), files


def matches(expr: str, name: str, path: str = "") -> bool:
    """pytest's ``-k``: each word is a case-insensitive substring of the spec's name or of its
    path; words combine with ``and``, ``or``, ``not`` and parentheses."""
    haystack = [name.lower(), path.lower()]
    tokens = re.findall(r"\(|\)|[^\s()]+", expr)
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        token = peek()
        if token is None:
            raise GradcheckError(f"-k {expr!r} is not a valid expression: it ends too soon")
        position += 1
        return token

    def any_of() -> bool:
        value = all_of()
        while peek() == "or":
            take()
            value = all_of() or value
        return value

    def all_of() -> bool:
        value = negated()
        while peek() == "and":
            take()
            value = negated() and value
        return value

    def negated() -> bool:
        token = take()
        if token == "not":
            return not negated()
        if token == "(":
            value = any_of()
            if take() != ")":
                raise GradcheckError(f"-k {expr!r} is not a valid expression: a '(' is not closed")
            return value
        if token in ("and", "or", ")"):
            raise GradcheckError(f"-k {expr!r} is not a valid expression: {token!r} where a word belongs")
        return any(token.lower() in text for text in haystack)

    result = any_of()
    if peek() is not None:
        raise GradcheckError(f"-k {expr!r} is not a valid expression: {peek()!r} is left over")
    return result


def collect(paths: Iterable[str | Path], keyword: str | None = None) -> list[Item]:
    """Every spec under ``paths`` that ``-k keyword`` selects, loaded; a spec that fails to load
    is kept as an error."""
    return select(collect_all(paths), keyword)


def collect_all(paths: Iterable[str | Path]) -> list[Item]:
    """Every spec under ``paths``, loaded or kept as the error that stopped it loading."""
    items = []
    for path in find_spec_files(paths):
        try:
            items.append(Item(path, spec=load_spec(path)))
        except SpecError as exc:
            name, files = declared(path)
            items.append(Item(path, error=exc, declared_name=name, declared_files=files))
    return items


def select(items: Iterable[Item], keyword: str | None) -> list[Item]:
    """The items ``-k keyword`` selects (all of them without one)."""
    return [item for item in items if keyword is None or matches(keyword, item.name, _shown(item.path))]


def _shown(path: Path) -> str:
    """The path -k matches against: relative to here, or the folder and file name (as pytest's node ids)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return "/".join(path.resolve().parts[-2:])


# What the worker server imports once, so that no worker imports it again.
PRELOAD = ("torch", "numpy", "gradcheck_cli.runner", "gradcheck_cli.errormap")
_SUPERVISORS: dict[tuple[int, bool], Supervisor] = {}


def supervisor(jobs: int = 1, isolate: bool = True) -> Supervisor:
    """This process's supervisor for ``jobs`` workers, started: one fork server, reused by every run
    of this process (a notebook, a test session), killed with it."""
    key = (jobs, isolate)
    found = _SUPERVISORS.get(key)
    if found is None:
        found = _SUPERVISORS[key] = Supervisor(jobs, preload=PRELOAD, isolate=isolate)
        atexit.register(found.close)
    found.start()
    return found


def run_item(
    item: Item,
    options: RunOptions,
    dims: Mapping[str, int] | None = None,
    spec_options: Mapping[str, Any] | None = None,
) -> CaseResult:
    """Run one collected spec and time it (``dims`` and ``spec_options`` override the spec's);
    never raises (but for Ctrl-C).

    Whatever escapes the runner (``sys.exit`` in the checked code, a bug of
    ours) becomes this spec's ``error`` result, so the specs after it still run.
    """
    if item.spec is None:
        assert item.error is not None
        return _error_result(item, str(item.error), options)
    start = time.perf_counter()
    try:
        from .runner import run

        result = run(item.spec, options, dims, spec_options)
    except SpecError as exc:
        result = _error_result(item, str(exc), options)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - one spec's problem must not end the run
        message = f"gradcheck could not run this spec: {type(exc).__name__}: {exc}"
        result = _error_result(item, message, options, spec_error=False)
    if result.duration is None:
        result.duration = time.perf_counter() - start
    return result


def _error_result(item: Item, message: str, options: RunOptions, spec_error: bool = True) -> CaseResult:
    """An ``error`` result for a spec that did not get as far as a check."""
    spec = item.spec
    source = spec.source if spec is not None else str(item.path)
    dims = dict(spec.dims) if spec is not None else {}
    return CaseResult.not_run(
        item.name, source, dims, options.dtype, options.device, options.seed, message, spec_error
    )


def died(item: Item, outcome: Died, options: RunOptions) -> CaseResult:
    """The result of a spec whose worker did not send one back: ended, killed, timed out, interrupted."""
    message = outcome.message
    if outcome.where and outcome.reason in ("signal", "exit") and outcome.where not in message:
        message += f" (at {outcome.where})"
    result = _error_result(item, message, options, spec_error=False)
    result.duration = outcome.seconds
    if outcome.reason == "interrupted":
        result.status, result.error, result.reason = "interrupted", None, outcome.message
    return result


def _call(item: Item, options: RunOptions) -> Call[CaseResult]:
    assert item.spec is not None
    return Call(run_item, (item, options), timeout=options.timeout_for(item.spec.timeout), label=item.name)


def run_supervised(
    item: Item,
    options: RunOptions,
    dims: Mapping[str, int] | None = None,
    spec_options: Mapping[str, Any] | None = None,
) -> CaseResult:
    """One spec in a worker process (in this one with --pdb): its result, or why there is none
    (``interrupted`` when Ctrl-C or SIGTERM came first: ``supervisor(1).interrupted`` says which)."""
    if item.spec is None:
        return run_item(item, options)
    sup = supervisor(1, isolate=not options.pdb)
    sup.interrupted = None
    timeout = options.timeout_for(item.spec.timeout)
    outcome = sup.run(run_item, (item, options, dims, spec_options), timeout=timeout, label=item.name)
    return died(item, outcome, options) if isinstance(outcome, Died) else outcome


def cuda_problem(device: str) -> str | None:
    """Why ``device`` cannot be used here, asked of a worker (this process does not import torch)."""
    if not device.startswith("cuda"):
        return None
    from .runner import cuda_problem as problem

    outcome = supervisor(1).run(problem, (device,), timeout=60, label="cuda")
    return outcome.message if isinstance(outcome, Died) else outcome


def run_suite(
    items: list[Item],
    options: RunOptions,
    fail_fast: bool = False,
    jobs: int = 1,
    progress: bool = False,
) -> Report:
    """Run the items in worker processes, ``jobs`` at a time, results in order.

    Serial runs too: a spec whose process dies (``os._exit``, a segfault), runs
    past its timeout or is interrupted is that spec's result and the run goes
    on (or, for Ctrl-C and SIGTERM, stops with the rest marked ``interrupted``:
    :attr:`Report.interrupted`). A spec that did not load never leaves this
    process. ``fail_fast`` stops at the first result that does not pass;
    workers that ran ahead are stopped, so the results are a serial run's.
    ``--pdb`` runs in this process, which has the terminal.
    """
    from .api import make_report

    sup = supervisor(jobs, isolate=not options.pdb)
    sup.interrupted = None
    outcomes = sup.map([_call(item, options) for item in items if item.spec is not None])
    results: list[CaseResult] = []
    try:
        with _progress(len(items), progress) as advance:
            for item in items:
                if item.spec is None:
                    result = run_item(item, options)
                else:
                    outcome = next(outcomes)
                    result = died(item, outcome, options) if isinstance(outcome, Died) else outcome
                results.append(result)
                advance(result.spec)
                if fail_fast and not result.ok:
                    break
    finally:
        getattr(outcomes, "close", lambda: None)()  # stops workers that ran ahead of a fail-fast stop
    report = make_report(results)
    report.interrupted = int(sup.interrupted) if sup.interrupted else None
    return report


class _progress:
    """A progress bar on stderr when it is a terminal (without colour under NO_COLOR); else nothing."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.bar: Any = None

    def __enter__(self) -> Callable[[str], None]:
        if not self.enabled:
            return lambda name: None
        import os

        from rich.console import Console
        from rich.progress import Progress

        plain = bool(os.environ.get("NO_COLOR"))
        console = Console(stderr=True, force_terminal=True, no_color=plain)
        self.bar = Progress(console=console, transient=True)
        self.bar.start()
        task = self.bar.add_task("checking", total=self.total)
        return lambda name: self.bar.update(task, advance=1, description=name)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
