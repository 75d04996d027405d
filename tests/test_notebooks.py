"""Notebooks: ``file: NAME.ipynb`` loads the notebook's definitions, and errors point at its cells.

``tests/notebooks/03_backprop.ipynb`` is written in the style of the fast.ai backprop lesson:
imports (one of a course helper library that is not installed), a data download, training
code and plots at the top level, magics, and the lesson's functions (``lin_grad``,
``relu_grad``, ``mse_grad``) and classes (``Lin``, ``Relu``, ``Mse``, ``Model``, then the
same on a ``Module`` base class). The specs below check them straight from the notebook.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

LESSON = REPO / "tests" / "notebooks" / "03_backprop.ipynb"

SPECS = {
    "lin": """
        name: lesson_lin
        dims: {n: 5, in: 3, out: 4}
        inputs:
          x: [n, in]
        params:
          w: [in, out]
          b: [out]
        reference: "x @ w + b"
        implementation:
          file: 03_backprop.ipynb
          forward: "lin(x, w, b) -> out"
          backward: "lin_grad(x, out, w, b)"
        """,
    "relu": """
        name: lesson_relu
        dims: {n: 5, nh: 4}
        inputs:
          x: {shape: [n, nh], min_abs: 0.05}
        reference: "F.relu(x)"
        implementation:
          file: 03_backprop.ipynb
          forward: "relu(x) -> out"
          backward: "relu_grad(x, out)"
        """,
    "mse": """
        name: lesson_mse
        dims: {n: 6}
        inputs:
          inp: [n, 1]
          targ: {shape: [n], grad: false}
        outputs: [loss]
        reference: "F.mse_loss(inp.squeeze(-1), targ)"
        implementation:
          file: 03_backprop.ipynb
          backward: "mse_grad(inp, targ)"   # the end of the chain: no forward, no out.g
        """,
    "model": """
        name: lesson_model
        dims: {n: 6, in: 4, nh: 5}
        inputs:
          x: [n, in]
          targ: {shape: [n], grad: false}
        params: {w1: [in, nh], b1: [nh], w2: [nh, 1], b2: [1]}
        outputs: [loss]
        reference: "F.mse_loss((F.relu(x @ w1 + b1) @ w2 + b2).squeeze(-1), targ)"
        implementation:
          file: 03_backprop.ipynb
          class: "Model(w1, b1, w2, b2)"
          forward: "__call__(x, targ) -> loss"
          backward: "backward()"
        """,
    "module_lin": """
        name: lesson_module_lin
        dims: {n: 5, in: 3, out: 4}
        inputs:
          x: [n, in]
        params:
          w: [in, out]
          b: [out]
        reference: "x @ w + b"
        implementation:
          file: 03_backprop.ipynb
          class: "Lin(w, b)"
          forward: "__call__(x) -> out"
          backward: "backward()"
        """,
}


@pytest.fixture
def lesson(tmp_path):
    """A copy of the lesson's notebook with the specs next to it: ``lesson(name)`` -> spec path."""
    shutil.copy(LESSON, tmp_path / LESSON.name)

    def spec(name: str, edit: tuple[str, str] | None = None) -> Path:
        text = textwrap.dedent(SPECS[name]).lstrip()
        if edit is not None:
            assert edit[0] in text
            text = text.replace(*edit)
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        return path

    return spec


def edit_cell(notebook: Path, index: int, old: str, new: str) -> None:
    """Put a one-line bug into cell ``index`` of the notebook."""
    data = json.loads(notebook.read_text())
    source = "".join(data["cells"][index]["source"])
    assert source.count(old) == 1, (old, source)
    data["cells"][index]["source"] = source.replace(old, new).splitlines(keepends=True)
    notebook.write_text(json.dumps(data))


def run_json(gradcheck, spec: Path, *args: str) -> tuple[int, dict]:
    ran = gradcheck("run", str(spec), "--format", "json", *args)
    (result,) = json.loads(ran.stdout)["results"]
    return ran.exit_code, result


def statuses(result: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in result["checks"]}


# -- the lesson's own functions and classes, from the notebook --------------------------


@pytest.mark.parametrize("name", list(SPECS))
def test_the_lessons_code_passes_straight_from_its_notebook(gradcheck, lesson, name):
    exit_code, result = run_json(gradcheck, lesson(name))
    assert exit_code == 0, result
    assert set(statuses(result).values()) == {"pass"}


