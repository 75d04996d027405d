"""The package's layout: every module imports on its own, no import cycles, no torch on the CLI path.

The CLI's own process parses specs and renders reports; only checks need
torch. A module-level import cycle makes the import order matter and a
refactor fragile, so there is none.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gradcheck_cli"
# What `gradcheck --help`, `list`, completion and the reporters import: torch must stay out.
TORCH_FREE = (
    "gradcheck_cli",
    "gradcheck_cli.cli",
    "gradcheck_cli.cli_options",
    "gradcheck_cli.cli_common",
    "gradcheck_cli.cli_layers",
    "gradcheck_cli.case",
    "gradcheck_cli.settings",
    "gradcheck_cli.result",
    "gradcheck_cli.report",
    "gradcheck_cli.spec",
    "gradcheck_cli.catalogue",
    "gradcheck_cli.config",
    "gradcheck_cli.expressions",
    "gradcheck_cli.calls",
    "gradcheck_cli.api",
    "gradcheck_cli.suite",
)


def modules() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def _module_level_imports(module: str) -> set[str]:
    """The package modules ``module`` imports when it is imported (not inside functions or TYPE_CHECKING)."""
    path = PACKAGE.parent / Path(*module.split("."))
    is_package = path.is_dir()
    path = path / "__init__.py" if is_package else path.with_suffix(".py")
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    known = set(modules())
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in known else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in known and m != module}


def test_the_import_graph_has_no_cycles():
    graph = {m: _module_level_imports(m) for m in modules()}
    # A package imports its submodules to re-export them; the edge back from a submodule to
    # its own package's __init__ is not a cycle through code.
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = "open"
        path.append(m)
        for dep in sorted(graph[m]):
            if state.get(dep) == "open":
                cycle = path[path.index(dep) :] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m)


# Imports each module in a fork of an interpreter that has imported torch and nothing of
# gradcheck: each module alone, without paying torch's import once per module.
_FORKING_IMPORTER = """
import importlib, os, sys, traceback
import torch  # noqa: F401
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print(name, os.waitstatus_to_exitcode(status), flush=True)
"""


def test_every_module_imports_alone_in_a_fresh_interpreter():
    ran = subprocess.run(
        [sys.executable, "-c", _FORKING_IMPORTER, *modules()], capture_output=True, text=True, timeout=300
    )
    codes = dict(line.split() for line in ran.stdout.splitlines())
    assert set(codes) == set(modules()), ran.stderr
    assert all(code == "0" for code in codes.values()), ran.stderr


def _torch_after_import(module: str) -> bool:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return ran.stdout.strip() == "True"


@pytest.mark.parametrize("module", TORCH_FREE)
def test_the_cli_path_does_not_import_torch(module):
    assert not _torch_after_import(module)


@pytest.mark.parametrize("argv", [["run", "examples/ci/failing-suite"], ["linear", "--in", "3"]])
def test_a_check_from_the_command_line_never_imports_torch_in_gradchecks_own_process(argv):
    code = (
        "import sys\n"
        "from gradcheck_cli.cli import app\n"
        f"try:\n    app({argv!r}, prog_name='gradcheck')\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent, timeout=300
    )
    assert ran.stdout.strip().splitlines()[-1] == "NO-TORCH", ran.stderr  # the workers import it
    assert "dtype=float64" in ran.stdout  # and a check did run


# -- sizes: the spine stays readable ----------------------------------------------------------

SPINE = (
    "spec",
    "expressions",
    "bounds",
    "usercode",
    "conventions",
    "handed",
    "runner",
    "compare",
    "api",
    "suite",
)
SPINE += ("cli", "cli_common", "cli_options", "cli_layers")
# The spine's modules past 400 lines or with a function past 60, each saying why in its docstring.
LONG_BY_DESIGN = {"api": "check is long for its docstring", "compare": "one pass per chunk"}


def _sizes(path: Path) -> tuple[int, list[str]]:
    source = path.read_text(encoding="utf-8")
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > 60
    ]
    return source.count("\n"), long


@pytest.mark.parametrize("name", SPINE)
def test_no_spine_module_past_400_lines_or_function_past_60_unless_it_says_why(name):
    paths = sorted((PACKAGE / name).glob("*.py")) if (PACKAGE / name).is_dir() else [PACKAGE / f"{name}.py"]
    for path in paths:
        lines, long = _sizes(path)
        if name in LONG_BY_DESIGN:
            docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
            assert "long" in docstring or "past" in docstring, f"{path.name} does not say why it is long"
        else:
            assert lines <= 400 and not long, f"{path.name}: {lines} lines, long functions {long}"


def test_no_merge_conflict_is_left_in_a_tracked_file():
    files = subprocess.run(
        ["git", "ls-files"], cwd=PACKAGE.parent, capture_output=True, text=True
    ).stdout.split()
    if not files:
        pytest.skip("not a git checkout (an sdist)")
    left = []
    for name in files:
        path = PACKAGE.parent / name
        if (
            path.suffix in {".py", ".md", ".yaml", ".yml", ".toml", ".json", ".txt", ".cfg"}
            and path.is_file()
        ):
            text = path.read_text(encoding="utf-8", errors="replace")
            if any(line.startswith(("<<<<<<< ", ">>>>>>> ")) for line in text.splitlines()):
                left.append(name)
    assert left == []
