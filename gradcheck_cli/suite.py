"""Running many specs: collection, -k selection, fail-fast, worker processes.

One spec that cannot load or that raises never stops the others: it becomes
an ``error`` result of its own and the run goes on.
"""

from __future__ import annotations

import multiprocessing
import re
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import GradcheckError, SpecError
from .names import NAME_RE
from .result import CaseResult, Report
from .settings import RunSettings
from .spec import Spec, find_spec_files, load_spec, parse_yaml, read_spec_text

RunOptions = RunSettings  # the name the pytest plugin and older callers use


@dataclass
class Item:
    """A collected spec file: loaded, or the error that stopped it loading."""

    path: Path
    spec: Spec | None = None
    error: SpecError | None = None
    declared_name: str | None = None  # the YAML's `name:` when the spec did not load

    @property
    def name(self) -> str:
        """The spec's name; for a spec that did not load, its YAML's name, else the file's stem."""
        if self.spec is not None:
            return self.spec.name
        return self.declared_name or self.path.stem


def declared_name(path: Path) -> str | None:
    """The ``name:`` a spec file gives, when its YAML can be read and the name is valid."""
    try:
        data, _ = parse_yaml(read_spec_text(path), path)  # no FIFO, device or huge file is read
    except SpecError:
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and NAME_RE.match(name) else None


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
    """Every spec under ``paths``, loaded; a spec that fails to load is kept as an error."""
    items = []
    for path in find_spec_files(paths):
        try:
            item = Item(path, spec=load_spec(path))
        except SpecError as exc:
            item = Item(path, error=exc, declared_name=declared_name(path))
        if keyword is None or matches(keyword, item.name, _shown(path)):
            items.append(item)
    return items


def _shown(path: Path) -> str:
    """The path -k matches against: relative to here, or the folder and file name (as pytest's node ids)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return "/".join(path.resolve().parts[-2:])


def run_item(item: Item, options: RunOptions) -> CaseResult:
    """Run one collected spec and time it; never raises (but for Ctrl-C).

    Whatever escapes the runner (``sys.exit`` in the checked code, a bug of
    ours) becomes this spec's ``error`` result, so the specs after it still run.
    """
    start = time.perf_counter()
    try:
        from . import runner  # noqa: F401 - imports torch once, not counted in this spec's time

        start = time.perf_counter()
        result = _run_item(item, options)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - one spec's problem must not end the run
        message = f"gradcheck could not run this spec: {type(exc).__name__}: {exc}"
        result = _error_result(item, message, options, spec_error=False)
    if result.duration is None:
        result.duration = time.perf_counter() - start
    return result


def _run_item(item: Item, options: RunOptions) -> CaseResult:
    from .runner import run

    if item.spec is None:
        assert item.error is not None
        return _error_result(item, str(item.error), options)
    try:
        return run(item.spec, options)
    except SpecError as exc:
        return _error_result(item, str(exc), options)


def _error_result(item: Item, message: str, options: RunOptions, spec_error: bool = True) -> CaseResult:
    """An ``error`` result for a spec that did not get as far as a check."""
    spec = item.spec
    source = spec.source if spec is not None else str(item.path)
    dims = dict(spec.dims) if spec is not None else {}
    return CaseResult.not_run(
        item.name, source, dims, options.dtype, options.device, options.seed, message, spec_error
    )


def run_suite(
    items: list[Item],
    options: RunOptions,
    fail_fast: bool = False,
    jobs: int = 1,
    progress: bool = False,
) -> Report:
    """Run the items in order, or in ``jobs`` worker processes (same order, same content).

    ``fail_fast`` stops at the first result that does not pass; it (and
    ``--pdb``, which needs this terminal) runs serially whatever ``jobs`` says,
    so that the results are exactly those of a serial run.
    """
    from .api import make_report

    results: list[CaseResult] = []
    with _progress(len(items), progress) as advance:
        if jobs > 1 and len(items) > 1 and not fail_fast and not options.pdb:
            for result in _run_parallel(items, options, jobs):
                results.append(result)
                advance(result.spec)
        else:
            for item in items:
                result = run_item(item, options)
                results.append(result)
                advance(result.spec)
                if fail_fast and not result.ok:
                    break
    return make_report(results)


def _run_parallel(items: list[Item], options: RunOptions, jobs: int) -> Iterator[CaseResult]:
    """Results in item order, from worker processes.

    A spec that did not load never leaves this process. A worker that dies
    (a crash in the checked code, ``os._exit``) breaks the pool: the specs it
    took down with it are run again, each in a process of its own, so only the
    one that crashes is reported as an error.
    """
    workers = min(jobs, len(items))
    with _pool(workers) as pool:
        futures = [None if item.spec is None else pool.submit(run_item, item, options) for item in items]
        for item, future in zip(items, futures):
            if future is None:
                yield run_item(item, options)
                continue
            try:
                yield future.result()
            except BrokenProcessPool:
                yield _run_isolated(item, options)
            except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
                message = (
                    f"gradcheck could not run this spec in a worker process: {type(exc).__name__}: {exc}"
                )
                yield _error_result(item, message, options, spec_error=False)


def _run_isolated(item: Item, options: RunOptions) -> CaseResult:
    with _pool(1) as pool:
        try:
            return pool.submit(run_item, item, options).result()
        except BrokenProcessPool:
            message = (
                "the worker process running this spec died (a crash or os._exit in the checked code);"
                " run it alone, without --jobs, to see more"
            )
            return _error_result(item, message, options, spec_error=False)


def _pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes forked from a server that has imported torch once.

    Not forked from this process, which may have run torch's thread pool (not
    safe to fork). Workers keep torch's default thread count: a different one
    can change the last bits of a reduction, and results must equal serial ones.
    """
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        context.set_forkserver_preload(["torch"])
    return ProcessPoolExecutor(workers, mp_context=context)


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
