"""An error map in a terminal: a grid of characters, one per cell, shaded by the error.

::

      x: error map, error / tolerance: · <=1  ▒ <=10  █ >10  X worst [0, 1]
        rows: batch 0–3, one per cell; columns: features 0–2, one per cell
        0  · XX██
        1  · ████

Each shade has its own character, so the map reads the same in a CI log, with
``NO_COLOR`` and in colour; colour only adds emphasis. A cell is two characters wide
while the map is at most 32 cells across (terminal cells are twice as tall as wide),
one character beyond. Higher dims are panels side by side, each labelled with the
leading indices it covers, wrapping to more lines of panels when the width is used up.

Without ``--verbose`` a map is shown when it has a pattern (cells of more than one
shade: a uniformly wrong tensor is said by the numbers already) and fits in
:data:`DEFAULT_LINES` lines; with ``--verbose``, always.
"""

from __future__ import annotations

from rich.text import Text

from ..errormap import LITTLE, ErrorMap, shade

# (within, a little over, far over, the worst element)
UNICODE = ("·", "▒", "█", "X")
ASCII = (".", "o", "#", "X")
STYLES = ("green", "yellow", "red", "bold white on red")

DEFAULT_LINES = 10  # the most lines of cells a map takes without --verbose
DEFAULT_LIMITS = (4, 8, 64)  # panels, rows, columns without --verbose
VERBOSE_LIMITS = (8, 16, 64)
INDENT = 4
PANEL_GAP = 3


def legend(name: str, worst: list[int], chars: tuple[str, ...]) -> Text:
    """``x: error map, error / tolerance: · <=1  ▒ <=10  █ >10  X worst [0, 1]``."""
    text = Text(f"  {name}: error map, error / tolerance:")
    words = ("<=1", f"<={LITTLE:g}", f">{LITTLE:g}", f"worst {worst}")
    for n, (char, style, word) in enumerate(zip(chars, STYLES, words)):
        text.append("  " if n else " ")
        text.append(char, style=style)
        text.append(f" {word}")
    return text


def axes_line(emap: ErrorMap) -> str:
    """What a cell covers: ``rows: batch 0–255 in 32 cells of 8; columns: ...``."""
    return " " * INDENT + axes_text(emap)


def axes_text(emap: ErrorMap) -> str:
    """``rows: batch 0–3, one per cell; columns: features 0–2, one per cell`` (``rows 0–999 in
    8 cells of 126`` when the dim has no name)."""
    axes = [("panels", emap.panels)] if len(emap.shape) > 2 else []
    axes += [("rows", emap.rows)] if len(emap.shape) >= 2 else []
    axes.append(("columns" if len(emap.shape) >= 2 else "elements", emap.cols))
    return "; ".join(
        axis.describe() if axis.name == role else f"{role}: {axis.describe()}" for role, axis in axes
    )


def _fit(emap: ErrorMap, limits: tuple[int, int, int], width: int | None) -> tuple[ErrorMap, int]:
    """The map coarsened to ``limits`` and to ``width``, and its cell width (2 or 1)."""
    emap = emap.coarsen(*limits)
    label = len(str(emap.rows.size - 1)) + 2 if len(emap.shape) >= 2 else 0
    room = (width if width is not None else 10_000) - INDENT - label
    cell = 2 if emap.cols.cells <= 32 and emap.cols.cells * 2 <= room else 1
    if emap.cols.cells * cell > room:
        emap = emap.coarsen(limits[0], limits[1], max(1, room))
    return emap, cell


def _cell(
    emap: ErrorMap, worst: tuple[int, int, int], p: int, r: int, c: int, chars: tuple[str, ...], width: int
) -> tuple[str, str]:
    if (p, r, c) == worst:
        return chars[3] * width, STYLES[3]
    level = shade(emap.ratio[p][r][c])
    if level == 0:
        return chars[0] + " " * (width - 1), STYLES[0]
    return chars[level] * width, STYLES[level]


def grid_lines(
    emap: ErrorMap, worst: list[int], chars: tuple[str, ...], cell: int, width: int | None
) -> list[Text]:
    """The cells: panels side by side (labelled when the tensor has more than two dims)."""
    marked = emap.cell_of(worst)
    has_rows = len(emap.shape) >= 2
    label_w = len(str(emap.rows.size - 1)) if has_rows else 0
    lead = " " * INDENT
    left = label_w + 2 if has_rows else 0
    titles = [emap.panel_label(p) for p in range(emap.panels.cells)]
    panel_w = max([emap.cols.cells * cell] + [len(t) for t in titles])
    room = (width if width is not None else 10_000) - INDENT - left
    per_line = max(1, (room + PANEL_GAP) // (panel_w + PANEL_GAP))
    lines: list[Text] = []
    for first in range(0, emap.panels.cells, per_line):
        group = range(first, min(first + per_line, emap.panels.cells))
        if len(emap.shape) > 2:
            heads = (" " * PANEL_GAP).join(titles[p].ljust(panel_w) for p in group)
            lines.append(Text(lead + " " * left + heads.rstrip()))
        for r in range(emap.rows.cells):
            start, _ = emap.rows.span(r)
            line = Text(lead + (f"{start:>{label_w}}  " if has_rows else ""))
            for n, p in enumerate(group):
                if n:
                    line.append(" " * PANEL_GAP)
                for c in range(emap.cols.cells):
                    line.append(*_cell(emap, marked, p, r, c, chars, cell))
                line.append(" " * (panel_w - emap.cols.cells * cell))
            line.rstrip()
            lines.append(line)
    return lines


def map_lines(
    name: str,
    emap: ErrorMap,
    *,
    worst: list[int] | None = None,
    verbose: bool = False,
    width: int | None = None,
    ascii: bool = False,
) -> list[Text]:
    """The legend, the axes and the cells of ``name``'s map; none when it is not shown
    (without ``verbose``: a map of one shade, or taller than :data:`DEFAULT_LINES`).

    ``worst`` is the element marked X: the one the report names (the check's worst
    element), else the map's own (the largest error relative to the tolerance)."""
    worst = worst if worst is not None and len(worst) == len(emap.shape) else emap.worst_index
    chars = ASCII if ascii else UNICODE
    if verbose:
        fitted, cell = _fit(emap, VERBOSE_LIMITS, width)
    else:
        fitted, cell = _fit(emap, DEFAULT_LIMITS, width)
        if len(fitted.shades()) < 2:
            return []
    cells = grid_lines(fitted, worst, chars, cell, width)
    if not verbose and len(cells) > DEFAULT_LINES:
        return [Text(f"  {name}: error map: --verbose draws it ({len(cells)} lines)")]
    return [legend(name, worst, chars), Text(axes_line(fitted)), *cells]