@pytest.mark.parametrize(
    "name, cell, right, wrong, flagged",
    [
        ("lin", 18, "b.g = out.g.sum(0)", "b.g = out.g", {"b": "shape_error"}),
        ("relu", 17, "inp.g = (inp>0).float() * out.g", "inp.g = out.g", {"x": "mismatch"}),
        ("mse", 16, "/ inp.shape[0]", "", {"inp": "mismatch"}),
        ("model", 31, "inp.g = 2*", "inp.g = -2*", {n: "mismatch" for n in ("x", "w1", "b1", "w2", "b2")}),
        ("module_lin", 30, "self.w.g = inp.t() @ self.out.g", "self.w.g = self.out.g.t() @ inp",
         {"w": "shape_error"}),
    ],
    ids=["lin_grad-bias-not-summed", "relu_grad-no-mask", "mse_grad-no-mean", "Mse-sign", "Lin-transposed"],
)  # fmt: skip
def test_a_one_line_bug_in_the_notebook_is_caught(gradcheck, lesson, name, cell, right, wrong, flagged):
    spec = lesson(name)
    edit_cell(spec.parent / LESSON.name, cell, right, wrong)
    exit_code, result = run_json(gradcheck, spec)
    assert exit_code == 1
    assert {k: v for k, v in statuses(result).items() if v != "pass"} == flagged


def test_the_lessons_missing_1_over_n_is_named(gradcheck, lesson):
    spec = lesson("mse")
    edit_cell(spec.parent / LESSON.name, 16, "/ inp.shape[0]", "")
    _, result = run_json(gradcheck, spec)
    (inp,) = result["checks"]
    assert inp["diagnosis"] == "scaled" and "1/n" in inp["hint"]


def test_a_later_definition_wins_as_when_the_notebook_runs_top_to_bottom(gradcheck, lesson):
    """Model (cell 25) calls Lin, Relu and Mse when it runs: by then they are the Module versions."""
    spec = lesson("model")
    edit_cell(spec.parent / LESSON.name, 24, "inp.g = 2. *", "inp.g = -2. *")  # the first Mse: replaced
    assert run_json(gradcheck, spec)[0] == 0
    edit_cell(spec.parent / LESSON.name, 31, "inp.g = 2*", "inp.g = -2*")  # the Module Mse: the one used
    assert run_json(gradcheck, spec)[0] == 1


def test_cells_restricts_what_is_loaded(gradcheck, lesson):
    """cells: [7, 22, 23, 24, 25]: lin, and the first Relu, Lin, Mse and Model (no Module)."""
    spec = lesson(
        "model",
        ("  file: 03_backprop.ipynb\n", "  file: 03_backprop.ipynb\n  cells: [7, 13, 22, 23, 24, 25]\n"),
    )
    edit_cell(spec.parent / LESSON.name, 31, "inp.g = 2*", "inp.g = -2*")  # not loaded
    assert run_json(gradcheck, spec)[0] == 0
    edit_cell(spec.parent / LESSON.name, 24, "inp.g = 2. *", "inp.g = -2. *")  # loaded
    assert run_json(gradcheck, spec)[0] == 1


def test_a_name_that_cells_leaves_out_is_a_spec_error_that_says_where_it_is(gradcheck, lesson):
    spec = lesson("lin", ("  file: 03_backprop.ipynb\n", "  file: 03_backprop.ipynb\n  cells: [7]\n"))
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2
    assert (
        "implementation.backward: 'lin_grad' is not defined in the notebook's definitions"
        " ('lin_grad' is defined in 03_backprop.ipynb, cell 18, which 'cells:' leaves out)"
    ) in ran.stderr


@pytest.mark.parametrize(
    "cells, message",
    [
        ("[0]", "cells: cell 0 is a markdown cell, not code"),
        ("[99]", "cells: the notebook has 34 cells (0 to 33), not 99"),
        ("[-1]", "expected a list of cell indices (0 is the notebook's first cell), got [-1]"),
    ],
)
def test_cells_that_are_not_code_cells_are_a_spec_error(gradcheck, lesson, cells, message):
    spec = lesson("lin", ("  file: 03_backprop.ipynb\n", f"  file: 03_backprop.ipynb\n  cells: {cells}\n"))
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2
    assert message in ran.stderr


def test_cells_goes_with_a_notebook(gradcheck, write_layer):
    spec = write_layer(
        "name: layer\ninputs: {x: [3]}\nreference: 'x * 2'\n"
        "implementation: {file: layer.py, cells: [1], backward: 'f(dout) -> x'}\n",
        "def f(dout):\n    return 2 * dout\n",
    )
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2
    assert "implementation.cells: 'cells' chooses cells of a notebook" in ran.stderr


# -- what is run, what is skipped ----------------------------------------------------------


def test_only_definitions_run_and_a_failed_import_is_a_note(gradcheck, lesson):
    """The data download (cell 3), the training code, the plots and the magics are not run:
    they would raise. The course helper library is not installed: a note, not an error."""
    exit_code, result = run_json(gradcheck, lesson("lin"))
    assert exit_code == 0
    assert result["notes"] == [
        "03_backprop.ipynb, cell 1: 'from lesson_helpers import test_close, show_image' failed"
        " (ModuleNotFoundError: No module named 'lesson_helpers'); the checked code does not use it"
    ]


