"""``gradcheck run PATH --watch``: run again whatever a saved edit touched.

For someone writing a backward in an editor beside a terminal: after the
first run, the files every spec reads (the spec, its implementation and
reference files) are polled; when one changes, the specs that read it
(and any spec file that appeared or was edited) are collected again and
run again, and their report is printed. A spec file that is deleted is
said to be gone, and watched for until it comes back. Ctrl-C ends it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import GradcheckError
from .spec.files import has_spec_suffix, skipped_folder
from .suite import Item, collect

# A poll reads no spec unless a file a spec reads, or a folder's listing, changed; every
# COLLECT_EVERY-th poll collects all the same (a file system whose mtimes count whole seconds).
COLLECT_EVERY = 10
Stamp = tuple[int, int] | None  # (mtime_ns, size), or None for a file that is gone


def _stamp(path: Path) -> Stamp:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def folder_stamps(targets: Iterable[Path]) -> dict[Path, Stamp]:
    """Each target and each folder below it that the search for specs enters -> its stamp.

    A spec file that appears, goes or is renamed changes its folder's mtime; each file with a
    spec's suffix is stamped too (an empty new.yaml, then saved, keeps its folder's).
    """
    found: dict[Path, Stamp] = {}
    seen: set[tuple[int, int]] = set()
    for target in targets:
        found[target] = _stamp(target)
        if not target.is_dir():
            continue
        for folder, subfolders, names in os.walk(target, followlinks=True):
            here = Path(folder)
            try:
                info = here.stat()
            except OSError:
                subfolders[:] = []
                continue
            if (info.st_dev, info.st_ino) in seen:  # a symlink loop, or a folder reached twice
                subfolders[:] = []
                continue
            seen.add((info.st_dev, info.st_ino))
            found[here] = (info.st_mtime_ns, info.st_size)
            for name in names:  # a file that becomes a spec by an edit in place keeps its folder's
                if has_spec_suffix(here / name):
                    found[here / name] = _stamp(here / name)
            subfolders[:] = sorted(d for d in subfolders if not skipped_folder(here / d))
    return found


def watched_files(items: Iterable[Item]) -> dict[Path, set[Path]]:
    """Each file a spec reads -> the spec files that read it."""
    readers: dict[Path, set[Path]] = {}
    for item in items:
        if item.spec is None:  # a spec that did not load: its file, and the code files its YAML names
            files = [item.path, *item.declared_files.values()]
        else:
            files = [item.path, *item.spec.files_read().values()]
        for path in files:
            readers.setdefault(Path(path).resolve(), set()).add(item.path)
    return readers


def _say(message: str) -> None:
    print(f"\n-- {time.strftime('%H:%M:%S')}: {message} --\n", flush=True)


class Watcher:
    """What the watch knows between two polls; :meth:`step` is one poll."""

    def __init__(
        self,
        targets: list[Path],
        keyword: str | None,
        items: list[Item],
        run: Callable[[list[Item]], None],
    ) -> None:
        self.targets, self.keyword, self.run = targets, keyword, run
        self.folders: dict[Path, Stamp] | None = None  # None: the first poll collects
        self.quiet = 0  # polls since the last collection
        self._remember(items)
        self.gone: set[Path] = set()  # targets given on the command line that are not there now

    def _remember(self, items: list[Item]) -> None:
        self.readers = watched_files(items)
        self.stamps = {path: _stamp(path) for path in self.readers}
        self.known = {item.path.resolve(): item for item in items}

    def _collect(self) -> list[Item] | None:
        """The specs under the targets that are there now (None: they cannot be read this time)."""
        present = [t for t in self.targets if t.exists() or t.is_symlink()]
        for target in self.targets:
            if target in present:
                self.gone.discard(target)
            elif target not in self.gone:
                self.gone.add(target)
                if target.resolve() not in self.known:  # a spec file that goes is said below
                    _say(f"{target} is gone; watching for it to come back")
        try:
            return collect(present, self.keyword)
        except GradcheckError as exc:  # a folder removed between the check and the walk: next poll
            print(f"gradcheck: warning: {exc}", file=sys.stderr)
            return None

    def step(self) -> list[Item]:
        """Poll once: say which specs are gone, run again those a change touched; returns those."""
        changed = {path for path in self.stamps if _stamp(path) != self.stamps[path]}
        folders = folder_stamps(self.targets)
        self.quiet += 1
        if not changed and folders == self.folders and self.quiet < COLLECT_EVERY:
            return []  # nothing to collect again: no spec is read
        self.folders, self.quiet = folders, 0
        found = self._collect()
        if found is None:
            return []
        here = {item.path.resolve() for item in found}
        new = [item for item in found if item.path.resolve() not in self.known]
        gone = [item for path, item in self.known.items() if path not in here and _stamp(path) is None]
        if not changed and not new and not gone:
            return []
        for item in gone:
            _say(f"{item.name} ({item.path}) is gone; still watching")
        stale = {spec.resolve() for path in changed for spec in self.readers.get(path, ())}
        again = [item for item in found if item.path.resolve() in stale] + new
        self._remember(found)
        if again:
            names = ", ".join(item.name for item in again)
            _say(f"{len(again)} changed ({names}), running again")
            self.run(again)
        return again


def watch(
    targets: list[Path],
    keyword: str | None,
    items: list[Item],
    run: Callable[[list[Item]], None],
    interval: float = 0.5,
    rounds: int | None = None,
) -> None:
    """Poll until interrupted (or for ``rounds`` polls); ``run`` gets the items to run again."""
    watcher = Watcher(targets, keyword, items, run)
    done = 0
    while rounds is None or done < rounds:
        time.sleep(interval)
        done += 1
        watcher.step()
