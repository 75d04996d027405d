"""Where a wrong tensor is wrong: its error relative to the tolerance, pooled into a small grid.

An :class:`ErrorMap` is plain data (lists of numbers and strings, no torch), so it
travels from a worker process in a :class:`~gradcheck_cli.result.Check` and is drawn by
the report package: as characters in a terminal, as heatmaps in a notebook or a page.

The grid has three axes. The columns are the tensor's last dim, the rows the dim before
it, and the *panels* every dim before those, flattened in order (a ``[n, c, h, w]``
tensor is ``n * c`` panels of ``h x w``). Each axis is cut into blocks of equal length
(the last one may be shorter); a cell holds the worst element of its block::

    ratio = |got - expected| / allowance        (<= 1: within tolerance)

with the expected and got values of that element, so a heatmap of a pooled tensor shows
real values, and the worst element of the whole tensor is one of the cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# How far over the tolerance a cell is: within (ratio <= 1), a little over (<= LITTLE), far over.
LITTLE = 10.0
SHADES = ("within", "over", "far")

# The grid kept on a Check: enough for a heatmap and a verbose terminal map.
MAX_PANELS, MAX_ROWS, MAX_COLS = 8, 16, 64


def shade(ratio: float) -> int:
    """0 within tolerance, 1 over it by up to :data:`LITTLE` times, 2 further (or not finite)."""
    if ratio <= 1.0:
        return 0
    if ratio <= LITTLE:
        return 1
    return 2


@dataclass
class Axis:
    """One axis of the grid: ``size`` elements of a dim cut into blocks of ``block``."""

    name: str  # the dim's label ("rows", "columns" without one); for panels the folded dims ("n, c")
    size: int
    block: int = 1

    @property
    def cells(self) -> int:
        return -(-self.size // self.block)

    def span(self, cell: int) -> tuple[int, int]:
        """The elements ``[start, stop)`` that ``cell`` covers."""
        start = cell * self.block
        return start, min(start + self.block, self.size)

    def describe(self) -> str:
        """``batch 0–255 in 32 cells of 8``, ``features 0–2, one per cell``."""
        extent = f"{self.name} 0–{self.size - 1}" if self.size > 1 else f"{self.name} 0"
        if self.block == 1:
            return f"{extent}, one per cell"
        return f"{extent} in {self.cells} cells of {self.block}"


Grid = list[list[list[float]]]  # [panel][row][col]


@dataclass
class ErrorMap:
    """The error of one failing tensor (same shape as expected), pooled into a grid."""

    shape: list[int]
    labels: list[str | None]
    panels: Axis  # the dims before the last two, flattened (size 1 for a 1-D or 2-D tensor)
    rows: Axis  # the second-to-last dim (size 1 for a 1-D tensor)
    cols: Axis  # the last dim (size 1 for a scalar)
    ratio: Grid  # the worst |got - expected| / allowance in each block (inf: NaN or Inf)
    expected: Grid  # the expected value of that worst element
    actual: Grid  # its value as computed
    worst: tuple[int, int, int]  # the cell (panel, row, col) of the worst element of the tensor
    worst_index: list[int] = field(default_factory=list)  # that element's index in the tensor

    @property
    def max_ratio(self) -> float:
        p, r, c = self.worst
        return self.ratio[p][r][c]

    def cell_of(self, index: list[int]) -> tuple[int, int, int]:
        """The cell (panel, row, col) that holds the element at ``index``."""
        if len(index) != len(self.shape):
            return self.worst
        lead = 0
        for i, size in zip(index[:-2], self.shape[:-2]):
            lead = lead * size + i
        row = index[-2] if len(index) >= 2 else 0
        col = index[-1] if index else 0
        return lead // self.panels.block, row // self.rows.block, col // self.cols.block

    def shades(self) -> set[int]:
        """The shades that occur (one shade only: the tensor is uniformly right or wrong)."""
        return {shade(v) for panel in self.ratio for row in panel for v in row}

    def dims_text(self) -> str:
        """``[batch=5, out=4]``, or ``[5, 4]`` without dim names."""
        parts = [f"{n}={s}" if n else str(s) for s, n in zip(self.shape, self.labels)]
        return "[" + ", ".join(parts) + "]"

    def panel_label(self, panel: int) -> str:
        """Which leading indices a panel covers: ``n=0, c=2``, ``n=0–1``, ``[0, 2]–[1, 0]``."""
        lead = self.shape[:-2]
        if not lead:
            return ""
        names = self.labels[: len(lead)]
        start, stop = self.panels.span(panel)
        first, last = _unravel(start, lead), _unravel(stop - 1, lead)
        if not all(names):
            if first == last:
                return f"[{', '.join(map(str, first))}]"
            return f"[{', '.join(map(str, first))}]–[{', '.join(map(str, last))}]"
        for k in range(len(lead)):
            if first[k] != last[k]:
                break
        else:
            return ", ".join(f"{n}={i}" for n, i in zip(names, first))
        inner_full = all(f == 0 for f in first[k + 1 :]) and all(
            x == s - 1 for x, s in zip(last[k + 1 :], lead[k + 1 :])
        )
        if not inner_full:
            return f"[{', '.join(map(str, first))}]–[{', '.join(map(str, last))}]"
        fixed = [f"{n}={i}" for n, i in zip(names[:k], first[:k])]
        return ", ".join(fixed + [f"{names[k]}={first[k]}–{last[k]}"])

    def coarsen(self, max_panels: int, max_rows: int, max_cols: int) -> ErrorMap:
        """The same map with at most that many cells per axis, each the worst of the cells
        it merges (exact: a block of blocks is a block)."""
        needed = -(-self.panels.size // max(1, max_panels))
        kp = _panel_block(self.shape[:-2], needed, self.panels.block) // self.panels.block
        kr = -(-self.rows.cells // max(1, max_rows))
        kc = -(-self.cols.cells // max(1, max_cols))
        if kp == kr == kc == 1:
            return self
        panels = replace(self.panels, block=self.panels.block * kp)
        rows = replace(self.rows, block=self.rows.block * kr)
        cols = replace(self.cols, block=self.cols.block * kc)
        ratio: Grid = []
        expected: Grid = []
        actual: Grid = []
        for p in range(panels.cells):
            rp, ep, ap = [], [], []
            for r in range(rows.cells):
                rr, er, ar = [], [], []
                for c in range(cols.cells):
                    best = max(
                        (
                            (self.ratio[i][j][k], i, j, k)
                            for i in range(p * kp, min((p + 1) * kp, self.panels.cells))
                            for j in range(r * kr, min((r + 1) * kr, self.rows.cells))
                            for k in range(c * kc, min((c + 1) * kc, self.cols.cells))
                        ),
                        key=lambda t: t[0],
                    )
                    _, i, j, k = best
                    rr.append(self.ratio[i][j][k])
                    er.append(self.expected[i][j][k])
                    ar.append(self.actual[i][j][k])
                rp.append(rr)
                ep.append(er)
                ap.append(ar)
            ratio.append(rp)
            expected.append(ep)
            actual.append(ap)
        p, r, c = self.worst
        return replace(
            self,
            panels=panels,
            rows=rows,
            cols=cols,
            ratio=ratio,
            expected=expected,
            actual=actual,
            worst=(p // kp, r // kr, c // kc),
        )


def _unravel(flat: int, shape: list[int]) -> list[int]:
    index = []
    for size in reversed(shape):
        index.append(flat % size)
        flat //= size
    return index[::-1]


def _panel_block(lead: list[int], needed: int, base: int = 1) -> int:
    """The panels per cell, at least ``needed`` and a multiple of ``base``: preferably whole
    sub-blocks of the leading dims (``n=0, c=0–2`` rather than ``[0, 2]–[1, 0]``)."""
    needed = max(needed, base)
    aligned: set[int] = set()
    inner = 1
    for k, size in enumerate(reversed(lead)):
        outermost = k == len(lead) - 1  # any run of the first dim is labelled n=a–b
        aligned.update(inner * d for d in range(1, size + 1) if outermost or size % d == 0)
        inner *= size
    fits = sorted(b for b in aligned if b >= needed and b % base == 0)
    return fits[0] if fits else base * -(-needed // base)


def _block(size: int, cells: int) -> int:
    """The block length that cuts ``size`` elements into at most ``cells`` cells."""
    return max(1, -(-size // max(1, cells)))


def build_error_map(
    expected: torch.Tensor,
    actual: torch.Tensor,
    allowance: torch.Tensor | float,
    labels: list[str | None] | None = None,
    *,
    max_panels: int = MAX_PANELS,
    max_rows: int = MAX_ROWS,
    max_cols: int = MAX_COLS,
    ratio: torch.Tensor | None = None,
) -> ErrorMap:
    """The error map of ``actual`` against ``expected`` (same shape), on their device.

    ``allowance`` is what each element may be off by: ``atol + rtol * |expected|`` in the
    absolute mode, one number in the calibrated one (a tensor that broadcasts, or a float).
    As in :func:`~gradcheck_cli.compare.compare`, NaN is never close to anything and an
    infinity only to the same infinity: those cells are ``inf``.

    The pooling runs where the tensors are (one float temporary of the tensor's size,
    plus boolean masks); only the grid comes back to the CPU. ``ratio``: the error per
    element in allowances (:meth:`~gradcheck_cli.tolerance.Judge.excess`), when the
    caller has it; then ``allowance`` is not read and no temporary is made.
    """
    import torch
    import torch.nn.functional as F

    if tuple(expected.shape) != tuple(actual.shape):
        raise ValueError(
            f"an error map needs equal shapes, got {list(expected.shape)} and {list(actual.shape)}"
        )
    if expected.numel() == 0:
        raise ValueError("an error map needs at least one element")
    shape = list(expected.shape)
    labels = list(labels) if labels is not None else [None] * len(shape)
    if len(labels) != len(shape):
        raise ValueError(f"{len(labels)} labels for a tensor of {len(shape)} dims")
    expected = expected.detach()
    actual = actual.detach().to(expected.device)
    if ratio is None:
        from .tolerance import excess

        ratio = excess(actual, expected, allowance)
    elif tuple(ratio.shape) != tuple(expected.shape):
        raise ValueError(f"a ratio of shape {list(ratio.shape)} for a tensor of {shape}")
    ratio = ratio.to(expected.device)

    lead = labels[:-2]
    n_panels = math.prod(shape[:-2])
    n_rows = shape[-2] if len(shape) >= 2 else 1
    n_cols = shape[-1] if shape else 1
    lead_names = [n for n in lead if n]
    panel_name = ", ".join(lead_names) if len(lead_names) == len(lead) else "panels"
    panels = Axis(panel_name or "panels", n_panels, _panel_block(shape[:-2], _block(n_panels, max_panels)))
    rows = Axis((labels[-2] if len(shape) >= 2 else None) or "rows", n_rows, _block(n_rows, max_rows))
    cols = Axis(
        (labels[-1] if shape else None) or ("columns" if len(shape) >= 2 else "elements"),
        n_cols,
        _block(n_cols, max_cols),
    )

    volume = ratio.reshape(1, 1, n_panels, n_rows, n_cols)
    kernel = (panels.block, rows.block, cols.block)
    pooled, flat = F.max_pool3d(volume, kernel, stride=kernel, ceil_mode=True, return_indices=True)
    pooled, flat = pooled[0, 0], flat[0, 0]
    if shape:  # take, not unravel_index: that imports sympy on first use (0.35-0.65 s)
        e_cells, a_cells = torch.take(expected, flat), torch.take(actual, flat)
    else:
        e_cells, a_cells = expected.reshape(1, 1, 1), actual.reshape(1, 1, 1)
    best = int(pooled.reshape(-1).argmax())
    worst = (best // (rows.cells * cols.cells), best // cols.cells % rows.cells, best % cols.cells)
    worst_flat = int(flat.reshape(-1)[best])
    return ErrorMap(
        shape=shape,
        labels=labels,
        panels=panels,
        rows=rows,
        cols=cols,
        ratio=pooled.cpu().tolist(),
        expected=e_cells.to("cpu", torch.float64).tolist(),
        actual=a_cells.to("cpu", torch.float64).tolist(),
        worst=worst,
        worst_index=_unravel(worst_flat, shape) if shape else [],
    )