def test_an_import_the_checked_code_needs_is_an_error_that_names_it(gradcheck, lesson):
    spec = lesson("lin")
    edit_cell(spec.parent / LESSON.name, 18, "b.g = out.g.sum(0)", "b.g = out.g.sum(0); test_close(b.g, b.g)")
    exit_code, result = run_json(gradcheck, spec)
    assert exit_code == 1
    assert "NameError: name 'test_close' is not defined" in result["error"]
    assert result["error"].endswith(
        "('from lesson_helpers import test_close, show_image' (03_backprop.ipynb, cell 1) failed:"
        " ModuleNotFoundError: No module named 'lesson_helpers')"
    )


def test_a_class_on_a_library_that_failed_to_import_is_a_note_too(gradcheck, lesson):
    spec = lesson("lin")
    notebook = spec.parent / LESSON.name
    data = json.loads(notebook.read_text())
    data["cells"].insert(2, {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                             "source": ["class Plotter(show_image.Callback):\n", "    pass\n"]})  # fmt: skip
    notebook.write_text(json.dumps(data))
    exit_code, result = run_json(gradcheck, spec)
    assert exit_code == 0
    assert result["notes"][-1] == (
        "03_backprop.ipynb, cell 2: Plotter could not be defined"
        " (NameError: name 'show_image' is not defined); the checked code does not use it"
    )


def test_a_name_assigned_by_a_skipped_statement_is_explained(gradcheck, lesson):
    spec = lesson("lin", ('backward: "lin_grad(x, out, w, b)"', 'backward: "forward_and_backward(x, out)"'))
    exit_code, result = run_json(gradcheck, spec)
    assert exit_code == 1
    assert "NameError: name 'w1' is not defined" in result["error"]
    assert (
        "'w1' is assigned in 03_backprop.ipynb, cell 6 by a statement gradcheck does not run"
        in result["error"]
    )


def test_constants_are_loaded(gradcheck, lesson):
    """``nh = 50`` (cell 4) is a constant: a function may read it."""
    spec = lesson("lin")
    edit_cell(spec.parent / LESSON.name, 18, "b.g = out.g.sum(0)", "b.g = out.g.sum(0) * (nh / 50)")
    assert run_json(gradcheck, spec)[0] == 0


def test_an_error_points_at_the_notebooks_cell_and_line(gradcheck, lesson):
    spec = lesson("lin")
    edit_cell(spec.parent / LESSON.name, 18, "b.g = out.g.sum(0)", "b.g = out.g.sum(2)")
    _, result = run_json(gradcheck, spec)
    assert "lin_grad() raised IndexError" in result["error"]
    assert result["error"].endswith(f"at {spec.parent / LESSON.name}, cell 18, line 5")


def test_a_cell_that_is_not_python_is_skipped_with_a_note_unless_it_is_chosen(gradcheck, lesson):
    spec = lesson("lin")
    edit_cell(spec.parent / LESSON.name, 8, "t.shape", "t.shape?")  # IPython's help syntax
    _, result = run_json(gradcheck, spec)
    assert result["status"] == "pass"
    assert any(note.startswith("03_backprop.ipynb, cell 8 is not Python") for note in result["notes"])
    spec.write_text(
        spec.read_text().replace(
            "  file: 03_backprop.ipynb\n", "  file: 03_backprop.ipynb\n  cells: [7, 8, 18]\n"
        )
    )
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2
    assert f"(at {spec.parent / LESSON.name}, cell 8, line 2)" in ran.stderr


def test_an_edited_notebook_is_loaded_again_in_the_same_process(lesson):
    from gradcheck_cli import check

    spec = lesson("lin")
    assert check(spec).ok
    edit_cell(spec.parent / LESSON.name, 18, "b.g = out.g.sum(0)", "b.g = out.g.sum(0) * 2")
    assert not check(spec).ok


def test_a_file_that_is_not_a_notebook_is_a_spec_error(gradcheck, lesson):
    spec = lesson("lin")
    (spec.parent / LESSON.name).write_text("{not json")
    ran = gradcheck("run", str(spec))
    assert ran.exit_code == 2
    notebook = spec.parent / LESSON.name
    assert (
        f"implementation.file: cannot load {notebook}: not a notebook: invalid JSON at line 1" in ran.stderr
    )


def test_the_reference_may_come_from_a_notebook_too(gradcheck, lesson):
    spec = lesson(
        "mse",
        (
            'reference: "F.mse_loss(inp.squeeze(-1), targ)"',
            'reference: {file: 03_backprop.ipynb, call: "mse(inp, targ)"}',
        ),
    )
    assert run_json(gradcheck, spec)[0] == 0
