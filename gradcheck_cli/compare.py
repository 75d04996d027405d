"""The comparison of one tensor against its expected value.

:func:`judge` turns a case's :class:`~gradcheck_cli.tolerance.Tolerance` into the allowance one
tensor is judged by (in calibrated mode that needs PyTorch's own result); :func:`compare` measures
the errors and fills a :class:`~gradcheck_cli.result.Check`.

Both run in chunks of the flattened tensors, in float64, on the device the expected tensor is on:
a few passes over each chunk (a passing one: the difference, its largest value, the expected
values' sizes, a mask of the ~0 ones and the relative error, seven in all), a few chunk-sized
buffers (within one copy of the tensor) and no full-size temporary, and only scalars come back
from a GPU. (Past 400 lines, ``_scan_mismatches`` and ``compare`` past 60: one pass per chunk
keeping every running maximum together is what keeps the comparison linear.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .result import Check
from .tolerance import DEFAULT_TOLERANCES, NOISE_FACTOR, Judge, Tolerance, judge_of, tolerance_for

__all__ = [
    "DEFAULT_TOLERANCES",
    "all_close",
    "DTYPES",
    "Judge",
    "NotATensor",
    "Tolerance",
    "as_tensor",
    "compare",
    "describe_dtype",
    "excerpt",
    "imaginary_hint",
    "judge",
    "largest_abs",
    "tolerance_for",
]

DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
# Elements per chunk: float64 temporaries of 8 MiB on a CPU (smaller ones fit the cache better
# but mean more parallel regions, each a wait for every thread on a busy machine); a GPU wants
# fewer, larger launches (128 MiB per temporary).
CPU_CHUNK = 1 << 20
CUDA_CHUNK = 1 << 24
# The work buffers of a chunk take at most this many bytes per element (a failing chunk's float64
# values, errors, sizes and allowances, and two masks: 4 * 8 + 2 + the actual's upcast 8), and a
# chunk is never longer than keeps them within one copy of the compared tensor, nor shorter
# than MIN_CHUNK.
BUFFER_BYTES = 42
MIN_CHUNK = 1 << 16


class NotATensor(TypeError):
    """The checked code handed back something that is not a tensor or array."""


def differentiable(value: torch.Tensor) -> bool:
    """Whether autograd can follow a tensor: floating or complex, not integer or bool."""
    return value.is_floating_point() or value.is_complex()


def as_tensor(value: Any, *, gradient: bool = False) -> torch.Tensor:
    """A torch tensor from a tensor, a numpy array or (unless ``gradient``) a Python number.

    Raises :class:`NotATensor` for anything else: a list, a numpy array of objects or strings,
    and, for a gradient, a Python number (a gradient has its tensor's shape; a loss output may
    be a float).
    """
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        return tensor if tensor.layout == torch.strided else tensor.to_dense()
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        np = None  # type: ignore[assignment]
    if np is not None and isinstance(value, (np.ndarray, np.generic)):
        if value.dtype == object:
            raise NotATensor("a numpy array of Python objects")
        if value.dtype.kind not in "biufc":
            raise NotATensor(f"a numpy array of {value.dtype}")
        return torch.from_numpy(np.array(value, copy=True))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if gradient:
            raise NotATensor(f"a Python {type(value).__name__}")
        return torch.tensor(value, dtype=torch.float64)
    raise NotATensor(f"a {type(value).__name__}")


def describe_dtype(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def _flat(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    if t.layout != torch.strided:
        t = t.to_dense()
    return t.reshape(-1)  # a view when contiguous; else the one copy of this tensor


def _chunk(device: torch.device, numel: int, *tensors: torch.Tensor) -> int:
    """Elements per chunk: the device's size, within one copy of the smallest of ``tensors``."""
    top = CPU_CHUNK if device.type == "cpu" else CUDA_CHUNK
    itemsize = min((t.element_size() for t in tensors), default=8)
    return max(1, min(top, max(MIN_CHUNK, numel * itemsize // BUFFER_BYTES)))


def _unravel(flat: int, shape: tuple[int, ...]) -> list[int]:
    """The index of element ``flat`` of a C-contiguous tensor of ``shape``.

    By hand: ``torch.unravel_index`` imports sympy on first use (0.35-0.65 s).
    """
    index = []
    for size in reversed(shape):
        flat, i = divmod(flat, size)
        index.append(i)
    return index[::-1]


# -- the allowance ----------------------------------------------------------------------


def judge(tol: Tolerance | Judge, truth: torch.Tensor, reference: torch.Tensor | None = None) -> Judge:
    """The allowance ``truth``'s tensor is judged by.

    Absolute mode: the tolerance's atol and rtol. Calibrated mode: ``reference`` is PyTorch's own
    result in the checked dtype (``truth`` the float64 one, from the same inputs); with
    ``E = max|reference - truth|`` and ``T = max|truth|`` (over the elements where both are
    finite) the allowance, one number for the whole tensor, is ``ratio * E + atol + rtol * T``,
    or ``NOISE_FACTOR * ratio * E + atol + rtol * T`` when ``E >= T`` (see
    :data:`~gradcheck_cli.tolerance.NOISE_FACTOR`).
    """
    if isinstance(tol, Judge):
        return tol
    if not tol.calibrated:
        return Judge(tol.atol, tol.rtol)
    if reference is None:
        raise ValueError("a calibrated tolerance needs reference=: PyTorch's own result in the checked dtype")
    if tuple(reference.shape) != tuple(truth.shape):
        raise ValueError(
            f"reference shape {list(reference.shape)} differs from the truth's {list(truth.shape)}"
        )
    assert tol.ratio is not None
    reference_error, scale = _reference_error(truth, reference)
    floor = tol.atol + tol.rtol * scale
    noise = reference_error > 0 and reference_error >= scale
    multiple = tol.ratio * (NOISE_FACTOR if noise else 1.0)
    return Judge(
        atol=multiple * reference_error + floor,
        rtol=0.0,
        reference_error=reference_error,
        ratio=tol.ratio,
        floor=floor,
        scale=scale,
        noise=noise,
    )


def _reference_error(truth: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """(max|reference - truth|, max|truth|), a non-finite difference or truth counted as 0."""
    t, r = _flat(truth), _flat(reference)
    if r.is_complex():
        r = r.real
    device, numel = t.device, t.numel()
    step = _chunk(device, numel, t, r)
    bufs = _Buffers(min(step, numel), device)
    error = scale = 0.0
    for start in range(0, numel, step):
        stop = min(start + step, numel)
        n = stop - start
        tc = t[start:stop] if t.dtype == torch.float64 else bufs.get("t", n).copy_(t[start:stop])
        rc = bufs.get("r", n).copy_(r[start:stop])
        d = rc.sub_(tc)
        top, largest = largest_abs(d), largest_abs(tc)
        if not math.isfinite(top):
            top = float(d.abs_().nan_to_num_(0.0, 0.0, 0.0).max())
        if not math.isfinite(largest):
            largest = float(torch.abs(tc, out=rc).nan_to_num_(0.0, 0.0, 0.0).max())  # d is not needed now
        error, scale = max(error, top), max(scale, largest)
    return error, scale


def largest_abs(t: torch.Tensor) -> float:
    """max|t| of a real tensor in one pass and no temporary (NaN when an element is NaN, inf when
    one is infinite; 0 when it is empty)."""
    if not t.numel():
        return 0.0
    lo, hi = torch.aminmax(t.detach())
    low, high = (float(v) for v in torch.stack((lo, hi)).tolist()) if t.is_cuda else (float(lo), float(hi))
    if math.isnan(low) or math.isnan(high):
        return math.nan
    return abs(max(-low, high))  # abs: max(-0.0, 0.0) is -0.0


class _Buffers:
    """Chunk-sized work buffers, allocated on first use and reused for every chunk."""

    def __init__(self, width: int, device: torch.device) -> None:
        self.width, self.device = width, device
        self.made: dict[str, torch.Tensor] = {}

    def get(self, name: str, n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        buf = self.made.get(name)
        if buf is None:
            buf = self.made[name] = torch.empty(self.width, dtype=dtype, device=self.device)
        return buf[:n]


def all_close(actual: torch.Tensor, expected: torch.Tensor, tol: Tolerance | Judge) -> bool:
    """``tol.allclose(actual, expected).all()``, chunk by chunk: no full-size temporary, and it
    stops at the first chunk that is not close.

    The same elementwise rule (:meth:`Judge.allclose`), computed in the same dtype; a chunk
    whose largest difference is finite and within ``atol`` is close without the rest of it.
    """
    tol = judge_of(tol)
    if tuple(actual.shape) != tuple(expected.shape):  # broadcast: whole, as allclose does
        return bool(tol.allclose(actual, expected).all())
    a, e = _flat(actual), _flat(expected)
    numel = e.numel()
    step = _chunk(e.device, numel, a, e)
    for start in range(0, numel, step):
        ac, ec = a[start : start + step], e[start : start + step]
        diff = torch.sub(ac, ec)
        top = largest_abs(diff) if not diff.is_complex() else float(diff.abs().max())
        if math.isfinite(top) and top <= tol.atol:
            continue
        if not bool(tol.allclose(ac, ec).all()):
            return False
    return True


# -- the comparison ------------------------------------------------------------------------


@dataclass
class _Scan:
    """What one pass over the chunks measures."""

    max_abs: float = 0.0
    max_rel: float | None = None
    mismatched: int = 0
    worst: int | None = None  # flat index of the worst mismatched element
    worst_excess: float = float("-inf")
    imaginary: int = 0  # elements with a nonzero imaginary part
    max_imag: float = 0.0

    def relative(self, rel: float) -> None:
        self.max_rel = rel if self.max_rel is None else max(self.max_rel, rel)


def _scan(expected: torch.Tensor, actual: torch.Tensor, j: Judge) -> _Scan:
    e = _flat(expected)
    a = _flat(actual)
    imag = None
    if a.is_complex():
        a, imag = a.real, a.imag
    device, numel = e.device, e.numel()
    step = _chunk(device, numel, e, a)
    out = _Scan()
    # The chunks' float64 values, errors, sizes and allowances, and two masks: allocated on first
    # use, once. A passing chunk needs three of them (five when the values are not float64).
    bufs = _Buffers(min(step, numel), device)
    for start in range(0, numel, step):
        stop = min(start + step, numel)
        n = stop - start
        ec = e[start:stop] if e.dtype == torch.float64 else bufs.get("e", n).copy_(e[start:stop])
        ac = (
            a[start:stop]
            if a.dtype == torch.float64 and a.device == device
            else bufs.get("a", n).copy_(a[start:stop])
        )
        diff = torch.sub(ac, ec, out=bufs.get("diff", n))
        top = largest_abs(diff)  # NaN or inf when an element is not finite
        im = imag[start:stop].to(device) if imag is not None else None
        if math.isfinite(top) and top <= j.atol and im is None:
            # Every element is within its allowance (atol + rtol * |expected| >= atol): what is
            # left to measure is the largest relative error, in four passes.
            out.max_abs = max(out.max_abs, top)
            size = torch.abs(ec, out=bufs.get("size", n))
            zero = torch.le(size, j.near_zero(), out=bufs.get("zero", n, torch.bool))
            rel = largest_abs(diff.div_(size.masked_fill_(zero, math.inf)))  # |d / e| is |d| / |e|
            if rel > 0 or not bool(zero.all()):
                out.relative(rel)
            continue
        _scan_mismatches(out, start, diff.abs_(), ec, ac, im, j, bufs)
    return out


def _scan_mismatches(
    out: _Scan,
    start: int,
    diff: torch.Tensor,
    ec: torch.Tensor,
    ac: torch.Tensor,
    im: torch.Tensor | None,
    j: Judge,
    bufs: _Buffers,
) -> None:
    """One chunk with an element outside the allowance (or not finite, or imaginary): counts, the
    worst element and the relative error, from ``diff = |actual - expected|``."""
    n = diff.numel()
    near_zero = j.near_zero()
    size = torch.abs(ec, out=bufs.get("size", n))
    top = float(diff.max())  # NaN or inf when an element is not finite
    fin = None
    if not math.isfinite(top):
        fin = diff.isfinite()
        diff.masked_fill_(~fin, 0.0)  # the error columns measure the finite elements
        top = float(diff.max())
    out.max_abs = max(out.max_abs, top)
    allow: torch.Tensor | float = (
        torch.mul(size, j.rtol, out=bufs.get("allow", n)).add_(j.atol) if j.rtol else j.atol
    )
    ok = torch.le(diff, allow, out=bufs.get("ok", n, torch.bool))
    if fin is not None:
        # A non-finite value is close only to the same infinity, whatever the tolerance.
        ok &= fin
        ok |= ac == ec
    nonzero = None
    if im is not None:
        nonzero = im != 0
        count = int(nonzero.sum())
        if count:
            ok &= ~nonzero
            out.imaginary += count
            out.max_imag = max(out.max_imag, float(im.abs().max()))
    bad = n - int(ok.sum())
    out.mismatched += bad
    # Relative error where the expected value is not ~0 (the tolerance alone accepts 0 there);
    # a mismatched element where ~0 is expected is infinitely relative (never on a pass).
    zero = torch.le(size, near_zero, out=bufs.get("zero", n, torch.bool))
    if fin is not None:
        zero |= ~fin
    if bad and bool((zero & ~ok).any()):
        out.max_rel = math.inf
    if bad:
        # The worst mismatched element: a non-finite (or imaginary) one first, else the one
        # furthest outside its allowance. (The allowance is not needed after this.)
        excess = torch.sub(diff, allow, out=bufs.get("allow", n))
        if fin is not None:
            excess.masked_fill_(~fin, math.inf)
        if nonzero is not None:
            excess.masked_fill_(nonzero, math.inf)
        excess.masked_fill_(ok, -math.inf)
        i = int(excess.argmax())
        value = float(excess[i])
        if out.worst is None or value > out.worst_excess:
            out.worst, out.worst_excess = start + i, value
    if not bool(zero.all()):
        out.relative(float(diff.div_(size).masked_fill_(zero, 0.0).max()))  # diff is not used after this


def compare(
    name: str,
    kind: str,
    expected: torch.Tensor,
    actual: torch.Tensor,
    tol: Tolerance | Judge,
    expected_labels: list[str | None] | None = None,
    actual_labels: list[str | None] | None = None,
    *,
    reference: torch.Tensor | None = None,
) -> Check:
    """Compare ``actual`` with ``expected`` elementwise and fill a :class:`Check`.

    ``tol`` is a :class:`Judge` (see :func:`judge`), or a Tolerance to make one from: a calibrated
    one with ``reference``, PyTorch's own result in the checked dtype (``expected`` is then the
    float64 truth). Values are compared in float64 on ``expected``'s device.

    - An element is mismatched when ``|actual - expected|`` exceeds its allowance, when it is
      NaN or infinite (unless the expected value is the same infinity), whatever the tolerance,
      or when it has a nonzero imaginary part. The worst mismatched element is a non-finite or
      imaginary one if any, else the one furthest outside its allowance.
    - ``max_abs_err``: over the elements where both are finite (in calibrated mode, the error
      against the truth, also ``truth_error``; ``reference_error`` is PyTorch's own and
      ``error_ratio`` the one over the other, None when PyTorch's own error is 0).
    - ``max_rel_err``: over the elements whose expected value is not ~0, that is above the
      allowance's atol (a 0 there would pass); None when no element is; infinite when an
      element where ~0 is expected is mismatched (so never on a passing check).
    - A gradient with a nonzero imaginary part is an ``error`` whatever its real part, with a
      hint that says so.
    """
    check = Check(
        name=name,
        kind=kind,
        expected_shape=list(expected.shape),
        actual_shape=list(actual.shape),
        status="pass",
        numel=expected.numel(),
        expected_labels=expected_labels,
        actual_labels=actual_labels,
    )
    if tuple(expected.shape) != tuple(actual.shape):
        check.status = "shape_error"
        return check
    j = judge(tol, expected, reference)
    scan = _scan(expected, actual, j)
    check.max_abs_err = scan.max_abs
    check.max_rel_err = scan.max_rel
    check.mismatched = scan.mismatched
    if j.calibrated:
        assert j.reference_error is not None
        check.truth_error = scan.max_abs
        check.reference_error = j.reference_error
        check.error_ratio = scan.max_abs / j.reference_error if j.reference_error > 0 else None
    if scan.mismatched:
        check.status = "mismatch"
        assert scan.worst is not None
        check.worst_index = _unravel(scan.worst, tuple(expected.shape))
        at = tuple(check.worst_index)
        check.expected_value = float(_host(expected[at]))
        check.actual_value = float(_host(actual[at]))
    if scan.imaginary:
        check.status = "error"
        check.hint = imaginary_hint(name, kind, scan.imaginary, expected.numel(), scan.max_imag)
    return check


def imaginary_hint(name: str, kind: str, count: int, numel: int, largest: float) -> str:
    """What a row says of a complex value, for a real tensor, with ``count`` nonzero imaginary parts."""
    what = "output" if kind == "output" else "gradient"
    return (
        f"the {what} for {name} is complex with a nonzero imaginary part ({count} of {numel} elements,"
        f" largest |imag| {largest:.3g}): the {what} of a real tensor is real"
    )


def _host(t: torch.Tensor) -> torch.Tensor:
    """A small tensor's real values in float64 on the CPU."""
    t = t.detach()
    return (t.real if t.is_complex() else t).to("cpu", torch.float64)


def excerpt(expected: torch.Tensor, actual: torch.Tensor, index: list[int], radius: int = 2) -> str:
    """Expected beside actual around ``index`` (for --verbose).

    The window is up to three rows (the second-to-last axis) by ``2 * radius
    + 1`` columns (the last axis) of the slice that holds ``index``; other
    axes stay at ``index``. The element at ``index`` is marked with ``<``.
    Only the window is copied (to the CPU, in float64).
    """
    if expected.shape != actual.shape or len(index) != expected.dim() or expected.dim() == 0:
        if not (expected.numel() and actual.numel()):
            return ""
        first_e = float(_host(expected[(0,) * expected.dim()]))
        first_a = float(_host(actual[(0,) * actual.dim()]))
        return f"expected {first_e:.6g}  got {first_a:.6g}"
    lead = tuple(index[:-2])
    if expected.dim() == 1:
        e2, a2, row, col = expected[None], actual[None], 0, index[0]
    else:
        e2, a2, row, col = expected[lead], actual[lead], index[-2], index[-1]
    r0, r1 = max(0, row - 1), min(e2.shape[0], row + 2)
    c0, c1 = max(0, col - radius), min(e2.shape[1], col + radius + 1)
    e_win, a_win = _host(e2[r0:r1, c0:c1]), _host(a2[r0:r1, c0:c1])

    def label(r: int) -> str:
        head = [str(i) for i in lead] + ([str(r)] if expected.dim() > 1 else [])
        return "[" + ", ".join(head + [f"{c0}:{c1}"]) + "]"

    def cells(t: torch.Tensor, r: int) -> str:
        return "".join(
            f"{float(t[r - r0, c - c0]):>10.4g}" + ("<" if (r, c) == (row, col) else " ")
            for c in range(c0, c1)
        )

    labels = [label(r) for r in range(r0, r1)]
    width = max(len(s) for s in labels)
    block = 11 * (c1 - c0)
    lines = [" " * width + "expected".rjust(block) + " |" + "got".rjust(block)]
    for r, text in zip(range(r0, r1), labels):
        lines.append(f"{text.ljust(width)}{cells(e_win, r)} |{cells(a_win, r)}".rstrip())
    return "\n".join(lines)
