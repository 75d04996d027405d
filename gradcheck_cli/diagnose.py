"""What kind of mistake a wrong gradient looks like.

Each rule tries one everyday backprop mistake (a transpose, a sum over the
batch never done, a missing 1/n, a ReLU mask forgotten, a gradient cropped at
the border, ``=`` where ``+=`` belongs, gate blocks in the wrong order...)
and, when the numbers fit it, names it in ``Check.diagnosis`` and explains it
in ``Check.hint``. A rule only fires when the corrected gradient matches the
expected one within the check's own tolerance (times :data:`SLACK`), so the
rules hold in float32 as in float64. When nothing fits, the diagnosis stays
None and the hint says what the numbers do show (correlation with the
expected gradient, the best-fit scale, how concentrated the error is): never
a guessed name. Only failing checks are diagnosed, so a diagnosis can never
turn a pass into a failure.

Big tensors: a candidate explanation is first tried on a fixed random sample
of :data:`SAMPLE` elements and only verified on the whole tensor when the
sample fits, so the searches (axis pairs, factors, block orders, crop
offsets, mask patterns) cost little more than a few elementwise passes.
Where a rule can only ever look at a sample (the contributions a few wrong
elements receive in the forward, the concentration of the error), its hint
says so.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

import torch

from .compare import Tolerance, all_close, largest_abs
from .expressions import Expression
from .result import format_shape
from .spec import Spec, TensorSpec
from .tolerance import Judge, judge_of

# Over a calibrated allowance, which is already twice PyTorch's own error plus a floor.
CALIBRATED_SLACK = 2.0
# Candidate explanations are matched with this much slack over the check's own
# tolerance: summing or rescaling adds rounding of its own.
SLACK = 8.0
# Tensors with more axes than this are not searched for a missing sum (2^n subsets).
MAX_REDUCTION_DIMS = 6
# A tensor with more elements than this is searched on a sample of this many first.
SAMPLE = 1 << 14
# Block orders are searched for up to this many equal blocks along a dim.
MAX_BLOCKS = 16
# Crop offsets tried (combinations over the cropped dims).
MAX_CROP_OFFSETS = 64
# Wrong elements whose contributions are computed, one backward pass each over the tensor and
# the outputs: as many as touch CONTRIBUTION_BUDGET elements in all, up to 64; on a tensor too
# big for 3 of them, 2 (and 1 right element).
CONTRIBUTION_BUDGET = 1 << 22
# A threshold pattern ("where x < 0.1") needs this many clearly wrong elements, and as many others.
MIN_THRESHOLD_SUPPORT = 8

Found = tuple[str, str] | None
# The reference as a function: every input and param by name -> its outputs by name.
ReferenceFn = Callable[[Mapping[str, torch.Tensor]], Mapping[str, torch.Tensor]]


@dataclass
class Context:
    spec: Spec
    dims: Mapping[str, int]
    tensor: TensorSpec
    tol: Tolerance | Judge  # a calibrated tensor's Judge: its one allowance
    expected_grads: Mapping[str, torch.Tensor]
    values: Mapping[str, torch.Tensor]
    # The upstream gradient of each output (name -> tensor), as the backward received it.
    grad_outs: Mapping[str, torch.Tensor] = field(default_factory=dict)
    # The reference on given values (for the contributions an element receives); None: not available.
    reference: ReferenceFn | None = None

    @property
    def name(self) -> str:
        return self.tensor.name

    @property
    def loose(self) -> Tolerance:
        """What a candidate fix must match the expected gradient within: the check's own tolerance
        with :data:`SLACK` for the rounding the fix itself adds; a calibrated allowance (PyTorch's
        own error, doubled, and a floor) has that headroom already, so less is added to it."""
        return Tolerance(self.tol.atol * self.slack, self.tol.rtol * self.slack)

    @property
    def slack(self) -> float:
        return CALIBRATED_SLACK if getattr(self.tol, "calibrated", False) else SLACK

    def expected_labels(self, shape: torch.Size | list[int]) -> list[str | None]:
        """The spec's dim names for the expected gradient's axes."""
        labels = self.spec.dim_labels(self.tensor)
        return labels if len(labels) == len(shape) else [None] * len(shape)

    def axis_labels(self, shape: torch.Size | list[int]) -> list[str | None]:
        """Like expected_labels, with arithmetic entries too (``4*hidden``)."""
        entries = self.tensor.shape
        if len(entries) != len(shape):
            return [None] * len(shape)
        return ["".join(e.text.split()) if isinstance(e, Expression) else None for e in entries]

    def expected_text(self, shape: torch.Size | list[int]) -> str:
        return format_shape(list(shape), self.expected_labels(shape))

    def actual_text(self, shape: torch.Size | list[int]) -> str:
        return format_shape(list(shape), label_axes(shape, self.dims))

    def grad_label(self, output: str) -> str:
        """What the upstream gradient of ``output`` is called in a hint."""
        return "grad_out" if len(self.spec.outputs) == 1 else f"grad_{output}"


def label_axes(shape: torch.Size | tuple[int, ...] | list[int], dims: Mapping[str, int]) -> list[str | None]:
    """Name each axis after the dim of that size, when exactly one dim has it."""
    labels: list[str | None] = []
    for size in shape:
        names = [n for n, v in dims.items() if v == size]
        labels.append(names[0] if len(names) == 1 else None)
    return labels


def transpose_blind_spots(spec: Spec, dims: Mapping[str, int]) -> list[str]:
    """Notes for tensors whose shape cannot reveal a transpose (two equal axes)."""
    notes = []
    for t in spec.checked:
        shape = spec.shape_of(t, dims)
        for i, j in itertools.combinations(range(len(shape)), 2):
            if shape[i] == shape[j] and shape[i] > 1:
                labels = spec.dim_labels(t)
                notes.append(
                    f"{t.name} is {format_shape(list(shape), labels)}: a transposed gradient has the"
                    " right shape here, so shapes alone cannot catch a transpose (values still do;"
                    " --sweep tries non-square sizes)"
                )
                break
    return notes


def explain(
    expected: torch.Tensor, actual: torch.Tensor, ctx: Context, excess: torch.Tensor | None = None
) -> tuple[str | None, str]:
    """``(diagnosis, hint)`` for a failing check: the first rule that fits, or None and why not.

    ``excess``: the tensor's :meth:`~gradcheck_cli.tolerance.Judge.excess` under ``ctx.tol``,
    when the caller has it (the error map's), so that it is not worked out twice.
    """
    e = expected.detach().to("cpu", torch.float64)
    a = _as_real(actual.detach().to("cpu"))
    d = _Diff(e, a, ctx)
    if excess is not None and excess.shape == e.shape:
        d.__dict__["excess"] = excess.to("cpu")  # the cached property, given
    rules = _SHAPE_RULES if e.shape != a.shape else _VALUE_RULES
    for rule in rules:
        found = rule(d)
        if found is not None:
            return found
    if e.shape != a.shape:
        return None, (
            f"shape {ctx.actual_text(a.shape)} where {ctx.expected_text(e.shape)} is expected; no known"
            " mistake explains the values (not a transpose, a missing sum, a reshape, a crop or a swap)"
        )
    hint = (
        "no known mistake explains these values (not a transpose, a constant factor, a swap,"
        " zeros, a mask, blocks in another order or an overwrite)"
    )
    if bool((e == 0).all()):
        hint += f"; the expected gradient is all zeros: the output does not depend on {ctx.name}"
    else:
        summary = _what_the_error_looks_like(d)
        if summary:
            hint += f"; {summary}"
    return None, hint


def _as_real(t: torch.Tensor) -> torch.Tensor:
    if t.is_complex():
        t = t.real
    return t.to(torch.float64)


# -- samples: the same random positions in every tensor of one shape -------------------


class _Sample:
    """Up to ``size`` fixed random positions of a shape (all of them when it is small)."""

    def __init__(self, shape: tuple[int, ...], size: int = SAMPLE) -> None:
        self.shape = shape
        self.numel = math.prod(shape)
        self.full = self.numel <= size
        self.flat = torch.zeros(0, dtype=torch.int64)
        if not self.full:
            gen = torch.Generator().manual_seed(0)
            flat = torch.randint(self.numel, (size,), generator=gen).sort().values
            self.flat = flat[torch.cat([torch.ones(1, dtype=torch.bool), flat[1:] != flat[:-1]])]

    @property
    def size(self) -> int:
        return self.numel if self.full else len(self.flat)

    def take(self, t: torch.Tensor) -> torch.Tensor:
        """The sampled elements of ``t`` (of this shape; a view is fine), flat."""
        return t.reshape(-1) if self.full else torch.take(t, self.flat)


@functools.lru_cache(maxsize=16)
def _sample(shape: tuple[int, ...], size: int = SAMPLE) -> _Sample:
    return _Sample(shape, size)


def _close(actual: torch.Tensor, expected: torch.Tensor, ctx: Context) -> bool:
    """Within the loose tolerance everywhere: tried on a sample first, then in full."""
    if actual.shape != expected.shape:
        return False
    s = _sample(tuple(expected.shape))
    if not s.full and not bool(ctx.loose.allclose(s.take(actual), s.take(expected)).all()):
        return False
    return all_close(actual, expected, ctx.loose)  # in chunks: no full-size temporaries


class _Diff:
    """One failing tensor: expected and actual (float64, CPU) and what rules share about them."""

    def __init__(self, e: torch.Tensor, a: torch.Tensor, ctx: Context) -> None:
        self.e, self.a, self.ctx = e, a, ctx

    @functools.cached_property
    def excess(self) -> torch.Tensor:
        """|actual - expected| in units of the check's tolerance (inf where not finite)."""
        return judge_of(self.ctx.tol).excess(self.a, self.e)

    @functools.cached_property
    def wrong(self) -> torch.Tensor:
        """Outside the check's tolerance: exactly the elements the table counts as mismatched."""
        return self.excess > 1.0

    @functools.cached_property
    def definitely(self) -> torch.Tensor:
        """Outside the loose tolerance too: wrong beyond any rounding."""
        return self.excess > self.ctx.slack

    @functools.cached_property
    def count(self) -> int:
        """How many elements are wrong."""
        return _count(self.wrong)

    @functools.cached_property
    def partial(self) -> bool:
        """Some elements wrong and the others right: not a chance hit or two among random numbers."""
        count, total = self.count, self.wrong.numel()
        right = total - count
        if count == 0 or right < max(2, total // 10):
            return False
        # At float16 tolerances random numbers land close now and then, but then about as
        # many land just outside the tolerance as inside it; real right ones are far inside.
        band = _count(self.wrong & ~self.definitely)
        return band * 4 <= right

    @functools.cached_property
    def fit(self) -> tuple[float, float, float]:
        """(<a, e>, <e, e>, <a, a>)."""
        a, e = self.a.reshape(-1), self.e.reshape(-1)
        return float(a @ e), float(e @ e), float(a @ a)


def _axis(i: int, size: int, label: str | None) -> str:
    return f"dim {i} ({label}={size})" if label else f"dim {i} (size {size})"


def _ranges(idx: Sequence[int], limit: int = 4) -> str:
    """``0–9``, ``0–2, 5 and 9–11``, ``0, 2, 4, 6 and 3 more ranges``."""
    runs: list[tuple[int, int]] = []
    for i in idx:
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    parts = [str(lo) if lo == hi else f"{lo}–{hi}" for lo, hi in runs]
    if len(parts) > limit:
        return ", ".join(parts[:limit]) + f" and {len(parts) - limit} more ranges"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _count_ranges(idx: Sequence[int]) -> int:
    return 1 + sum(1 for p, q in zip(idx, idx[1:]) if q != p + 1) if idx else 0


def _block_sizes(
    n: int, dims: Mapping[str, int], entry: str | None = None, plain_up_to: int = MAX_BLOCKS
) -> list[tuple[int, str]]:
    """(k, "4 blocks of hidden=5") for the ways to cut n into 2..MAX_BLOCKS equal blocks.

    ``entry`` is the axis's shape entry: when it is arithmetic (``4*hidden``,
    ``heads*head_dim``), only the dims it names can name the blocks, their size or their
    count; otherwise a dim of the block's size does. Named cuts come first, then the others
    up to ``plain_up_to`` blocks; fewer blocks first in each.
    """
    words = set(re.findall(r"[A-Za-z_]\w*", entry or ""))
    arithmetic = bool(words) and entry not in dims
    names = {d: v for d, v in dims.items() if d in words} if arithmetic else dict(dims)
    named, plain = [], []
    for k in range(2, min(n, MAX_BLOCKS) + 1):
        if n % k:
            continue
        size = n // k
        of_size = [d for d, v in names.items() if v == size]
        of_count = [d for d, v in names.items() if v == k] if arithmetic else []
        if len(of_size) == 1 and len(of_count) == 1 and of_size != of_count:
            named.append((k, f"{of_count[0]}={k} blocks of {of_size[0]}={size}"))
        elif len(of_size) == 1:
            named.append((k, f"{k} blocks of {of_size[0]}={size}"))
        elif len(of_count) == 1:
            named.append((k, f"{of_count[0]}={k} blocks of {size}"))
        elif k <= plain_up_to:
            plain.append((k, f"{k} blocks of {size}"))
    return named + plain


def _index_set(
    idx: list[int], n: int, dims: Mapping[str, int], entry: str | None = None
) -> tuple[str, str | None] | None:
    """Indices along one dim in words, and the blocks they make up (if they do); None
    when they follow no readable pattern."""
    chosen = set(idx)
    blocks_note: str | None = None
    for k, blocks_of in _block_sizes(n, dims, entry, plain_up_to=4):
        size = n // k
        blocks = [b for b in range(k) if b * size in chosen]
        whole = all(set(range(b * size, (b + 1) * size)) <= chosen for b in blocks)
        if size > 1 and blocks and whole and len(blocks) * size == len(idx) and len(blocks) < k:
            which = _ranges(blocks) if len(blocks) > 2 else " and ".join(map(str, blocks))
            blocks_note = f"block{'s' if len(blocks) > 1 else ''} {which} of the {blocks_of}"
            break
    if len(idx) == 1:
        return f"index {idx[0]}", blocks_note
    if _count_ranges(idx) <= 4 or blocks_note is not None:
        return f"indices {_ranges(idx)} of {n}", blocks_note
    step = idx[1] - idx[0]
    if step > 1 and all(q - p == step for p, q in zip(idx, idx[1:])) and idx[-1] + step >= n:
        return f"every {_ordinal(step)} index from {idx[0]} ({len(idx)} of {n})", None
    return None


def _along(
    idx: list[int], n: int, axis: str | None, dims: Mapping[str, int], entry: str | None = None
) -> str | None:
    """``indices 0–7 of 16 along dim 0 (4*hidden=16): blocks 0 and 1 of the 4 blocks of hidden=4``."""
    found = _index_set(idx, n, dims, entry)
    if found is None:
        return None
    words, blocks = found
    return words + (f" along {axis}" if axis else "") + (f": {blocks}" if blocks else "")


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


# -- rules for any shape -----------------------------------------------------------


def _nonfinite(d: _Diff) -> Found:
    e, a, ctx = d.e, d.a, d.ctx
    if math.isfinite(largest_abs(a)):  # one pass, no temporary
        return None
    bad = ~torch.isfinite(a)
    count, total = int(bad.sum()), a.numel()
    kinds = [k for k, f in (("NaN", torch.isnan), ("Inf", torch.isinf)) if bool(f(a).any())]
    what = f"{count} of {total} elements are {'/'.join(kinds)}"
    if a.dim() == 0:
        where = ""
    else:
        shown = []
        for pos in bad.nonzero()[:3].tolist():
            inputs = [
                f"{name}={float(v[tuple(pos)]):.4g}"
                for name, v in ctx.values.items()
                if v.is_floating_point() and tuple(v.shape) == tuple(a.shape)
            ][:2]
            shown.append(f"{pos}" + (f" (where {', '.join(inputs)})" if inputs else ""))
        where = ", at " + ", ".join(shown) + (", ..." if count > 3 else "")
        if a.shape == e.shape and count < total:
            pattern = _mask_pattern(bad, bad, ctx)
            if pattern:
                where += f"; {pattern.where}"
    return "nonfinite", f"{what}{where}: a division by zero, a log of 0, or an exp that overflowed?"


def _swapped(d: _Diff) -> Found:
    e, a, ctx = d.e, d.a, d.ctx
    for other, grad in ctx.expected_grads.items():
        if other == ctx.name or tuple(grad.shape) != tuple(a.shape):
            continue
        g = grad.detach().to("cpu", torch.float64)
        if _close(a, g, ctx) and not _close(g, e, ctx):
            return "swapped", (
                f"{ctx.name} holds the gradient of {other}: gradients returned (or stored in .g) in the"
                f" wrong order, or {ctx.name}'s computed with {other}'s formula"
            )
    return None


# -- rules about the layout: a transpose (any shapes), a missing sum, a reshape, a crop ----


def _transposed(d: _Diff) -> Found:
    e, a, ctx = d.e, d.a, d.ctx
    if a.dim() < 2 or a.dim() != e.dim():
        return None
    labels = ctx.expected_labels(e.shape)
    for i, j in itertools.combinations(range(a.dim()), 2):
        swapped = a.transpose(i, j)
        if swapped.shape != e.shape or not _close(swapped, e, ctx):
            continue
        if a.shape == e.shape and _close(a, e, ctx):
            continue  # symmetric along these axes: a transpose changes nothing
        shape = list(e.shape)
        axes = f"{_axis(i, shape[i], labels[i])} and {_axis(j, shape[j], labels[j])} swapped"
        if a.shape == e.shape:
            names = " = ".join(n for n in (labels[i], labels[j]) if n) or "both"
            why = f"the shapes agree only because {names} = {shape[i]}"
        else:
            why = f"shape {ctx.actual_text(a.shape)} instead of {ctx.expected_text(e.shape)}"
        return "transposed", (
            f"{ctx.name} gradient is the expected one with {axes} ({why}):"
            " transpose it, or swap the matmul's operands"
        )
    return None


def _missing_reduction(d: _Diff) -> Found:
    e, a, ctx = d.e, d.a, d.ctx
    if a.numel() <= e.numel() or a.dim() > MAX_REDUCTION_DIMS:
        return None
    target = [s for s in e.shape if s != 1]
    actual_labels = label_axes(a.shape, ctx.dims)
    for r in range(1, a.dim() + 1):
        for axes in itertools.combinations(range(a.dim()), r):
            rest = [s for k, s in enumerate(a.shape) if k not in axes and s != 1]
            if rest != target:
                continue
            summed = a.sum(dim=axes)
            if not _close(summed.reshape(e.shape), e, ctx):
                continue
            shape = list(a.shape)
            names = ", ".join(_axis(k, shape[k], actual_labels[k]) for k in axes)
            arg = str(axes[0]) if len(axes) == 1 else str(axes)
            if summed.shape == e.shape:
                call = f"grad.sum({arg})"
            elif a.sum(dim=axes, keepdim=True).shape == e.shape:
                call = f"grad.sum({arg}, keepdim=True)"
            else:
                call = f"grad.sum({arg}).reshape({list(e.shape)})"
            plural = "s" if len(axes) > 1 else ""
            return "missing_reduction", (
                f"{ctx.name} gradient has shape {ctx.actual_text(a.shape)} instead of"
                f" {ctx.expected_text(e.shape)}: sum over {names}, the dim{plural} {ctx.name}"
                f" was broadcast over in the forward ({call})"
            )
    return None


def _reshaped(d: _Diff) -> Found:
    e, a, ctx = d.e, d.a, d.ctx
    if a.numel() != e.numel() or a.shape == e.shape:
        return None
    if not _close(a.reshape(e.shape), e, ctx):
        return None
    got, want = ctx.actual_text(a.shape), ctx.expected_text(e.shape)
    if [s for s in a.shape if s != 1] == [s for s in e.shape if s != 1]:
        how = "only size-1 dims differ: a keepdim=True, a column vector ([:, None]) or a missing squeeze?"
    elif a.dim() == 1:
        how = "it was flattened"
    else:
        how = "the values are in order but laid out in another shape"
    return "reshaped", (
        f"{ctx.name} gradient has the right values in shape {got} instead of {want} ({how}):"
        f" reshape it to {ctx.name}'s shape (.reshape({list(e.shape)}) or .view_as({ctx.name}))"
    )


def _cropped(d: _Diff) -> Found:
    """Smaller along some dims (down to empty) and the expected values on the part it covers."""
    e, a, ctx = d.e, d.a, d.ctx
    if a.dim() != e.dim() or a.dim() == 0 or any(p > q for p, q in zip(a.shape, e.shape)):
        return None
    short = [k for k in range(e.dim()) if a.shape[k] < e.shape[k]]
    if not short:
        return None
    labels = ctx.expected_labels(e.shape)
    got, want = ctx.actual_text(a.shape), ctx.expected_text(e.shape)
    empty = [k for k in short if a.shape[k] == 0]
    if empty:
        axes = " and ".join(_axis(k, e.shape[k], labels[k]) for k in empty)
        return "cropped", (
            f"{ctx.name} gradient has shape {got} instead of {want}: {axes}"
            f" {'are' if len(empty) > 1 else 'is'} empty, the usual cause a [p:-p] slice with p = 0"
            " (x[0:-0] is x[0:0]): slice [p:p + size] or [p:len - p] instead"
        )
    choices: list[list[int]] = []
    for k in short:
        gap = e.shape[k] - a.shape[k]
        choices.append(list(range(gap + 1)) if gap <= 3 else sorted({0, gap // 2, gap}))
    for n, offsets in enumerate(itertools.product(*choices)):
        if n >= MAX_CROP_OFFSETS:
            break
        start = dict(zip(short, offsets))
        part = e
        for k, o in start.items():
            part = part.narrow(k, o, a.shape[k])
        if not _close(a, part, ctx):
            continue
        missing = []
        reached = torch.ones(e.shape, dtype=torch.bool)
        for k, o in start.items():
            gone = [i for i in range(e.shape[k]) if not o <= i < o + a.shape[k]]
            axis = _axis(k, e.shape[k], labels[k])
            missing.append(_along(gone, e.shape[k], axis, {}) or f"indices {_ranges(gone)} along {axis}")
            keep = torch.zeros(e.shape[k], dtype=torch.bool)
            keep[o : o + a.shape[k]] = True
            reached &= keep.reshape([-1 if i == k else 1 for i in range(e.dim())])
        # The expected gradient where the crop cut: zero means nothing reaches those elements.
        cut = e[~reached]
        at_end = all(o == 0 for o in start.values())
        if bool((cut.abs() <= ctx.loose.atol).all()):
            why = (
                "the expected gradient there is 0 (no window reaches those elements, as when the stride"
                f" leaves a remainder): pad the gradient with zeros back to {want}"
            )
        elif at_end:
            why = (
                "the expected gradient there is not 0: a buffer or loop one short at the end, as when"
                " the padded size is computed from the output, (out - 1) * stride + kernel, and the"
                " stride leaves a remainder; size it from the input (H + 2 * pad)"
            )
        else:
            why = (
                "the expected gradient there is not 0: a border cut off, as by a [p:-p] slice with"
                " the wrong p or padding removed twice"
            )
        return "cropped", (
            f"{ctx.name} gradient has shape {got} instead of {want} and equals the expected one on the"
            f" part it covers; missing: {'; '.join(missing)}. {why[0].upper()}{why[1:]}"
        )
    return None


# -- rules about the values (the shapes agree) ---------------------------------------


def _zero(d: _Diff) -> Found:
    e, a, ctx = d.e, d.a, d.ctx
    s = _sample(tuple(a.shape))
    if not s.full and bool((s.take(a) != 0).any()):
        return None
    if bool((a == 0).all()) and not _close(torch.zeros_like(e), e, ctx):
        return (
            "zero",
            f"{ctx.name} gradient is all zeros: was it computed, or overwritten by a fresh zeros()?",
        )
    return None


def _scaled(d: _Diff) -> Found:
    e, a, ctx = d.e, d.a, d.ctx
    ae, ee, _ = d.fit
    if ee == 0.0:
        return None
    c = ae / ee
    if not abs(c) > 1e-12:
        return None
    # A factor indistinguishable from 1 is no factor: a few elements just outside the
    # tolerance are not "scaled" (partial or null will say what they are).
    if abs(c - 1) <= max(SLACK * ctx.tol.rtol, 1e-6):
        return None
    s = _sample(tuple(e.shape))
    if not s.full and not bool(ctx.loose.allclose(s.take(a), c * s.take(e)).all()):
        return None
    scaled = torch.mul(e, c)  # the one full-size temporary, reused below
    if not _close(a, scaled, ctx):
        return None
    # The factor must explain the error, not hide in a wide tolerance: c * e is far closer to
    # the values than e is (random numbers near 0 are "0.04 x e" within a floor).
    left = largest_abs(scaled.sub_(a))
    if left > 0.1 * largest_abs(torch.sub(a, e, out=scaled)):
        return None
    if abs(c + 1) < 0.1 and _close(a, -e, ctx):  # a ~ -e makes <a, e> / <e, e> ~ -1
        return "sign_flipped", f"{ctx.name} gradient is minus the expected one: a sign is flipped"
    factor, reason = _name_factor(c, e, a, ctx)
    return "scaled", f"{ctx.name} gradient is {factor} x the expected: {reason}"


@dataclass(frozen=True)
class _Size:
    """A size a factor can point at: one dim, several dims of that size, or a product of two."""

    value: int
    names: tuple[str, ...]  # ("n",); ("batch", "in") when both are 5; ("N", "M") for N*M
    product: bool = False

    @property
    def name(self) -> str:
        return ("*" if self.product else " or ").join(self.names)

    @property
    def label(self) -> str:
        """``n=5``, ``batch=in=5``, ``N*M=20``."""
        return ("*" if self.product else "=").join(self.names) + f"={self.value}"

    @property
    def per(self) -> str:
        """``1/n``, ``1/5`` (ambiguous), ``1/(N*M)``."""
        if self.product:
            return f"1/({self.name})"
        return f"1/{self.name}" if len(self.names) == 1 else f"1/{self.value}"


def _named_sizes(dims: Mapping[str, int]) -> list[_Size]:
    """The dims' sizes (> 1) with their names, then products of two dims."""
    by_size: dict[int, list[str]] = {}
    for name, size in dims.items():
        if size > 1:
            by_size.setdefault(size, []).append(name)
    singles = [_Size(size, tuple(names)) for size, names in by_size.items()]
    pairs = [
        _Size(p.value * q.value, p.names + q.names, product=True)
        for p, q in itertools.combinations(singles, 2)
        if len(p.names) == len(q.names) == 1 and p.value * q.value not in by_size
    ]
    return singles + pairs


def _factor_candidates(dims: Mapping[str, int]) -> list[tuple[Fraction, str]]:
    """(factor, why) for the factors a hand derivation gets wrong, most likely first."""
    sizes = _named_sizes(dims)
    out: list[tuple[Fraction, str]] = []
    for s in sizes:
        out.append((Fraction(s.value), f"a missing {s.per} ({s.label}: the mean over {s.name}?)"))
        out.append(
            (Fraction(1, s.value), f"divided by {s.label} once too often (a mean where a sum belongs?)")
        )
    for p, q in itertools.permutations([s for s in sizes if not s.product], 2):
        out.append((Fraction(p.value, q.value), f"divided by {q.label} where {p.label} belongs"))
    out.append((Fraction(2), "a factor 2 too many"))
    out.append((Fraction(1, 2), "a missing factor 2 (the 2 of d(x^2)/dx = 2x?)"))
    for s in sizes:
        out.append((Fraction(2 * s.value), f"a missing {s.per} ({s.label}) and a factor 2 too many"))
        out.append((Fraction(s.value, 2), f"a missing {s.per} ({s.label}) and a missing factor 2"))
    return out


def _name_factor(c: float, e: torch.Tensor, a: torch.Tensor, ctx: Context) -> tuple[str, str]:
    """How to write c, and which dim (or factor 2) it points at."""
    sign = -1 if c < 0 else 1
    flipped = ", and the sign is flipped" if sign < 0 else ""
    found: Fraction | None = None
    reasons: list[str] = []
    for value, why in _factor_candidates(ctx.dims):
        if value == 1 or (found is not None and value != found):
            continue  # 1 is no factor; after a match, only other readings of the same value
        v = float(value)
        if found is not None or (abs(abs(c) - v) <= 0.05 * v and _close(a, sign * v * e, ctx)):
            found = value
            if why not in reasons:
                reasons.append(why)
    if found is None:
        return f"{c:.4g}", "one constant factor off, and no dim has that size" + flipped
    shown = str(found) if found.denominator != 1 else str(found.numerator)
    # Several readings of one number (out=2 and "a factor 2"): say them all, choose none.
    return ("-" if sign < 0 else "") + shown, " or ".join(reasons) + flipped


_GATES = {("lstm", 4): ("i", "f", "g", "o"), ("gru", 3): ("r", "z", "n")}


def _blocks_swapped(d: _Diff) -> Found:
    """Along one dim, equal-sized blocks of the expected gradient in another order."""
    e, a, ctx = d.e, d.a, d.ctx
    labels = ctx.axis_labels(e.shape)
    for axis in range(e.dim()):
        n = e.shape[axis]
        for k, blocks_of in sorted(_block_sizes(n, ctx.dims, labels[axis]), key=lambda kb: kb[0]):
            order = _block_order(e, a, axis, k, ctx)
            if order is None:
                continue
            swaps = [i for i in range(k) if order[i] != i]
            listed = ", ".join(map(str, order))
            if len(swaps) == 2:
                how = f"blocks {swaps[0]} and {swaps[1]} swapped (order {listed})"
            elif order == list(range(k))[::-1]:
                how = f"in reverse order ({listed})"
            else:
                how = f"in the order {listed} (position i holds expected block order[i])"
            expr = ctx.spec.reference.describe().lower()
            gates = next((g for (kind, count), g in _GATES.items() if count == k and kind in expr), None)
            if gates is not None:
                how += f"; gates {', '.join(gates)} came back as {', '.join(gates[i] for i in order)}"
            return "blocks_swapped", (
                f"{ctx.name} gradient is the expected one with the {blocks_of} along"
                f" {_axis(axis, n, labels[axis])} {how}: slices (LSTM/GRU gates, attention heads,"
                " q/k/v) concatenated in another order than the forward splits them"
            )
    return None


def _block_order(e: torch.Tensor, a: torch.Tensor, axis: int, k: int, ctx: Context) -> list[int] | None:
    """order[i] = the expected block that actual block i equals, when that is a permutation."""
    size = e.shape[axis] // k
    e_blocks = [e.narrow(axis, j * size, size) for j in range(k)]
    a_blocks = [a.narrow(axis, j * size, size) for j in range(k)]
    s = _sample(tuple(e_blocks[0].shape), SAMPLE // 16)
    e_taken = [s.take(b) for b in e_blocks]
    order: list[int] = []
    for i, block in enumerate(a_blocks):
        taken = s.take(block)
        fits = [j for j in range(k) if bool(ctx.loose.allclose(taken, e_taken[j]).all())]
        if not fits:
            return None  # most wrong gradients stop here, at block 0
        j = i if i in fits else next((j for j in fits if j not in order), None)
        if j is None:
            return None
        order.append(j)
    if order == list(range(k)) or sorted(order) != list(range(k)):
        return None
    if not all(_close(a_blocks[i], e_blocks[j], ctx) for i, j in enumerate(order)):
        return None
    return order


def _overwritten(d: _Diff) -> Found:
    """Wrong exactly where an element gets several contributions, holding one of them: `=` for `+=`."""
    e, a, ctx = d.e, d.a, d.ctx
    value = ctx.values.get(ctx.name)
    if ctx.reference is None or not ctx.grad_outs or value is None or not value.is_floating_point():
        return None
    if tuple(value.shape) != tuple(e.shape) or d.count == 0:
        return None
    ints = [n for n, v in ctx.values.items() if not v.is_floating_point() and not v.is_complex()]
    # With integer indices any share can be repeated (most rows, when tokens outnumber the
    # vocabulary); without, overlapping windows leave most elements right: a partial failure.
    if not ints and not d.partial:
        return None
    gen = torch.Generator().manual_seed(0)
    wrong_at = d.wrong.reshape(-1).nonzero().flatten()
    count = d.count
    per_column = e.numel() + sum(g.numel() for g in ctx.grad_outs.values())
    most = min(64, CONTRIBUTION_BUDGET // max(1, per_column))
    most, rights = (2, 1) if most < 3 else (most, 3)
    picked = _pick(wrong_at, most, gen)
    flat_a = a.reshape(-1)
    # One contribution is never 0 (a zero term is no contribution): a wrong 0 is another mistake.
    if bool((flat_a[picked].abs() <= ctx.loose.atol).any()):
        return None
    jacobian = _Jacobian(ctx, value, e)
    held: set[str] = set()
    for j in picked.tolist():
        parts = jacobian.contributions(j)
        if parts is None or len(parts) < 2:
            return None  # the first wrong element usually settles it
        got = float(flat_a[j])
        hits = [
            i
            for i, p in enumerate(parts.tolist())
            if abs(got - p) <= ctx.loose.atol + ctx.loose.rtol * abs(p)
        ]
        if not hits:
            return None
        held.add("the first" if hits[0] == 0 else "the last" if hits[-1] == len(parts) - 1 else "one")
    # Right elements that receive anything must receive one contribution (else `=` would show there too).
    right_at = ((~d.wrong) & (e != 0)).reshape(-1).nonzero().flatten()
    for j in _pick(right_at, rights, gen).tolist():
        parts = jacobian.contributions(j)
        if parts is None or len(parts) > 1:
            return None
    why = f"an index repeated in {' or '.join(ints)}" if ints else "overlapping windows"
    which = held.pop() if len(held) == 1 else "one"
    total = e.numel()
    sampled = f" (checked on {len(picked)} of the {count} wrong elements)" if len(picked) < count else ""
    return "overwritten", (
        f"{count} of {total} elements of {ctx.name} ({100 * count / total:.0f}%) are wrong: each receives"
        f" several contributions in the forward ({why}) and holds {which} of them, not their sum{sampled}:"
        " `=` where `+=` is needed (accumulate: += in the loop, np.add.at or index_add_ for repeated indices)"
    )


def _pick(positions: torch.Tensor, most: int, gen: torch.Generator) -> torch.Tensor:
    """Up to ``most`` of ``positions``, drawn at random (all of them when there are few)."""
    if len(positions) <= most:
        return positions
    draws = torch.randint(len(positions), (4 * most,), generator=gen).tolist()
    return positions[list(dict.fromkeys(draws))[:most]]


class _Jacobian:
    """Columns of the reference's Jacobian with respect to the checked tensor, one element at a time.

    The gradient at element j is the sum of the terms grad_out[o] * d out[o] / d value[j];
    ``contributions(j)`` returns the nonzero ones. The column d out / d value[j] comes from
    the derivative of a vector-Jacobian product with respect to its vector (the graph of
    one backward with create_graph=True, then one backward per column), which needs no
    import: torch's forward mode loads its decompositions the first time (0.8 s; 4.6 s
    through torch._dynamo for F.linear). Forward mode (a dual number, one-hot tangent)
    is the fallback. Either way the terms must add up to the expected gradient at j: a
    reference without a double backward (``once_differentiable``) can hand back an empty
    column without an error, and that check catches it.
    """

    def __init__(self, ctx: Context, value: torch.Tensor, expected: torch.Tensor) -> None:
        self.ctx, self.value = ctx, value
        self.expected = expected.reshape(-1)
        self.names = list(ctx.grad_outs)
        self.others = {n: v for n, v in ctx.values.items() if n != ctx.name}
        self.graph: tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]] | None = None
        self.reverse = True

    def contributions(self, j: int) -> torch.Tensor | None:
        if self.reverse:
            found = self._terms(j, self._reverse_column)
            if found is not None:
                return found
            self.reverse, self.graph = False, None  # no double backward: forward mode from now on
        found = self._terms(j, self._forward_column)
        if found is not None:
            return found
        return self._terms(j, self._difference_column)  # a reference autograd cannot follow (numpy)

    def _terms(self, j: int, column_of: Callable[[int], list[torch.Tensor]]) -> torch.Tensor | None:
        try:
            columns = column_of(j)
        except Exception:  # noqa: BLE001 - a reference this way cannot differentiate
            return None
        terms = []
        for n, column in zip(self.names, columns):
            flat = column.reshape(-1)
            at = flat.nonzero().flatten()  # a column is mostly zeros where `=` can matter
            g = self.ctx.grad_outs[n].detach().reshape(-1)
            terms.append(g[at].to("cpu", torch.float64) * flat[at].to("cpu", torch.float64))
        found = torch.cat(terms)
        want = float(self.expected[j])
        if abs(float(found.sum()) - want) > self.ctx.loose.atol + self.ctx.loose.rtol * abs(want):
            return None  # not the column of this gradient
        biggest = float(found.abs().max()) if found.numel() else 0.0
        return found[found.abs() > biggest * 1e-6] if biggest > 0 else found

    def _reverse_column(self, j: int) -> list[torch.Tensor]:
        reference = self.ctx.reference
        assert reference is not None
        with torch.enable_grad():
            if self.graph is None:
                leaf = self.value.detach().clone().requires_grad_()
                produced = reference({**self.others, self.ctx.name: leaf})
                outs = [produced[n] for n in self.names]
                probes = [torch.zeros_like(o, requires_grad=True) for o in outs]
                # sum(out * probe) has the probe as its upstream gradient; no grad_outputs= (sympy)
                total = sum((o * p).sum() for o, p in zip(outs, probes))
                assert isinstance(total, torch.Tensor)
                (vjp,) = torch.autograd.grad(total, [leaf], create_graph=True)
                self.graph = (vjp.reshape(-1), probes, outs)
            vjp, probes, outs = self.graph
            if not vjp.requires_grad:  # the vjp does not depend on the probe: a zero Jacobian
                return [torch.zeros_like(o) for o in outs]
            found = torch.autograd.grad(vjp[j], probes, retain_graph=True, allow_unused=True)
        return [(c if c is not None else torch.zeros_like(o)).detach() for c, o in zip(found, outs)]

    def _difference_column(self, j: int) -> list[torch.Tensor]:
        """The column by central differences: outputs element j does not reach come out bitwise
        equal and cancel to an exact 0, so the column's nonzeros are where j contributes."""
        reference = self.ctx.reference
        assert reference is not None
        base = self.value.detach().to(torch.float64)
        flat = base.reshape(-1)
        h = 6e-6 * max(abs(float(flat[j])), 1.0)
        columns = []
        moved = []
        for sign in (1.0, -1.0):
            shifted = flat.clone()
            shifted[j] += sign * h
            others = {n: v.to(torch.float64) if v.is_floating_point() else v for n, v in self.others.items()}
            produced = reference({**others, self.ctx.name: shifted.reshape(base.shape)})
            moved.append([torch.as_tensor(produced[n], dtype=torch.float64) for n in self.names])
        for up, down in zip(*moved):
            columns.append((up - down) / (2 * h))
        return columns

    def _forward_column(self, j: int) -> list[torch.Tensor]:
        import warnings

        import torch.autograd.forward_ad as fwAD

        reference = self.ctx.reference
        assert reference is not None
        tangent = torch.zeros(self.value.numel(), dtype=self.value.dtype, device=self.value.device)
        tangent[j] = 1
        # The first dual tensor loads torch's forward-mode decompositions (jit-scripted: warnings).
        with warnings.catch_warnings(), fwAD.dual_level():
            warnings.simplefilter("ignore")
            dual = fwAD.make_dual(self.value.detach(), tangent.reshape(self.value.shape))  # type: ignore[no-untyped-call]
            produced = reference({**self.others, self.ctx.name: dual})
            columns = [fwAD.unpack_dual(produced[n]).tangent for n in self.names]  # type: ignore[no-untyped-call]
            return [
                c.detach().clone() if c is not None else torch.zeros_like(produced[n]).detach()
                for n, c in zip(self.names, columns)
            ]


def _partial_where(d: _Diff) -> Found:
    """Partly wrong, exactly where a condition on the inputs or the upstream gradient holds.

    Tried before _overwritten (an elementwise condition is the more specific answer, and
    it saves the backward passes that rule costs); _partial says the rest.
    """
    if not d.partial:
        return None
    pattern = _condition_pattern(d.wrong, d.definitely, d.ctx)
    return None if pattern is None else _partial_found(d, pattern)


def _partial(d: _Diff) -> Found:
    if not d.partial:
        return None
    return _partial_found(d, _axis_pattern(d.wrong, d.definitely, d.ctx))


def _partial_found(d: _Diff, pattern: _Pattern | None) -> tuple[str, str]:
    count, total = d.count, d.wrong.numel()
    share = f"{100 * count / total:.0f}%" if 100 * count >= total else "<1%"
    fraction = f"{count} of {total} elements of {d.ctx.name} ({share}) are wrong, the others right"
    if pattern is None:
        return "partial", fraction
    return "partial", f"{fraction}; the wrong ones are {pattern.where}" + (
        f": {pattern.why}" if pattern.why else ""
    )


# -- where the wrong elements are -------------------------------------------------------


@dataclass(frozen=True)
class _Pattern:
    where: str  # "exactly where x <= 0"
    why: str | None = None


def _fits(inside: torch.Tensor, wrong: torch.Tensor, definitely: torch.Tensor) -> bool:
    """``inside`` holds every clearly wrong element, and few right ones (5% of it, or two in a small
    tensor: where a floor is generous, a wrong element near 0 can fall within it)."""
    if bool((definitely & ~inside).any()):
        return False
    size = _count(inside)
    return size > 0 and _count(inside & ~wrong) <= max(2, size // 20)


def _where(inside: torch.Tensor, wrong: torch.Tensor, condition: str) -> str:
    if torch.equal(inside, wrong):
        return f"exactly where {condition}"
    extra = _count(inside & ~wrong)
    return (
        f"where {condition} ({extra} of those within tolerance all the same: their difference is small there)"
    )


def _mask_pattern(wrong: torch.Tensor, definitely: torch.Tensor, ctx: Context) -> _Pattern | None:
    """Where ``wrong`` lines up with something a user can look for, and the likely why."""
    return _condition_pattern(wrong, definitely, ctx) or _axis_pattern(wrong, definitely, ctx)


def _condition_pattern(wrong: torch.Tensor, definitely: torch.Tensor, ctx: Context) -> _Pattern | None:
    """Exactly where an input or upstream gradient is <= 0, above or below a threshold, or
    both of two such, or at each row's integer target class."""
    tensors = _pattern_tensors(wrong.shape, ctx)
    s = _sample(tuple(wrong.shape))
    sampled = {label: s.take(v) for label, v in tensors.items()}
    w_s, d_s = s.take(wrong), s.take(definitely)
    signs = [_Cond("sign", u, way) for u in tensors for way in ("le", "gt")]
    thresholds = [_Cond("thr", u, way) for u in tensors for way in ("lt", "gt", "abs_gt", "abs_lt")]
    pairs = [
        replace(second, also=first) for first in signs for second in signs if first.label < second.label
    ] + [
        replace(second, also=first) for first in signs for second in thresholds if second.label != first.label
    ]

    def search(conds: list[_Cond]) -> _Pattern | None:
        # Searched on the sample, confirmed on the whole tensor.
        for cond in conds:
            if _holds(cond, w_s, d_s, sampled, ctx) is None:
                continue
            found = _holds(cond, wrong, definitely, tensors, ctx)
            if found is not None:
                return _Pattern(_where(found[0], wrong, found[1]), found[2])
        return None

    found = search(signs) or _target_pattern(wrong, ctx)
    if found is None and _count(definitely) >= MIN_THRESHOLD_SUPPORT:
        found = search(thresholds + pairs)
    return found


def _pattern_tensors(shape: torch.Size, ctx: Context) -> dict[str, torch.Tensor]:
    """Float inputs and upstream gradients of this shape, by the name a hint gives them."""
    found: dict[str, torch.Tensor] = {}
    for name, value in ctx.values.items():
        if value.is_floating_point() and tuple(value.shape) == tuple(shape):
            found[name] = value.detach().cpu()  # comparisons need no float64 copy
    for name, g in ctx.grad_outs.items():
        if g.is_floating_point() and tuple(g.shape) == tuple(shape):
            found[ctx.grad_label(name)] = g.detach().cpu()
    return found


@dataclass(frozen=True)
class _Cond:
    """``x <= 0`` (sign), ``|grad_out| > c`` (thr), and one restricted to another: ``x < c and g <= 0``."""

    kind: str  # "sign" or "thr"
    label: str
    way: str  # sign: "le" or "gt"; thr: "lt", "gt", "abs_lt" or "abs_gt"
    also: _Cond | None = None


def _holds(
    cond: _Cond,
    wrong: torch.Tensor,
    definitely: torch.Tensor,
    tensors: Mapping[str, torch.Tensor],
    ctx: Context,
) -> tuple[torch.Tensor, str, str | None] | None:
    """(where cond holds, how to say it, the likely why) when it fits the wrong elements, else None."""
    within: torch.Tensor | None = None
    said = ""
    if cond.also is not None:
        outer = _atom(cond.also, definitely, tensors, ctx, None)
        if outer is None or bool((definitely & ~outer[0]).any()):
            return None
        within, said = outer[0], f" and {outer[1]}"
    atom = _atom(cond, definitely, tensors, ctx, within)
    if atom is None or not _fits(atom[0], wrong, definitely):
        return None
    inside, text = atom
    upstream = [c.label for c in (cond, cond.also) if c is not None and _is_upstream(c.label, ctx)]
    if cond.also is not None:
        why = (
            "a surrogate gradient that depends on the upstream gradient (as LowerBound's or a"
            " straight-through estimator's does): autograd of the forward does not"
            if upstream
            else "a mask or condition on both, handled otherwise than the forward does"
        )
    elif cond.kind == "sign" and upstream:
        why = (
            "the gradient there follows the upstream gradient's sign, as a surrogate"
            " (straight-through) gradient does: autograd of the forward does not"
        )
    elif cond.kind == "sign":
        verb = "missing" if cond.way == "le" else "inverted"
        why = f"a mask (like ReLU's) is {verb}, or the slope there is wrong"
    elif upstream:
        size = "large" if cond.way.endswith("gt") else "small"
        why = (
            f"the upstream gradient is {size} there: a clipped (straight-through) gradient treats"
            " those elements apart, autograd of the forward does not"
        )
    else:
        why = f"a condition on {cond.label} (a clamp, a bound or a cutoff) handled otherwise than the forward"
    return inside, text + said, why


def _is_upstream(label: str, ctx: Context) -> bool:
    return any(ctx.grad_label(n) == label for n in ctx.grad_outs)


def _atom(
    cond: _Cond,
    definitely: torch.Tensor,
    tensors: Mapping[str, torch.Tensor],
    ctx: Context,
    within: torch.Tensor | None,
) -> tuple[torch.Tensor, str] | None:
    """One comparison on one tensor; a threshold is the tightest one holding every clearly wrong element."""
    v = tensors[cond.label]
    if cond.kind == "sign":
        inside = v <= 0 if cond.way == "le" else v > 0
        return (
            inside if within is None else inside & within
        ), f"{cond.label} {'<=' if cond.way == 'le' else '>'} 0"
    absolute = cond.way.startswith("abs")
    x = v.abs() if absolute else v
    shown = f"|{cond.label}|" if absolute else cond.label
    if _count(definitely) < MIN_THRESHOLD_SUPPORT:
        return None
    lower = cond.way.endswith("lt")
    # Masked reductions, not x[mask]: no compaction of a big tensor.
    edge = _masked_max(x, definitely) if lower else -_masked_max(-x, definitely)
    inside = x <= edge if lower else x >= edge
    if within is not None:
        inside = inside & within
    rest = ~inside if within is None else within & ~inside
    if _count(rest) < MIN_THRESHOLD_SUPPORT:
        return None
    if lower:
        return inside, _threshold(shown, "<", edge, -_masked_max(-x, rest), ctx)
    return inside, _threshold(shown, ">", _masked_max(x, rest), edge, ctx)


def _count(mask: torch.Tensor) -> int:
    return int(torch.count_nonzero(mask))


def _masked_max(x: torch.Tensor, mask: torch.Tensor) -> float:
    return float(torch.where(mask, x, -math.inf).max())


def _threshold(shown: str, op: str, lo: float, hi: float, ctx: Context) -> str:
    """``x < bound (0.1)`` when an option or scalar lies between lo and hi, else ``x < 0.1``."""
    named = {
        k: float(v)
        for k, v in ctx.spec.options.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    for n, t in ctx.values.items():
        if t.numel() == 1 and t.is_floating_point():
            named[n] = float(t.reshape(()))
    for name, value in named.items():
        if lo <= value <= hi:
            return f"{shown} {op} {name} ({value:g})"
    if lo <= 0 <= hi:
        return f"{shown} {op} 0"
    mid = (lo + hi) / 2
    for digits in range(1, 8):
        c = float(f"{mid:.{digits}g}")
        if lo < c < hi:
            return f"{shown} {op} {c:g}"
    return f"{shown} {op} {mid:.6g}"


def _target_pattern(wrong: torch.Tensor, ctx: Context) -> _Pattern | None:
    """Exactly at the target class of each row (integer targets)."""
    if wrong.dim() < 2:
        return None
    for name, value in ctx.values.items():
        if value.dtype not in (torch.int64, torch.int32) or tuple(value.shape) != tuple(wrong.shape[:-1]):
            continue
        classes = wrong.shape[-1]
        v = value.detach().cpu().long()
        if bool(((v >= 0) & (v < classes)).all()):
            at_target = torch.nn.functional.one_hot(v, classes).bool()
            if torch.equal(wrong, at_target):
                return _Pattern(
                    f"exactly at the {name} class of each row", "the -1 at the target is missing or wrong"
                )
    return None


def _axis_pattern(wrong: torch.Tensor, definitely: torch.Tensor, ctx: Context) -> _Pattern | None:
    """Confined to some indices along some dims (a box), or to whole slices (rows or columns)."""
    if wrong.dim() == 0:
        return None
    labels = ctx.axis_labels(wrong.shape)
    hit: list[torch.Tensor] = []
    for axis in range(wrong.dim()):
        other = tuple(k for k in range(wrong.dim()) if k != axis)
        hit.append(definitely.any(dim=other) if other else definitely)
    box = torch.ones(wrong.shape, dtype=torch.bool)
    for axis, h in enumerate(hit):
        box = box & h.reshape([-1 if k == axis else 1 for k in range(wrong.dim())])
    proper = [axis for axis, h in enumerate(hit) if int(h.sum()) < wrong.shape[axis]]
    if proper and _fits(box, wrong, definitely):
        parts = []
        for axis in proper:
            idx = [int(i) for i in hit[axis].nonzero().flatten()]
            where = None if wrong.dim() == 1 else _axis(axis, wrong.shape[axis], labels[axis])
            words = _along(idx, wrong.shape[axis], where, ctx.dims, labels[axis])
            if words is None:
                return None
            parts.append(words)
        lead = "at " if wrong.dim() == 1 else "with "
        return _Pattern(_where_those(box, wrong) + lead + " and ".join(parts))
    # Whole slices along several dims: the last row and the last column.
    slabs: list[tuple[int, list[int]]] = []
    union = torch.zeros(wrong.shape, dtype=torch.bool)
    for axis in range(wrong.dim()):
        other = tuple(k for k in range(wrong.dim()) if k != axis)
        if not other:
            continue
        whole = wrong.float().mean(dim=other) >= 0.95
        if bool(whole.any()):
            slabs.append((axis, [int(i) for i in whole.nonzero().flatten()]))
            union |= whole.reshape([-1 if k == axis else 1 for k in range(wrong.dim())])
    if len(slabs) >= 2 and _fits(union, wrong, definitely):
        parts = []
        for axis, idx in slabs:
            axis_text = _axis(axis, wrong.shape[axis], labels[axis])
            words = _along(idx, wrong.shape[axis], axis_text, ctx.dims, labels[axis])
            if words is None:
                return None
            parts.append(words)
        return _Pattern(
            _where_those(union, wrong) + "with " + " or ".join(parts), "a border handled otherwise"
        )
    return None


def _where_those(inside: torch.Tensor, wrong: torch.Tensor) -> str:
    if torch.equal(inside, wrong):
        return "exactly those "
    return f"those (all but {_count(inside & ~wrong)} within tolerance) "


# -- when nothing fits ------------------------------------------------------------------


def _what_the_error_looks_like(d: _Diff) -> str | None:
    """Correlation with the expected gradient, the best-fit scale and where the error sits."""
    ae, ee, aa = d.fit
    if ee == 0.0 or aa == 0.0 or not all(map(math.isfinite, (ae, ee, aa))):
        return None
    corr = ae / math.sqrt(ee * aa)
    scale = ae / ee
    spread = _concentration(d)
    stats = f"correlation {corr:.2f} with the expected gradient, best-fit scale {scale:.3g}"
    if spread is not None and spread[0] < 0.1:
        verdict = "a slip at a few positions (an index, a boundary, a loop bound), not the formula"
        return f"{spread[1]}; {stats}: {verdict}"
    lead = f"{spread[1]}, " if spread is not None else ""
    if corr >= 0.9:
        verdict = (
            "a term is missing or an extra factor"
            if abs(scale - 1) > 0.02
            else "a small term is missing or wrong"
        )
    elif corr <= -0.9:
        verdict = "nearly minus the expected gradient: a sign flipped, and a term missing or an extra factor"
    elif abs(corr) < 0.1:
        verdict = "unrelated to the expected gradient: another quantity, or a formula that differs throughout"
    else:
        verdict = "the formula differs, not a slip"
    return f"{lead}{stats}: {verdict}"


def _concentration(d: _Diff) -> tuple[float, str] | None:
    """(share of elements holding 90% of the squared error, that in words)."""
    tol = d.ctx.tol
    # One allowance for every element (calibrated): the shares are those of the excess's squares.
    err = (d.excess.square() if not tol.rtol and tol.atol > 0 else (d.a - d.e).square()).reshape(-1)
    total = float(err.sum())
    n = err.numel()
    if not math.isfinite(total) or total == 0.0 or n == 0:
        return None
    note = ""
    if d.count <= SAMPLE:  # the wrong elements hold (nearly) all of it: sort those
        top = err[d.wrong.reshape(-1)].sort(descending=True).values
        scale_up = 1.0
    else:
        s = _sample((n,))
        top = s.take(err).sort(descending=True).values
        scale_up = n / s.size
        note = f" (estimated on a sample of {s.size} elements)"
    cumulative = top.cumsum(0) * scale_up
    reach = int((cumulative < 0.9 * total).sum()) + 1
    if reach > len(top):
        return None
    k = max(1, round(reach * scale_up))
    share = k / n
    if share >= 0.3:  # Gaussian errors: 90% of the squared error sits in the largest 44%
        return share, f"error spread over all elements (90% of it in {100 * share:.0f}% of them){note}"
    if k <= 10 or n <= 1000:
        return share, f"90% of the error in {k} of {n} elements{note}"
    return share, f"90% of the error in {100 * share:.0f}% of the elements{note}"


Rule = Callable[[_Diff], Found]
_SHAPE_RULES: tuple[Rule, ...] = (_nonfinite, _swapped, _transposed, _missing_reduction, _reshaped, _cropped)
_VALUE_RULES: tuple[Rule, ...] = (
    _nonfinite,
    _zero,
    _transposed,
    _swapped,
    _scaled,
    _blocks_swapped,
    _partial_where,
    _overwritten,
    _partial,
)
