"""The errors gradcheck raises for bad input (as opposed to a failed check)."""

from __future__ import annotations

from pathlib import Path


def printable(text: str) -> str:
    """``text`` that any UTF-8 stream can write (a lone surrogate becomes ``\\ud800``)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Stopped(BaseException):  # noqa: N818 - not an error: the run is being stopped
    """A signal stops the run (SIGTERM while a call runs in this process): passes through the
    guard around the checked code (``usercode.user_code``), as Ctrl-C's KeyboardInterrupt does."""


class GradcheckError(Exception):
    """Bad input from the user: the CLI prints it on one line and exits 2."""


class SpecError(GradcheckError):
    """A spec that cannot be loaded or run: names the file, the line and the key."""

    def __init__(
        self,
        message: str,
        path: Path | str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"
