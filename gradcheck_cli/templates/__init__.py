"""`gradcheck new`: a spec and a Python template per convention, with TODOs to fill."""

from __future__ import annotations

import os
import re
from pathlib import Path
from string import Template

from ..errors import GradcheckError
from ..spec.model import CONVENTIONS as SPEC_CONVENTIONS
from ..spec.sections import COMMANDS

# The template of each convention (numpy's is written the cs231n way, and named so).
TEMPLATES = {c: "cs231n" if c == "numpy" else c for c in SPEC_CONVENTIONS}
CONVENTIONS = tuple(TEMPLATES.values())  # what `gradcheck new --convention` offers
ALIASES = {"numpy": "cs231n"}


def write_template(name: str, convention: str, directory: Path) -> list[Path]:
    """Write NAME.yaml and NAME.py into ``directory``; refuse to overwrite."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise GradcheckError(f"layer name {name!r} must match [a-z][a-z0-9_]*")
    if name in COMMANDS:
        raise GradcheckError(f"{name!r} is a gradcheck command; choose another name for the layer")
    template = ALIASES.get(convention, convention)
    if template not in CONVENTIONS:
        raise GradcheckError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    here = Path(__file__).parent
    texts = [(here / f"{template}{suffix}.tmpl").read_text(encoding="utf-8") for suffix in (".yaml", ".py")]
    targets = [directory / f"{name}.yaml", directory / f"{name}.py"]
    if directory.exists() and not directory.is_dir():
        raise GradcheckError(f"--dir {directory} is a file, not a directory")
    for target in targets:
        if os.path.lexists(target):  # a dangling symlink too: writing would follow it
            raise GradcheckError(f"{target} already exists; not overwriting it")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GradcheckError(f"cannot create --dir {directory}: {exc.strerror or exc}") from None
    written: list[Path] = []
    try:
        for target, text in zip(targets, texts):
            with open(target, "x", encoding="utf-8") as out:  # "x": never over a file made meanwhile
                written.append(target)
                out.write(Template(text).substitute(name=name))
    except OSError as exc:
        for path in written:  # no half-written layer left behind
            path.unlink(missing_ok=True)
        raise GradcheckError(f"cannot write {exc.filename or target}: {exc.strerror or exc}") from None
    return targets
