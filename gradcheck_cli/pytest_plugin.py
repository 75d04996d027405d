"""pytest plugin: ``pytest --gradcheck PATH`` collects spec files as test items."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradcheck")
    group.addoption("--gradcheck", action="append", default=[], metavar="PATH", help="Check the specs under PATH.")
