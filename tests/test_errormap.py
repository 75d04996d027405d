"""Error maps: where a wrong gradient is wrong, for the everyday mistakes.

Each test runs the wrong backward of ``examples/mistakes/`` (or a small one in
``tests/mistake_maps.py``) against autograd and asserts the picture a user sees: which
cells are marked, in the terminal with and without colour; and the data under it
(pooling keeps the worst of each block, the worst element is a cell, NaN and Inf are
treated as the comparison treats them).
"""

from __future__ import annotations

import pickle
import re
import subprocess
import sys

import pytest
import torch
from rich.console import Console

from gradcheck_cli.compare import Tolerance
from gradcheck_cli.errormap import ErrorMap, build_error_map, shade
from gradcheck_cli.report.errormap import map_lines

from . import mistake_maps
from .conftest import REPO
from .mistake_maps import ATOL, RTOL

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(emap: ErrorMap, name: str = "x", **kw) -> list[str]:
    return [t.plain for t in map_lines(name, emap, **kw)]


def coloured(emap: ErrorMap, name: str = "x", **kw) -> str:
    console = Console(force_terminal=True, color_system="standard", width=200, file=None)
    with console.capture() as captured:
        for text in map_lines(name, emap, **kw):
            console.print(text, crop=False)
    return captured.get()


def grid(lines: list[str], cols: int, cell: int = 2) -> list[str]:
    """The cells of a 2-D map's lines (after its legend and axes), one character each:
    '.' within, 'o' a little over, '#' far over, 'X' the worst."""
    symbol = {"·": ".", "▒": "o", "█": "#", "X": "X", ".": ".", "o": "o", "#": "#"}
    rows = []
    for line in lines[2:]:
        cells = line[4:].split("  ", 1)[1].ljust(cols * cell)
        rows.append("".join(symbol[cells[i * cell]] for i in range(cols)))
    return rows


def picture(wrong: torch.Tensor, worst: list[int]) -> list[str]:
    """What the map of a 2-D tensor must show: '#' where it is wrong, 'X' at the worst."""
    rows = [["#" if w else "." for w in row] for row in wrong.tolist()]
    rows[worst[0]][worst[1]] = "X"
    return ["".join(r) for r in rows]


# -- the everyday mistakes -------------------------------------------------------------


def test_relu_mask_marks_exactly_the_elements_where_x_is_not_positive():
    mistake = mistake_maps.relu_mask(batch=6, features=5)
    x = mistake.inputs["x"]
    emap = mistake.error_map()
    lines = plain(emap)
    assert lines[0].startswith("  x: error map, error / tolerance: · <=1  ▒ <=10  █ >10  X worst")
    assert lines[1] == "    rows: batch 0–5, one per cell; columns: features 0–4, one per cell"
    assert grid(lines, cols=5) == picture(x <= 0, emap.worst_index)
    assert "." in "".join(grid(lines, cols=5)) and "#" in "".join(grid(lines, cols=5))  # a pattern


def test_the_map_reads_the_same_in_colour_and_colour_only_adds_emphasis():
    emap = mistake_maps.relu_mask().error_map()
    text = coloured(emap)
    assert ANSI.sub("", text).splitlines() == plain(emap)
    assert "\x1b[31m██" in text  # far over: red
    assert "\x1b[32m· " in text  # within: green
    assert re.search(r"\x1b\[1;37;41mXX", text)  # the worst: white on red


def test_without_utf8_the_map_uses_ascii_characters():
    mistake = mistake_maps.relu_mask()
    lines = plain(mistake.error_map(), ascii=True)
    assert "·" not in "".join(lines) and "█" not in "".join(lines)
    assert grid(lines, cols=5) == picture(mistake.inputs["x"] <= 0, mistake.error_map().worst_index)


def test_a_square_transposed_weight_is_wrong_everywhere_but_the_diagonal():
    mistake = mistake_maps.transposed_square(n=5, size=4)
    emap = mistake.error_map()
    off_diagonal = ~torch.eye(4, dtype=torch.bool)
    assert grid(plain(emap, name="w"), cols=4) == picture(off_diagonal, emap.worst_index)


def test_a_bias_reshaped_instead_of_summed_is_uniformly_wrong_so_only_verbose_draws_it():
    mistake = mistake_maps.bias_reshaped(out=8)
    emap = mistake.error_map()
    assert emap.shades() == {2}  # every cell far over: the table's 8/8 says it already
    assert plain(emap, name="bias") == []
    lines = plain(emap, name="bias", verbose=True)
    assert lines[1] == "    elements: out 0–7, one per cell"
    assert lines[2:] == ["    XX" + "██" * 7]  # a 1-D tensor is a strip


