"""``gradcheck run PATH --watch``: run again whatever a saved edit touched.

For someone writing a backward in an editor beside a terminal: after the
first run, the files every spec reads (the spec, its implementation and
reference files) are polled; when one changes, the specs that read it
(and any spec file that appeared or was edited) are collected again and
run again, and their report is printed. Ctrl-C ends it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .suite import Item, collect

Stamp = tuple[int, int] | None  # (mtime_ns, size), or None for a file that is gone


def _stamp(path: Path) -> Stamp:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def watched_files(items: Iterable[Item]) -> dict[Path, set[Path]]:
    """Each file a spec reads -> the spec files that read it."""
    readers: dict[Path, set[Path]] = {}
    for item in items:
        files = [item.path] if item.spec is None else [item.path, *item.spec.files_read().values()]
        for path in files:
            readers.setdefault(Path(path).resolve(), set()).add(item.path)
    return readers


def watch(
    targets: list[Path],
    keyword: str | None,
    items: list[Item],
    run: Callable[[list[Item]], None],
    interval: float = 0.5,
    rounds: int | None = None,
) -> None:
    """Poll until interrupted (or for ``rounds`` polls); ``run`` gets the items to run again."""
    readers = watched_files(items)
    stamps = {path: _stamp(path) for path in readers}
    known = {item.path.resolve() for item in items}
    done = 0
    while rounds is None or done < rounds:
        time.sleep(interval)
        done += 1
        changed = {path for path in stamps if _stamp(path) != stamps[path]}
        found = collect(targets, keyword)
        new = [item for item in found if item.path.resolve() not in known]
        if not changed and not new:
            continue
        stale = {spec.resolve() for path in changed for spec in readers.get(path, ())}
        again = [item for item in found if item.path.resolve() in stale] + new
        readers = watched_files(found)
        stamps = {path: _stamp(path) for path in readers}
        known = {item.path.resolve() for item in found}
        if again:
            names = ", ".join(item.name for item in again)
            print(f"\n-- {time.strftime('%H:%M:%S')}: {len(again)} changed ({names}), running again --\n")
            run(again)
