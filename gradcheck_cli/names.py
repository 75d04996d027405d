"""Names: what counts as one, and "did you mean" for the ones that are misspelt."""

from __future__ import annotations

import difflib
import keyword
import re
from collections.abc import Iterable

IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")  # a spec's name: also a command name


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str:
    """`` (did you mean 'params'?)`` when one of ``choices`` is close to ``word``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_keyword(name: str) -> bool:
    """A Python keyword (``in``, ``lambda``): a dim may be called that, an expression must mangle it."""
    return keyword.iskeyword(name)