def test_a_strided_convs_missing_edge_is_the_last_row_and_column_of_every_panel():
    mistake = mistake_maps.strided_conv_edge(n=2, c_in=3, size=8)
    emap = mistake.error_map()
    edge = torch.zeros(8, 8, dtype=torch.bool)
    edge[-1, :] = edge[:, -1] = True
    assert torch.equal(mistake.wrong, edge.expand(2, 3, 8, 8))  # the example really is this mistake

    fixed = mistake_maps._code(
        "strided_conv_edge", ("padding=1)  # the mistake", "padding=1, output_padding=1)  #")
    )
    grad_x, _ = fixed["conv_backward"](*(mistake.inputs[k] for k in ("grad_out", "x", "weight")))
    assert torch.allclose(grad_x, mistake.expected)  # with output_padding=1 it is right

    lines = plain(emap, verbose=True, width=200)
    assert lines[1] == (
        "    panels: n, c_in 0–5, one per cell; rows: h 0–7, one per cell; columns: w 0–7, one per cell"
    )
    heads = lines[2].split()
    assert " ".join(heads) == "n=0, c_in=0 n=0, c_in=1 n=0, c_in=2 n=1, c_in=0 n=1, c_in=1 n=1, c_in=2"
    rows = [line[7:].split("   ") for line in lines[3:]]
    assert len(rows) == 8 and all(len(r) == 6 for r in rows)  # six panels side by side
    for p in range(6):
        panel = ["".join("#" if ch in "█X" else "." for ch in r[p][::2]) for r in rows]
        assert panel == ["." * 7 + "#"] * 7 + ["#" * 8], p


def test_panels_pool_whole_leading_indices_and_wrap_to_the_width():
    emap = mistake_maps.strided_conv_edge(n=2, c_in=3, size=8).error_map()
    lines = plain(emap, width=80)  # by default at most 4 panels: two of n=0 and n=1
    assert lines[1].startswith("    panels: n, c_in 0–5 in 2 cells of 3;")
    assert lines[2] == "       n=0, c_in=0–2      n=1, c_in=0–2"
    narrow = plain(emap, verbose=True, width=40)  # 16 characters a panel: one a line
    heads = [line.strip() for line in narrow[2:] if "n=" in line]
    assert heads == [f"n={n}, c_in={c}" for n in range(2) for c in range(3)]
    assert all(len(line) <= 40 for line in narrow[2:])


def test_the_map_names_the_same_worst_element_as_the_report():
    mistake = mistake_maps.relu_mask()
    check = mistake.check()
    emap = check.error_map
    lines = plain(emap, worst=check.worst_index)
    assert lines[0].endswith(f"X worst {check.worst_index}")
    r, c = check.worst_index
    assert grid(lines, cols=5)[r][c] == "X"


# -- pooling a large tensor -----------------------------------------------------------


def test_pooling_keeps_the_worst_of_each_block_and_its_values():
    expected = torch.zeros(1000, 3000)
    actual = expected.clone()
    actual[987, 2021] = 5.0  # one wrong element
    actual[10, 10] = 3e-5  # a little over (3x a 1e-5 tolerance)
    emap = build_error_map(expected, actual, 1e-5, None)
    assert (emap.rows.cells, emap.rows.block, emap.cols.cells, emap.cols.block) == (16, 63, 64, 47)
    assert emap.worst == (0, 987 // 63, 2021 // 47) and emap.worst_index == [987, 2021]
    assert emap.actual[0][15][43] == 5.0 and emap.expected[0][15][43] == 0.0
    marked = {(r, c): shade(v) for r, row in enumerate(emap.ratio[0]) for c, v in enumerate(row) if v > 0}
    assert marked == {(15, 43): 2, (0, 0): 1}
    assert emap.ratio[0][0][0] == pytest.approx(3.0)

    lines = plain(emap, width=80)  # coarsened to 8 rows; 64 one-character columns fit
    assert lines[1] == "    rows 0–999 in 8 cells of 126; columns 0–2999 in 64 cells of 47"
    cells = [line[9:] for line in lines[2:]]
    assert len(cells) == 8 and {len(c.rstrip()) for c in cells} <= {64}
    assert cells[987 // 126][43] == "X" and cells[0][0] == "▒"
    assert sum(ch != "·" for c in cells for ch in c.strip()) == 2


def test_coarsening_is_exact():
    torch.manual_seed(0)
    expected = torch.randn(3, 64, 64, dtype=torch.float64)
    actual = expected + torch.randn(3, 64, 64, dtype=torch.float64) * 1e-6
    fine = build_error_map(expected, actual, 1e-6, ["b", "i", "j"], max_panels=3, max_rows=16, max_cols=64)
    direct = build_error_map(expected, actual, 1e-6, ["b", "i", "j"], max_panels=1, max_rows=4, max_cols=8)
    coarse = fine.coarsen(1, 4, 8)
    assert (
        coarse.ratio == direct.ratio and coarse.expected == direct.expected and coarse.actual == direct.actual
    )
    assert coarse.worst == direct.worst and coarse.worst_index == direct.worst_index == fine.worst_index


def test_a_cell_is_over_exactly_when_the_comparison_says_not_close():
    expected = torch.tensor(
        [1.0, float("inf"), float("inf"), float("nan"), 2.0, 0.0, -3.0, 5.0], dtype=torch.float64
    )
    actual = torch.tensor(
        [1.0, float("inf"), 4.0, float("nan"), float("nan"), 0.0, float("-inf"), 5.0 + 1e-6]
    )
    actual = actual.to(torch.float64)
    tol = Tolerance(ATOL, RTOL)
    emap = build_error_map(expected, actual, ATOL + RTOL * expected.abs(), [None])
    over = [v > 1 for v in emap.ratio[0][0]]
    assert over == (~tol.allclose(actual, expected)).tolist()
    assert emap.ratio[0][0][:2] == [0.0, 0.0]  # equal values, equal infinities
    assert emap.ratio[0][0][2:5] == [float("inf")] * 3  # inf vs finite, NaN vs NaN, a NaN got


def test_a_zero_allowance_is_exact_comparison():
    emap = build_error_map(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.5]), 0.0, ["k"])
    assert emap.ratio == [[[0.0, float("inf")]]]


