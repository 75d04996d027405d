"""Heatmaps of an error map as inline SVG: expected, got and the error, side by side.

No plotting library and no external file: each heatmap is an ``<svg>`` element written
out as text, for a notebook's ``_repr_html_`` and the HTML report. Expected and got share
one colour scale (blue below zero, red above, white at zero, symmetric about it); the error
has its own, relative to the tolerance (green within it, then yellow to dark red on a log
scale). Each has its legend in numbers. The worst element's cell is outlined in all three,
the axes are named after the tensor's dims, and hovering a cell shows its numbers.

A cell of a pooled map shows the element with the largest error in its block (the same one
in all three heatmaps), not an average: the numbers are real values of the tensor.
"""

from __future__ import annotations

import math
from html import escape

from ..errormap import ErrorMap

SVG_LIMITS = (6, 12, 24)  # panels, rows, columns drawn
WITHIN = "#d8f0d2"  # an error within the tolerance
NAN = "#9e9e9e"
FONT = "font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:11px;fill:#333"
_NEG, _POS = (33, 102, 172), (178, 24, 43)
_ERR = ((254, 232, 138), (240, 120, 50), (178, 24, 43), (90, 0, 20))


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(max(0, min(255, v))):02x}" for v in rgb)


def _mix(a: tuple[float, ...], b: tuple[float, ...], t: float) -> tuple[float, float, float]:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def value_colour(value: float, vmax: float) -> str:
    """Blue (negative) through white (zero) to red (positive), saturating at ``vmax``."""
    if math.isnan(value):
        return NAN
    t = 0.0 if vmax <= 0 else max(-1.0, min(1.0, value / vmax))
    return _hex(_mix((255, 255, 255), _POS if t > 0 else _NEG, abs(t)))


def error_colour(ratio: float, top: float) -> str:
    """Green within the tolerance; over it, yellow to dark red by log10(ratio) up to ``top``."""
    if ratio <= 1.0:
        return WITHIN
    if not math.isfinite(ratio):
        return _hex(_ERR[-1])
    span = math.log10(max(top, 10.0))
    t = min(1.0, math.log10(ratio) / span) * (len(_ERR) - 1)
    i = min(int(t), len(_ERR) - 2)
    return _hex(_mix(_ERR[i], _ERR[i + 1], t - i))


def _num(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3g}"


def _finite_max(grids: list[list[list[list[float]]]]) -> float:
    values = [abs(v) for g in grids for panel in g for row in panel for v in row if math.isfinite(v)]
    return max(values, default=0.0)


