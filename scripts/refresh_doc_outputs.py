"""Run every command shown in README.md and docs/*.md again and paste its real output.

    python scripts/refresh_doc_outputs.py [FILE ...]

The commands (``$ gradcheck ...``, ``$ cd DIR && gradcheck ... && ...``, ``$ pytest ...``, and a
``^C`` after one) run as tests/test_readme.py runs them: its run_shown, whose docstring says how
(in-process from the repository root, plain output: NO_COLOR, 120 columns; ``cd scratch`` in a
fresh empty folder). A block's text after the command, up to the next ``$ `` line or the end of
the block, is replaced by what the command printed, unless the two differ only where
tests/test_readme.py masks (durations): then the old text stays, and a refresh shows only real
changes. The commands in tests/test_readme.py's NOT_RUN (a benchmark) are left as they are.
Review the diff before committing it.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.test_readme import NOT_RUN, PLAIN, RUNNABLE, _stable, run_shown  # noqa: E402


def refresh(path: Path) -> bool:
    text = path.read_text(encoding="utf-8")
    out: list[str] = []
    in_block = False
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            in_block = not in_block
            out.append(line)
            i += 1
            continue
        if in_block and line.startswith("$ ") and line[2:].startswith(RUNNABLE) and line[2:] not in NOT_RUN:
            out.append(line)
            start = i = i + 1
            while i < len(lines) and not lines[i].startswith(("$ ", "```")):
                i += 1
            old = "\n".join(lines[start:i]).rstrip("\n")
            new = run_shown(line[2:], interrupt=old.startswith("^C"))
            out.extend((old if _stable(old) == _stable(new) else new).splitlines())
            if i < len(lines) and lines[i].startswith("$ "):
                out.append("")
            continue
        out.append(line)
        i += 1
    new = "\n".join(out) + "\n"
    shown = "|".join(re.escape(start) for start in RUNNABLE)
    new = re.sub(rf"\n\n+(\$ (?:{shown}))", r"\n\n\1", new)
    if new != text:
        path.write_text(new, encoding="utf-8")
        return True
    return False


def main(argv: list[str]) -> int:
    os.environ.update(PLAIN)
    os.environ.pop("FORCE_COLOR", None)
    os.chdir(REPO)
    targets = [Path(a).resolve() for a in argv] or [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for path in targets:
        if refresh(path):
            print(f"updated {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