def test_the_compared_tensors_are_left_as_they_were():
    mistake = mistake_maps.relu_mask()
    e, a = mistake.expected.clone(), mistake.actual.clone()
    mistake.error_map()
    assert torch.equal(e, mistake.expected) and torch.equal(a, mistake.actual)


def test_a_non_contiguous_lower_precision_tensor():
    expected = torch.randn(6, 4, dtype=torch.float64).t()  # [4, 6], transposed strides
    actual = expected.to(torch.bfloat16)
    actual[2, 5] += 1
    emap = build_error_map(expected, actual, 1e-2 + 1.6e-2 * expected.abs(), ["a", "b"])
    assert emap.worst_index == [2, 5] and emap.expected[0][2][5] == float(expected[2, 5])


def test_scalars_and_wrong_inputs():
    emap = build_error_map(torch.tensor(1.0), torch.tensor(2.0), 0.1, [])
    assert emap.shape == [] and emap.ratio[0][0][0] == pytest.approx(10.0) and emap.worst_index == []
    with pytest.raises(ValueError, match="equal shapes"):
        build_error_map(torch.zeros(2, 3), torch.zeros(3, 2), 1.0, None)
    with pytest.raises(ValueError, match="at least one element"):
        build_error_map(torch.zeros(0, 3), torch.zeros(0, 3), 1.0, None)
    with pytest.raises(ValueError, match="labels"):
        build_error_map(torch.zeros(2, 3), torch.zeros(2, 3), 1.0, ["a"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_map_is_the_cpu_one():
    mistake = mistake_maps.strided_conv_edge(n=4, c_in=16, size=32)
    cpu = mistake.error_map()
    gpu = build_error_map(
        mistake.expected.cuda(), mistake.actual.cuda(), mistake.allowance.cuda(), mistake.labels
    )
    assert gpu == cpu


# -- plain data -----------------------------------------------------------------------


def test_a_map_is_plain_data_that_pickles_and_needs_no_torch():
    emap = mistake_maps.strided_conv_edge().error_map()
    assert pickle.loads(pickle.dumps(emap)) == emap
    assert isinstance(emap.ratio[0][0][0], float) and isinstance(emap.worst_index[0], int)
    code = "import sys, gradcheck_cli.errormap, gradcheck_cli.report.errormap; print('torch' in sys.modules)"
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "False"


def test_a_failing_check_with_its_map_and_diagnosis_does_not_import_sympy() -> None:
    # torch.unravel_index imports sympy on first use (0.35-0.65 s): every worker would pay it.
    code = (
        "import sys\n"
        "from gradcheck_cli.runner import run\n"
        "from gradcheck_cli.settings import RunSettings\n"
        "from gradcheck_cli.spec import load_spec\n"
        "result = run(load_spec('examples/mistakes/relu_mask.yaml'), RunSettings())\n"
        "assert [c.name for c in result.checks if c.error_map is not None] == ['x'], result.checks\n"
        "print('sympy' in sys.modules)\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert ran.stdout.strip() == "False"