class _Layout:
    """Where the cells of one heatmap go: panels (dims before the last two) in a grid of
    ``across`` panels a line, chosen to give the largest cells within the budget."""

    BUDGET = 240  # px, the most a grid of cells takes each way
    GAP = 8  # px between panels

    def __init__(self, emap: ErrorMap) -> None:
        self.emap = emap
        self.panelled = len(emap.shape) > 2
        self.has_rows = len(emap.shape) >= 2
        rows, cols, count = emap.rows.cells, emap.cols.cells, emap.panels.cells
        self.title_gap = 13 if self.panelled else 0
        best = (0, 1)
        for across in range(1, count + 1):
            down = -(-count // across)
            cell = min(
                26,
                (self.BUDGET - self.GAP * (across - 1)) // (across * cols),
                (self.BUDGET - (self.GAP + self.title_gap) * down) // (down * rows),
            )
            if cell > best[0]:
                best = (cell, across)
        self.cell, self.across = max(3, best[0]), best[1]
        self.down = -(-count // self.across)
        self.left = 30 if self.has_rows else 8
        self.top = 20
        self.panel_w = cols * self.cell + self.GAP
        self.panel_h = self.title_gap + rows * self.cell + (self.GAP if self.panelled else 0)
        self.grid_w = self.across * self.panel_w - self.GAP
        self.grid_h = self.down * self.panel_h - (self.GAP if self.panelled else 0)
        self.width = max(self.left + self.grid_w + 10, 180)
        self.height = self.top + self.grid_h + 64

    def origin(self, p: int) -> tuple[int, int]:
        """The top left corner of panel ``p``'s cells."""
        return (
            self.left + (p % self.across) * self.panel_w,
            self.top + (p // self.across) * self.panel_h + self.title_gap,
        )

    def xy(self, p: int, r: int, c: int) -> tuple[int, int]:
        x, y = self.origin(p)
        return x + c * self.cell, y + r * self.cell


def _cell_title(emap: ErrorMap, p: int, r: int, c: int) -> str:
    where = []
    if len(emap.shape) > 2:
        where.append(emap.panel_label(p))
    axes = ([emap.rows] if len(emap.shape) >= 2 else []) + [emap.cols]
    for axis, i in zip(axes, ([r] if len(emap.shape) >= 2 else []) + [c]):
        start, stop = axis.span(i)
        where.append(f"{axis.name} {start}" if stop - start == 1 else f"{axis.name} {start}–{stop - 1}")
    e, a, ratio = emap.expected[p][r][c], emap.actual[p][r][c], emap.ratio[p][r][c]
    return f"{', '.join(where)}: expected {_num(e)}, got {_num(a)}, error {_num(ratio)}x tolerance"


def _axes(layout: _Layout) -> list[str]:
    emap, out = layout.emap, []
    x_label = f"{emap.cols.name} 0–{emap.cols.size - 1}" if emap.cols.size > 1 else emap.cols.name
    y = layout.top + layout.grid_h + 13
    out.append(f'<text x="{layout.left}" y="{y}" style="{FONT}">{escape(x_label)} →</text>')
    if layout.has_rows:
        y_label = f"{emap.rows.name} 0–{emap.rows.size - 1}" if emap.rows.size > 1 else emap.rows.name
        x, y = layout.left - 8, layout.top + layout.title_gap
        out.append(
            f'<text x="{x}" y="{y}" transform="rotate(-90 {x} {y})" text-anchor="end" style="{FONT}">'
            f"← {escape(y_label)}</text>"
        )
    if layout.panelled:
        for p in range(emap.panels.cells):
            x, y = layout.origin(p)
            out.append(
                f'<text x="{x}" y="{y - 3}" style="{FONT};font-size:9px">{escape(emap.panel_label(p))}</text>'
            )
    return out


def _legend_bar(
    layout: _Layout, stops: list[tuple[float, str]], ticks: list[tuple[float, str]], gid: str
) -> str:
    """A horizontal colour bar under the grid, with numbers at ``ticks`` (positions 0..1)."""
    x0, y0, w = layout.left, layout.top + layout.grid_h + 24, min(150, layout.width - layout.left - 12)
    gradient = "".join(f'<stop offset="{o:.3f}" stop-color="{c}"/>' for o, c in stops)
    parts = [
        f'<defs><linearGradient id="{gid}">{gradient}</linearGradient></defs>',
        f'<rect x="{x0}" y="{y0}" width="{w}" height="9" fill="url(#{gid})"'
        ' stroke="#999" stroke-width="0.5"/>',
    ]
    for pos, label in ticks:
        x = x0 + pos * w
        anchor = "start" if pos == 0 else ("end" if pos == 1 else "middle")
        parts.append(f'<line x1="{x:.1f}" y1="{y0 + 9}" x2="{x:.1f}" y2="{y0 + 12}" stroke="#666"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{y0 + 23}" text-anchor="{anchor}" style="{FONT}">{escape(label)}</text>'
        )
    return "".join(parts)


def _svg(
    layout: _Layout,
    title: str,
    colours: list[list[list[str]]],
    legend: str,
    worst: tuple[int, int, int],
    aria: str,
) -> str:
    emap, cell = layout.emap, layout.cell
    parts = [
        f'<svg width="{layout.width}" height="{layout.height}" viewBox="0 0 {layout.width} {layout.height}"'
        f' role="img" aria-label="{escape(aria)}">',
        f'<text x="{layout.left}" y="13" style="{FONT};font-weight:600;font-size:12px">'
        f"{escape(title)}</text>",
    ]
    for p in range(emap.panels.cells):
        for r in range(emap.rows.cells):
            for c in range(emap.cols.cells):
                x, y = layout.xy(p, r, c)
                parts.append(
                    f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{colours[p][r][c]}">'
                    f"<title>{escape(_cell_title(emap, p, r, c))}</title></rect>"
                )
    x, y = layout.xy(*worst)
    for inset, colour, stroke in ((0.75, "#000", 1.5), (2.0, "#fff", 1.0)):  # seen on dark and light cells
        parts.append(
            f'<rect x="{x + inset}" y="{y + inset}" width="{max(0.5, cell - 2 * inset)}"'
            f' height="{max(0.5, cell - 2 * inset)}" fill="none" stroke="{colour}" stroke-width="{stroke}">'
            "<title>the worst element</title></rect>"
        )
    parts.extend(_axes(layout))
    parts.append(legend)
    parts.append("</svg>")
    return "".join(parts)


def heatmaps(name: str, emap: ErrorMap, worst: list[int] | None = None, uid: str = "h") -> list[str]:
    """The three ``<svg>`` elements (expected, got, error) of tensor ``name``.

    ``worst`` is the element outlined (the report's worst element; else the map's own).
    ``uid`` keeps the ids of the colour bars' gradients unique within a page."""
    emap = emap.coarsen(*SVG_LIMITS)
    worst = worst if worst is not None and len(worst) == len(emap.shape) else emap.worst_index
    marked = emap.cell_of(worst)
    layout = _Layout(emap)
    vmax = _finite_max([emap.expected, emap.actual])
    top = max([v for panel in emap.ratio for row in panel for v in row if math.isfinite(v)] + [10.0])
    top = min(top, 1e300)  # the scale's ticks are powers of ten of parts of log10(top): no overflow

    value_stops = [(0.0, value_colour(-vmax, vmax)), (0.5, "#ffffff"), (1.0, value_colour(vmax, vmax))]
    value_ticks = [(0.0, _num(-vmax)), (0.5, "0"), (1.0, _num(vmax))]
    value_legend = _legend_bar(layout, value_stops, value_ticks, f"{uid}-v")
    error_legend = _legend_bar(layout, *_error_scale(top), f"{uid}-e")

    out = []
    for title, values, legend in (
        ("expected", emap.expected, value_legend),
        ("got", emap.actual, value_legend),
        ("error / tolerance", emap.ratio, error_legend),
    ):
        if values is emap.ratio:
            colours = [[[error_colour(v, top) for v in row] for row in panel] for panel in values]
        else:
            colours = [[[value_colour(v, vmax) for v in row] for row in panel] for panel in values]
        aria = f"{name} {emap.dims_text()}: {title}, worst element {worst}"
        out.append(_svg(layout, title, colours, legend, marked, aria))
    return out


WITHIN_BAND = 0.1  # the share of the error bar that says "within the tolerance"


def _error_scale(top: float) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
    """The error bar: a band for <= 1, then 1 to ``top`` on a log scale; ticks at a few decades."""
    span = math.log10(top)

    def pos(ratio: float) -> float:
        return WITHIN_BAND + (1 - WITHIN_BAND) * math.log10(ratio) / span

    stops = [(0.0, WITHIN), (WITHIN_BAND, WITHIN)]
    stops += [(pos(10 ** (span * k / 8)), error_colour(10 ** (span * k / 8), top)) for k in range(9)]
    ticks = [(0.0, "≤1")]
    step = max(1, math.ceil(span / 3))
    ticks += [
        (pos(10.0**d), f"1e{d}") for d in range(step, math.ceil(span), step) if 0.3 < pos(10.0**d) < 0.7
    ]
    ticks.append((1.0, _num(top)))
    return stops, ticks
