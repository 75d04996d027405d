"""Finite differences of a forward: the numerical vector-Jacobian product, element by element.

What is computed is what the analytic check compares: with a seeded upstream gradient ``g`` per
output, the gradient of ``L = sum over outputs of sum(forward(...) * g)`` with respect to each
checked tensor, by central differences::

    dL/dx_i ~ (L(x + h_i e_i) - L(x - h_i e_i)) / (2 h_i)

one pair of forwards per element (fewer, see *groups*), memory linear in the number of elements,
never a Jacobian.

Step size. ``h_i = c * max(|x_i|, 1)`` with ``c = eps ** (1/3)`` (6.1e-06 for float64). The
error of a central difference is ``h**2 |f'''| / 6`` (truncation) plus ``eps |f| / h``
(rounding); it is smallest at ``h = (3 eps |f| / |f'''|) ** (1/3)``, which for a function that
varies on the scale of its argument is ``eps ** (1/3)`` times that scale (Numerical Recipes,
section 5.7). ``max(|x_i|, 1)`` keeps the step from vanishing at ``x_i = 0``. The step actually
taken is ``fl(x + h) - x`` (exact in floating point), not the ``h`` asked for.

Rounding. ``L(x + h e_i) - L(x - h e_i)`` is formed output by output before the sum: outputs the
element does not reach come out bitwise equal and cancel exactly, so the rounding error is that of
the outputs the element moves, not of the whole sum. It is estimated as ``8 ulp`` of each of
those outputs (their own dtype's ulp: a float32 output limits the finite differences to float32),
added as independent errors add (root sum of squares), and reported per element in ``error``.
Under vmap, batched kernels round one row of a batch and another differently (a matmul's tail
tiles): every batch carries a second unperturbed row to measure by how much, outputs within 4
times that (at least ``64 ulp`` of their tensor's largest value) count as equal, and what moves
by no more than that is counted as error instead.

Kinks. The three points ``x - h, x, x + h`` also give the one-sided differences. On a smooth
function they differ by ``h |f''|``; across a kink (ReLU at 0, a max-pool tie, abs at 0) by a
share of the jump in slope, and for a single kink inside the stencil the central difference is
off by exactly half their difference. An element whose one-sided differences disagree by more than
``1e-4`` of its gradient's scale (plus rounding) is a suspect, and only suspects are evaluated
again with a quarter of the step: on a smooth function the one-sided gap shrinks fourfold with the
step and the central value barely moves; at a kink it does not. Suspects that fail this are
``unstable``: reported, with their count, and left out of the verdict. A kink so close to the edge
of the stencil that the gap stays under ``1e-4`` of the scale can go unnoticed; it costs at most
half that gap, and is as likely as an input landing within ``1e-4 h`` of the kink.

Error estimate (``error``): rounding, plus for a confirmed smooth suspect the change of the central
value between the two steps (the truncation error measured), plus for the other elements
``c * gap`` (``h**2 |f'''| / 6`` when ``f'''`` is ``6 |f''| / max(|x|, 1)``: a smooth model, since
their gap says nothing about ``f'''``). The comparison widens its tolerance by it.

Groups. Elements that reach disjoint sets of outputs (``weight[k, j]`` for different ``k`` of a
linear layer, the samples of a batch, an elementwise function's elements) can be moved together:
each output then changes because of one of them only, exactly as if that one had moved alone.
Which one is read off a code: member ``j`` of ``n`` gets a codeword of ``L`` letters with
``L // 2`` ones (``L`` the smallest with ``comb(L, L // 2) >= n``: 4 for 4 members, 10 for 143,
13 for 1000), and the group takes ``1 + L`` forwards: all members down, then forward ``p`` with
each member up where its codeword's letter ``p`` is 1 and down where it is 0. An output moved by
member ``j`` alone is then its down value except on the forwards that spell ``j``'s codeword,
where it is its up value. An output that takes two values besides down, or never leaves down
although it moved (it moves the same way up and down: abs at 0), or spells no codeword (a
max-pool tie moves up with either member and spells the union of their codewords: too many
ones), depends on more than one member. A group where few outputs do is halved and tried again;
one where many do is moved element by element.
The partitions tried are the whole tensor, then the fibres along each axis (largest groups
first), each on its first group; the first that holds is kept. A group of ``n`` costs ``1 + L``
forwards instead of ``2 n``: the 1000 x 1000 weight of a linear layer (groups along axis 0, one
per input column) takes 14,000 forwards instead of 2,000,000.

Speed. Chunks of perturbed forwards (groups' and single elements') are batched with
``torch.func.vmap`` (a pure torch forward), chunk sizes bounded by a memory budget; a forward vmap
cannot run (numpy, ``.item()``, data-dependent control flow, a non-tensor output) makes it fall
back to the plain loop once, for good. The loop perturbs one working copy in place and restores
it (a forward that writes into its inputs is caught and gets fresh copies). Each tensor runs its
first perturbed forwards both ways and keeps the faster: batching saves calls, but copies the
tensor for every perturbation (a 1000 x 1000 weight: the loop wins) and its kernels may be slower
than the plain ones.

Sampling. Above ``samples`` elements a tensor gets a seeded random subset of elements plus a few
random directions ``u`` over the whole tensor, with their directional derivatives ``<grad, u>``
computed the same way; the caller compares ``<analytic, u>`` against them
(:func:`comparison`).

Errors. A forward that raises on a perturbed input raises :class:`ForwardError` (the element, the
step, the original exception as ``__cause__``); outputs that are not finite at the unperturbed
input raise :class:`NumericalError`, and perturbed outputs that are not finite mark the element
``nonfinite`` (never compared).
"""

from __future__ import annotations

import functools
import math
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

EPS = float(torch.finfo(torch.float64).eps)
STEP = EPS ** (1 / 3)  # 6.06e-06: the central-difference step, relative to max(|x|, 1)
SECOND_STEP = 0.25  # the confirming step of a kink suspect, as a fraction of the first
NOISE_ULPS = 64.0  # outputs this many eps of their tensor's scale apart are equal under vmap
ROUNDING_ULPS = 8.0  # the rounding error of one output, in units of its dtype's eps
KINK_RATIO = 1e-4  # one-sided gap, relative to the gradient's scale, that makes a suspect
SCALE_FLOOR = 1e-2  # an element's gradient scale is at least this share of its tensor's largest
DEFAULT_SAMPLES = 4096  # elements per tensor above which a seeded subset is checked
DEFAULT_DIRECTIONS = 4  # random directions over the whole tensor when sampled
MEMORY_BUDGET = 256 * 2**20  # bytes for one chunk of batched perturbed forwards
INTERMEDIATES = 4  # a batched forward's memory per slot, in copies of its input and outputs
MAX_CHUNK = 512  # perturbed forwards in one vmap call
MIN_GROUP = 2  # a group of n costs 1 + its codewords' length (3 for 2, 4 for 3, 5 for 4 to 6, ...), not 2 n
MIXED_FEW = 0.25  # a group whose outputs mix members in no more than this share is halved, not given up
TRIAL = 64  # slots each tensor runs under vmap and in the loop, to time them

Forward = Callable[[Mapping[str, torch.Tensor]], Mapping[str, Any]]


class NumericalError(ValueError):
    """The finite differences cannot be taken: bad arguments, or a forward unfit for them."""


class ForwardError(RuntimeError):
    """The forward raised on a perturbed input. The original exception is ``__cause__``."""

    def __init__(self, tensor: str | None, index: tuple[int, ...] | None, step: float | None, what: str):
        self.tensor = tensor
        self.index = index
        self.step = step
        self.what = what  # "Type: message" of the original exception
        if tensor is None:
            where = "on the unperturbed input"
        elif index is None:
            where = f"with {tensor} perturbed along a random direction"
        else:
            at = ", ".join(str(i) for i in index)
            where = f"with {tensor}[{at}] perturbed by {step:+.3g}"
        super().__init__(f"the forward raised {what} {where}")


@dataclass(frozen=True)
class StepRule:
    """``h_i = relative * max(|x_i|, 1)``; suspects of a kink again at ``second * h_i``."""

    relative: float = STEP
    second: float = SECOND_STEP

    def steps(self, x: torch.Tensor) -> torch.Tensor:
        return self.relative * x.abs().clamp_min(1.0)

    def describe(self) -> str:
        return f"central differences, eps={self.relative:.2g} relative"


@dataclass
class TensorNumerical:
    """The finite differences of one checked tensor. Full-shape tensors are float64 / bool."""

    name: str
    grad: torch.Tensor  # the numerical gradient; NaN where not computed or not finite
    computed: torch.Tensor  # which elements were computed (all of them unless sampled)
    unstable: torch.Tensor  # computed elements at a kink: not to be compared
    nonfinite: torch.Tensor  # computed elements whose perturbed forward was not finite
    error: torch.Tensor  # estimated |numerical - true| per computed element; NaN elsewhere
    directions: torch.Tensor  # (k, *shape): random directions u over the whole tensor
    directional: torch.Tensor  # (k,): numerical <grad, u>
    directional_error: torch.Tensor  # (k,): its estimated error
    grouping: str  # how the elements were moved ("one by one", "groups along axis 0: ...")
    method: str  # "vmap", "loop" or "vmap+loop"

    @property
    def numel(self) -> int:
        return self.grad.numel()

    @property
    def elements(self) -> int:
        return int(self.computed.sum())

    @property
    def sampled(self) -> bool:
        return self.elements < self.numel

    @property
    def n_unstable(self) -> int:
        return int(self.unstable.sum())

    @property
    def n_nonfinite(self) -> int:
        return int(self.nonfinite.sum())

    def sampling(self) -> dict[str, int]:
        """``{"elements", "numel", "directions"}``, the shape of ``result.Check.sampled``."""
        return {"elements": self.elements, "numel": self.numel, "directions": len(self.directional)}

    def summary(self) -> str:
        text = f"{self.name}: "
        if self.sampled:
            text += f"{self.elements:,} of {self.numel:,} elements and {len(self.directional)} directions"
        else:
            text += f"all {self.numel:,} elements"
        if self.n_unstable:
            text += f", {self.n_unstable} unstable (at a kink)"
        if self.n_nonfinite:
            text += f", {self.n_nonfinite} not finite"
        return text


@dataclass
class Numerical:
    """The finite differences of every checked tensor, and what they cost."""

    tensors: dict[str, TensorNumerical]
    step: StepRule
    evaluations: int  # forward evaluations, batched ones counted one by one
    forward_calls: int  # calls of the forward that returned (one vmap call counts once)
    vectorized: bool  # whether any perturbed forward ran under vmap
    fallback: str | None  # why vmap was given up, if it was
    samples: int | None
    seed: int
    warnings: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> TensorNumerical:
        return self.tensors[name]

    def describe(self) -> str:
        """For a report header: ``central differences, eps=6.1e-06 relative``."""
        return self.step.describe()


@dataclass
class Comparison:
    """What to compare for one tensor: computed stable elements, and the directional checks."""

    name: str
    shape: tuple[int, ...]
    index: torch.Tensor  # (m,) flat indices of the compared elements
    expected: torch.Tensor  # (m,) numerical
    actual: torch.Tensor  # (m,) analytic
    error: torch.Tensor  # (m,) finite-difference error estimate
    direction_expected: torch.Tensor  # (k,) numerical <grad, u>
    direction_actual: torch.Tensor  # (k,) <analytic, u>
    direction_error: torch.Tensor  # (k,) its finite-difference error estimate
    direction_l1: torch.Tensor  # (k,) sum |u|
    direction_scale: torch.Tensor  # (k,) sum |u * analytic|
    unstable: int
    nonfinite: int
    not_computed: int

    def close(self, atol: float, rtol: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Per element ``|a - e| <= atol + rtol |e| + error``; per direction the same bound summed
        over the direction's elements (``atol sum|u| + rtol sum|u a| + error``), which a
        backward whose every element passes cannot fail."""
        elem = (self.actual - self.expected).abs() <= atol + rtol * self.expected.abs() + self.error
        bound = atol * self.direction_l1 + rtol * self.direction_scale + self.direction_error
        dirs = (self.direction_actual - self.direction_expected).abs() <= bound
        return elem, dirs

    def worst(self, atol: float, rtol: float) -> tuple[tuple[int, ...], float, float] | None:
        """The element furthest outside its tolerance: (index, numerical, analytic), or None."""
        elem, _ = self.close(atol, rtol)
        if bool(elem.all()):
            return None
        excess = (self.actual - self.expected).abs() - (atol + rtol * self.expected.abs() + self.error)
        excess = torch.where(torch.isfinite(excess), excess, torch.full_like(excess, math.inf))
        excess = torch.where(elem, torch.full_like(excess, -math.inf), excess)
        k = int(excess.argmax())
        flat = int(self.index[k])
        return _unravel(flat, self.shape), float(self.expected[k]), float(self.actual[k])


def comparison(analytic: torch.Tensor, numerical: TensorNumerical) -> Comparison:
    """The computed, stable, finite elements of ``numerical`` beside ``analytic``, and the
    directional derivatives beside ``<analytic, u>``. ``analytic`` must have the tensor's shape."""
    if tuple(analytic.shape) != tuple(numerical.grad.shape):
        raise ValueError(
            f"{numerical.name}: the analytic gradient has shape {list(analytic.shape)}, "
            f"the tensor {list(numerical.grad.shape)}"
        )
    if analytic.is_complex():  # before the cast, which would drop the imaginary part
        raise ValueError(f"{numerical.name}: the analytic gradient is complex (compare its real part)")
    a = analytic.detach().to("cpu", torch.float64)
    use = (numerical.computed & ~numerical.unstable & ~numerical.nonfinite).reshape(-1)
    index = use.nonzero().reshape(-1)
    flat = a.reshape(-1)
    k = len(numerical.directional)
    u = numerical.directions.reshape(k, flat.numel())
    return Comparison(
        name=numerical.name,
        shape=tuple(a.shape),
        index=index,
        expected=numerical.grad.reshape(-1)[index],
        actual=flat[index],
        error=numerical.error.reshape(-1)[index],
        direction_expected=numerical.directional,
        direction_actual=(u * flat).sum(1),
        direction_error=numerical.directional_error,
        direction_l1=u.abs().sum(1),
        direction_scale=(u * flat).abs().sum(1),
        unstable=numerical.n_unstable,
        nonfinite=numerical.n_nonfinite,
        not_computed=numerical.numel - numerical.elements,
    )


def numerical_vjp(
    forward: Forward,
    values: Mapping[str, torch.Tensor],
    grad_outs: Mapping[str, torch.Tensor],
    checked: Sequence[str],
    *,
    samples: int | None = DEFAULT_SAMPLES,
    seed: int = 0,
    vectorize: bool = True,
    directions: int = DEFAULT_DIRECTIONS,
    group: bool = True,
    memory_budget: int = MEMORY_BUDGET,
    step: StepRule | None = None,
) -> Numerical:
    """The numerical gradient of ``sum(forward(values)[k] * grad_outs[k])`` for each name in
    ``checked``.

    ``forward`` takes every input and parameter by name (float ones in float64; integer ones
    passed through, never perturbed) and returns the outputs by name (tensors, numpy arrays or
    numbers; those named in ``grad_outs`` are used). ``samples=None`` computes every element;
    otherwise a tensor with more elements gets a seeded subset of ``samples`` of them and
    ``directions`` random directions. ``vectorize=False`` never tries vmap; ``group=False`` moves
    every element on its own.
    """
    rule = step or StepRule()
    if samples is not None and samples < 1:
        raise NumericalError(f"samples must be a positive number of elements or None, not {samples}")
    names = list(dict.fromkeys(checked))
    base: dict[str, torch.Tensor] = {}
    for name, value in values.items():
        if not isinstance(value, torch.Tensor):
            raise NumericalError(f"{name}: a value must be a tensor, not a {type(value).__name__}")
        value = value.detach()
        if value.is_complex():
            raise NumericalError(f"{name}: complex tensors are not supported")
        base[name] = (value.to(torch.float64) if value.is_floating_point() else value).contiguous().clone()
    for name in names:
        if name not in base:
            raise NumericalError(f"{name}: not among the values ({', '.join(base) or 'none'})")
        if not base[name].is_floating_point():
            raise NumericalError(f"{name}: an integer tensor ({base[name].dtype}) has no gradient")
    if not grad_outs:
        raise NumericalError("no upstream gradient: grad_outs names no output")
    with torch.no_grad():
        engine = _Engine(forward, base, grad_outs, vectorize, memory_budget)
        tensors = {}
        for name in names:
            gen = torch.Generator().manual_seed(_seed_for(seed, name))
            tensors[name] = _Tensor(engine, name, rule, gen).run(samples, directions, group)
    return Numerical(
        tensors=tensors,
        step=rule,
        evaluations=engine.evaluations,
        forward_calls=engine.calls,
        vectorized=engine.vectorized,
        fallback=engine.fallback,
        samples=samples,
        seed=seed,
        warnings=engine.warnings,
    )


# --- running the forward ---------------------------------------------------------------------


class _NotBatchable(Exception):
    """Raised inside vmap for an output vmap cannot carry (numpy, a Python number)."""


@dataclass
class _Block:
    """Slots that write ``index`` (n,) of the flattened tensor: one per row of ``values`` (k, n);
    or, ``pairs``, two per element of ``index`` (k,): ``values[i, 0]`` then ``values[i, 1]``
    (up and down of single elements)."""

    index: torch.Tensor
    values: torch.Tensor
    pairs: bool = False

    @property
    def n(self) -> int:
        return 2 * len(self.index) if self.pairs else int(self.values.shape[0])


@dataclass
class _Slots:
    """Perturbed forwards of one tensor, block after block."""

    blocks: list[_Block]

    @property
    def n(self) -> int:
        return sum(b.n for b in self.blocks)

    @classmethod
    def rows(cls, index: torch.Tensor, values: torch.Tensor) -> _Slots:
        return cls([_Block(index, values)])

    @classmethod
    def pairs(cls, index: torch.Tensor, up: torch.Tensor, down: torch.Tensor) -> _Slots:
        return cls([_Block(index, torch.stack([up, down], dim=1), pairs=True)])

    @classmethod
    def cat(cls, parts: Sequence[_Slots]) -> _Slots:
        return cls([b for p in parts for b in p.blocks])


class _Engine:
    """Calls the forward: once plainly at the unperturbed input, then on chunks of perturbed
    copies of one tensor, under vmap or in a loop. Outputs come back flattened and concatenated
    in the order of ``grad_outs``."""

    def __init__(
        self,
        forward: Forward,
        values: dict[str, torch.Tensor],
        grad_outs: Mapping[str, torch.Tensor],
        vectorize: bool,
        memory_budget: int,
    ) -> None:
        self.forward = forward
        self.values = values
        self.out_names = list(grad_outs)
        self.out_shapes = [tuple(grad_outs[k].shape) for k in self.out_names]
        self.out_sizes = [math.prod(s) for s in self.out_shapes]
        self.single = len(self.out_names) == 1
        self.g = torch.cat(
            [grad_outs[k].detach().to("cpu", torch.float64).reshape(-1) for k in self.out_names]
        )
        self.relevant = (self.g != 0) & torch.isfinite(self.g)
        if not bool(torch.isfinite(self.g).all()):
            raise NumericalError("the upstream gradient is not finite")
        self.budget = memory_budget
        self.evaluations = 0
        self.calls = 0
        self.vmap_ok: bool | None = None if vectorize else False
        self.vectorized = False
        self.fallback: str | None = None
        self.warnings: list[str] = []
        self.copy_inputs = False  # give the forward fresh copies for every call (it writes into its inputs)
        self.pristine = {k: v.clone() for k, v in values.items()}
        self.buffers: dict[str, torch.Tensor] = {}  # per tensor, the batch of perturbed copies for vmap
        self.center, self.ulp = self._unperturbed()
        # How far apart two batched evaluations of the same output can round: batched kernels
        # round one row of a batch and another differently (a matmul's tail tiles), relative to
        # the output tensor's scale, not the element's (an element near 0 by cancellation rounds
        # like its terms).
        finite = torch.where(torch.isfinite(self.center), self.center.abs(), torch.zeros_like(self.center))
        scale = torch.cat([part.max().expand(len(part)) for part in self._split(finite) if len(part)])
        self.noise = NOISE_ULPS * self.ulp * torch.maximum(scale, finite)

    @property
    def m(self) -> int:
        return self.g.numel()

    def _call(
        self,
        values: Mapping[str, torch.Tensor],
        tensor: str | None = None,
        where: tuple[int, float] | None = None,
    ) -> Any:
        """The forward on ``values``; ``where``: the one element perturbed and its new value."""
        self.calls += 1
        self.evaluations += 1
        try:
            return self.forward(values)
        except Exception as exc:  # the user's forward: report where it raised
            index = step = None
            if tensor is not None and where is not None:
                x = self.values[tensor]
                index = _unravel(where[0], tuple(x.shape))
                step = where[1] - float(x.reshape(-1)[where[0]])
            raise ForwardError(tensor, index, step, f"{type(exc).__name__}: {exc}") from exc

    def _inputs(self, tensor: str | None = None, work: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The values to call the forward with (``tensor`` replaced by ``work``): the engine's own,
        or fresh copies once the forward was caught writing into its inputs."""
        if self.copy_inputs:
            values = {k: v.clone() for k, v in self.values.items()}
        else:
            values = dict(self.values)
        if tensor is not None and work is not None:
            values[tensor] = work
        return values

    def _written(self) -> bool:
        """Whether a forward wrote into the values it was given (they no longer equal a pristine
        copy); if so, restore them and give the forward fresh copies from now on."""
        if self.copy_inputs:
            return False
        changed = [k for k, v in self.values.items() if not _same(v, self.pristine[k])]
        for k in changed:
            self.values[k] = self.pristine[k].clone()
        if changed:
            self.copy_inputs = True
        return bool(changed)

    def _unperturbed(self) -> tuple[torch.Tensor, torch.Tensor]:
        first = self._call(self._inputs())
        self._written()
        flat, ulp = self._convert(first, check=True)
        bad = self.relevant & ~torch.isfinite(flat)
        if bool(bad.any()):
            names = [k for k, part in zip(self.out_names, self._split(bad)) if bool(part.any())]
            raise NumericalError(
                f"the forward's output {', '.join(names)} is not finite at the unperturbed input "
                f"({int(bad.sum())} elements): finite differences need finite outputs"
            )
        again, _ = self._convert(self._call(self._inputs()))
        same = (again == flat) | ~self.relevant
        if not bool(same.all()):
            raise NumericalError(
                "the forward gives different outputs for the same input (random numbers? dropout? "
                "state kept between calls?): finite differences need a deterministic forward"
            )
        return flat, ulp

    def _split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        sizes = [math.prod(s) for s in self.out_shapes]
        return list(torch.split(flat, sizes))

    def _convert(self, result: Any, check: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs as one float64 vector (copied), and each element's rounding unit."""
        if not isinstance(result, Mapping):
            raise NumericalError(
                f"the forward must return its outputs by name, not a {type(result).__name__}"
            )
        parts, ulps = [], []
        for name, shape in zip(self.out_names, self.out_shapes):
            if name not in result:
                raise NumericalError(
                    f"the forward returned no output {name!r} (it returned {', '.join(result)})"
                )
            t, eps = _as_float64(result[name], name)
            if check:
                if tuple(t.shape) != shape:
                    raise NumericalError(
                        f"output {name!r} has shape {list(t.shape)}, its upstream gradient {list(shape)}"
                    )
                if eps > EPS:
                    self.warnings.append(
                        f"output {name!r} is not float64: the finite differences are limited to its precision"
                    )
            elif tuple(t.shape) != shape:
                raise NumericalError(f"output {name!r} changed shape to {list(t.shape)} under a perturbation")
            parts.append(t.reshape(-1))
            ulps.append(torch.full((t.numel(),), eps, dtype=torch.float64))
        return torch.cat(parts), torch.cat(ulps)

    # chunks ------------------------------------------------------------------------------

    def chunk_size(self, numel: int) -> int:
        """Rows per vmap call within the memory budget (at least 4: two unperturbed rows, an
        element up and down)."""
        per_slot = 8 * (numel + self.m) * INTERMEDIATES
        return int(min(MAX_CHUNK, max(4, self.budget // max(per_slot, 1))))

    def loop_chunk(self) -> int:
        """Slots per chunk in the loop: their outputs are kept until the chunk is done."""
        return int(min(4 * MAX_CHUNK, max(8, self.budget // (4 * 8 * max(self.m, 1)))))

    def run(
        self, tensor: str, slots: _Slots, mode: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Outputs of each slot (slots.n, m), the unperturbed outputs they go with, and how far
        apart a batch rounds the same outputs (None: the loop, where equal inputs give bitwise
        equal outputs). vmap falls back to the loop for good if it fails."""
        if mode == "vmap" and self.vmap_ok is not False:
            out = self._run_vmap(tensor, slots)
            if out is not None:
                return out
        return self._run_loop(tensor, slots), self.center, None

    def _run_loop(self, tensor: str, slots: _Slots) -> torch.Tensor:
        """Each slot in turn, perturbing one working copy in place and restoring it after the
        call. A forward that writes into its input (caught by comparing the copy with the input
        after the chunk) gets a fresh copy for every call from then on."""
        x = self.values[tensor]
        original = x.view(-1)
        rows = torch.empty(slots.n, self.m, dtype=torch.float64)
        work = x.clone()
        flat = work.view(-1)
        r = 0
        for block in slots.blocks:
            if block.pairs:  # single elements: Python numbers, no tensor per slot
                saved = original[block.index].tolist()
                for i, (at, pair) in enumerate(zip(block.index.tolist(), block.values.tolist())):
                    for value in pair:
                        if self.copy_inputs:
                            work = x.clone()
                            flat = work.view(-1)
                        flat[at] = value
                        try:
                            self._fill(rows[r], self._call(self._inputs(tensor, work), tensor, (at, value)))
                        finally:
                            flat[at] = saved[i]
                        r += 1
                continue
            index, values = block.index.to(x.device), block.values.to(x.device)
            saved_t = original[index]
            one = len(block.index) == 1
            try:  # every slot of a block writes the same elements: restore them once, after it
                for k in range(block.n):
                    if self.copy_inputs:
                        work = x.clone()
                        flat = work.view(-1)
                    row = values[k]
                    flat.index_put_((index,), row)
                    where = (int(block.index[0]), float(row[0])) if one else None
                    self._fill(rows[r], self._call(self._inputs(tensor, work), tensor, where))
                    r += 1
            finally:
                flat.index_put_((index,), saved_t)
        if not self.copy_inputs and (not _same(work, x) or self._written()):
            self.copy_inputs = True  # the forward wrote into its inputs: these rows are not to be trusted
            self.calls -= slots.n
            self.evaluations -= slots.n
            return self._run_loop(tensor, slots)
        return rows

    def _fill(self, row: torch.Tensor, result: Any) -> None:
        """Write a perturbed forward's outputs into ``row`` (the fast path of ``_convert``)."""
        if type(result) is not dict and not isinstance(result, Mapping):
            raise NumericalError(
                f"the forward must return its outputs by name, not a {type(result).__name__}"
            )
        if self.single:  # one float64 output: no slicing
            value = result.get(self.out_names[0])
            if (
                type(value) is torch.Tensor
                and value.dtype == torch.float64
                and value.shape == self.out_shapes[0]
            ):
                row.copy_(value.view(-1) if value.is_contiguous() else value.reshape(-1))
                return
        start = 0
        for name, shape, size in zip(self.out_names, self.out_shapes, self.out_sizes):
            if name not in result:
                raise NumericalError(
                    f"the forward returned no output {name!r} (it returned {', '.join(result)})"
                )
            value = result[name]
            if isinstance(value, torch.Tensor) and not value.is_complex():
                if tuple(value.shape) != shape:
                    raise NumericalError(
                        f"output {name!r} changed shape to {list(value.shape)} under a perturbation"
                    )
                row[start : start + size].view(shape).copy_(value.detach())
            else:
                t, _ = _as_float64(value, name)
                if tuple(t.shape) != shape:
                    raise NumericalError(
                        f"output {name!r} changed shape to {list(t.shape)} under a perturbation"
                    )
                row[start : start + size] = t.reshape(-1)
            start += size

    def _run_vmap(self, tensor: str, slots: _Slots) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        x = self.values[tensor]
        # Rows 0 and last: the unperturbed input, the outputs the slots go with, and how far a
        # batched kernel rounds the same outputs apart in two rows of a batch.
        size = slots.n + 2
        buffer = self.buffers.get(tensor)
        if buffer is None or buffer.shape[0] < size:  # kept: fresh memory costs page faults
            rows_kept = self.chunk_size(x.numel())
            buffer = self.buffers[tensor] = torch.empty(rows_kept, x.numel(), dtype=x.dtype, device=x.device)
        batch = buffer[:size]
        batch.copy_(x.reshape(1, -1).expand(size, -1))
        r = 1
        for block in slots.blocks:
            index, new = block.index.to(x.device), block.values.to(x.device)
            if block.pairs:
                rows = r + torch.arange(block.n, device=x.device)
                batch[rows, index.repeat_interleave(2)] = new.reshape(-1)
            else:
                batch[r : r + block.n, index] = new
            r += block.n
        names, shapes, values, forward = self.out_names, self.out_shapes, self.values, self.forward

        def one(xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            vals = dict(values)
            vals[tensor] = xs
            result = forward(vals)
            outs = []
            for name in names:
                t = result[name]
                if not isinstance(t, torch.Tensor) or t.is_complex():
                    raise _NotBatchable(f"output {name!r} is a {type(t).__name__}")
                outs.append(t.to(torch.float64))
            return tuple(outs)

        try:
            outs = torch.func.vmap(one)(batch.reshape(size, *x.shape))
            if any(tuple(o.shape) != (size, *s) for o, s in zip(outs, shapes)):
                raise _NotBatchable("outputs of another shape under vmap")
            flat = torch.cat([o.reshape(size, -1) for o in outs], dim=1).to("cpu")
            center, spread = flat[0], (flat[-1] - flat[0]).abs()
            # Batched kernels round differently from the plain one (and row by row: a matmul's
            # tail tiles), never by more than rounding; a forward that means something else
            # under vmap differs by more.
            tol = 1e-9 * float(self.center.abs().max()) if self.m else 0.0
            close = ((center - self.center).abs() <= tol + 1e-9 * self.center.abs()) | ~self.relevant
            if not bool(close.all()):
                raise _NotBatchable("outputs under vmap differ from the plain forward's")
        except Exception as exc:  # vmap cannot run this forward: the loop can (or reports it)
            self.vmap_ok = False
            self.fallback = f"{type(exc).__name__}: {_first_line(exc)}"
            return None
        self.calls += 1
        self.evaluations += size
        self.vmap_ok = True
        self.vectorized = True
        return flat[1:-1], center, spread


# --- one tensor --------------------------------------------------------------------------------


@dataclass
class _Stencil:
    """Perturbed values and the steps actually taken, for the elements being computed."""

    up: torch.Tensor
    down: torch.Tensor
    step_up: torch.Tensor  # fl(x + h) - x, exact
    step_down: torch.Tensor  # x - fl(x - h), exact

    @classmethod
    def at(cls, x: torch.Tensor, h: torch.Tensor) -> _Stencil:
        up, down = x + h, x - h
        return cls(up, down, up - x, x - down)


@dataclass
class _Sums:
    """Per element: L(x + h) - L(x) and L(x) - L(x - h), formed output by output, and what
    bounds the rounding error of each: the squares of the moved outputs' rounding (they add up
    as independent errors do) and, linearly, what moved by no more than rounding and was left
    out."""

    up: torch.Tensor
    down: torch.Tensor
    rounding_sq: torch.Tensor
    left_out: torch.Tensor

    @classmethod
    def zeros(cls, n: int) -> _Sums:
        z = torch.zeros(n, dtype=torch.float64)
        return cls(z.clone(), z.clone(), z.clone(), z.clone())

    @property
    def rounding(self) -> torch.Tensor:
        return self.rounding_sq.sqrt() + self.left_out


@dataclass
class _Unit:
    """A group of elements (local positions) moved together, and its slots."""

    members: torch.Tensor
    slots: _Slots
    half: bool = False  # a half of a group that failed on a few outputs


class _Tensor:
    def __init__(self, engine: _Engine, name: str, rule: StepRule, gen: torch.Generator) -> None:
        self.engine = engine
        self.name = name
        self.rule = rule
        self.gen = gen
        self.x = engine.values[name]
        self.flat = self.x.reshape(-1).cpu()  # steps and perturbed values are made on the CPU
        self.shape = tuple(self.x.shape)
        self.modes: set[str] = set()
        self.tried = {"vmap": [0.0, 0], "loop": [0.0, 0]}  # seconds and slots run, by mode
        self.batchable = True  # False once a group needs more slots than vmap can batch

    def run(self, samples: int | None, n_directions: int, group: bool) -> TensorNumerical:
        n = self.flat.numel()
        if samples is None or n <= samples:
            elements = torch.arange(n)
        else:
            elements = torch.randperm(n, generator=self.gen)[:samples].sort().values
        x = self.flat[elements]
        h = self.rule.steps(x)
        stencil = _Stencil.at(x, h)
        sums = _Sums.zeros(len(elements))
        grouping = self._evaluate(elements, stencil, sums, group)

        fwd, bwd = sums.up / stencil.step_up, sums.down / stencil.step_down
        central = (sums.up + sums.down) / (stencil.step_up + stencil.step_down)
        noise_c = 2 * sums.rounding / (stencil.step_up + stencil.step_down)
        noise_1 = sums.rounding / torch.minimum(stencil.step_up, stencil.step_down)
        finite = torch.isfinite(fwd) & torch.isfinite(bwd) & torch.isfinite(central)
        top = float(central[finite].abs().max()) if bool(finite.any()) else 0.0
        scale = torch.maximum(torch.maximum(fwd.abs(), bwd.abs()), torch.tensor(SCALE_FLOOR * top))
        gap = fwd - bwd
        suspect = finite & (gap.abs() > 2 * noise_1 + KINK_RATIO * scale)
        error = noise_c + self.rule.relative * gap.abs()
        unstable = torch.zeros(len(elements), dtype=torch.bool)

        s = suspect.nonzero().reshape(-1)
        if len(s):
            near = _Stencil.at(x[s], h[s] * self.rule.second)
            again = _Sums.zeros(len(s))
            self._evaluate(elements[s], near, again, group=False)
            fwd2, bwd2 = again.up / near.step_up, again.down / near.step_down
            central2 = (again.up + again.down) / (near.step_up + near.step_down)
            noise_c2 = 2 * again.rounding / (near.step_up + near.step_down)
            noise_12 = again.rounding / torch.minimum(near.step_up, near.step_down)
            rho = (near.step_up + near.step_down) / (stencil.step_up[s] + stencil.step_down[s])
            gap1, gap2 = gap[s], fwd2 - bwd2
            shrinks = (gap2 - rho * gap1).abs() <= 0.25 * rho * gap1.abs() + 2 * noise_12 + 2 * rho * noise_1[
                s
            ]
            moved = (central2 - central[s]).abs()
            steady = moved <= KINK_RATIO * scale[s] + noise_c[s] + noise_c2
            smooth = shrinks & steady & torch.isfinite(central2)
            error[s] = torch.where(smooth, noise_c[s] + moved * 16 / 15, gap1.abs() / 2)
            unstable[s] = ~smooth

        full = torch.full((self.flat.numel(),), math.nan, dtype=torch.float64)
        mask = torch.zeros(self.flat.numel(), dtype=torch.bool)
        grad, err = full.clone(), full.clone()
        grad[elements] = torch.where(finite, central, torch.full_like(central, math.nan))
        err[elements] = torch.where(finite, error, torch.full_like(error, math.nan))
        computed, bad, kink = mask.clone(), mask.clone(), mask.clone()
        computed[elements] = True
        bad[elements] = ~finite
        kink[elements] = unstable & finite

        sampled = len(elements) < self.flat.numel()
        dirs, dvals, derrs = self._directions(n_directions if sampled else 0)
        self.engine.buffers.pop(self.name, None)
        return TensorNumerical(
            name=self.name,
            grad=grad.reshape(self.shape),
            computed=computed.reshape(self.shape),
            unstable=kink.reshape(self.shape),
            nonfinite=bad.reshape(self.shape),
            error=err.reshape(self.shape),
            directions=dirs,
            directional=dvals,
            directional_error=derrs,
            grouping=grouping,
            method="+".join(m for m in ("vmap", "loop") if m in self.modes) or "none",
        )

    # evaluation --------------------------------------------------------------------------

    def _evaluate(self, elements: torch.Tensor, stencil: _Stencil, sums: _Sums, group: bool) -> str:
        """Fill ``sums`` for ``elements``, moving them in groups where that holds; say how."""
        if len(elements) == 0:
            return "none"
        todo = torch.arange(len(elements))
        description = "one by one"
        if group:
            for label, groups in self._candidates(elements, todo):
                left, structural = self._groups(groups[:1], elements, stencil, sums)
                if structural:
                    continue  # the first group's outputs mix its members: not this way
                more, _ = self._groups(groups[1:], elements, stencil, sums, give_up=True)
                left += more
                mean = sum(len(g) for g in groups) / len(groups)
                size = f"{mean:,.0f}" if mean == int(mean) else f"{mean:,.1f} on average"
                plural = "s" if len(groups) > 1 else ""
                description = f"{label}: {len(groups):,} group{plural} of {size}"
                todo = torch.cat(left) if left else torch.empty(0, dtype=torch.long)
                if len(todo):
                    description += f", {len(todo):,} elements one by one"
                break
        self._singles(todo, elements, stencil, sums)
        return description

    def _candidates(
        self, elements: torch.Tensor, todo: torch.Tensor
    ) -> Iterator[tuple[str, list[torch.Tensor]]]:
        """Partitions of ``todo`` (positions in ``elements``) to try as groups, largest first: the
        whole tensor, then the fibres along each axis (the elements that differ in that index
        only)."""
        n = len(todo)
        flat = elements[todo]
        options: list[tuple[float, str, list[torch.Tensor]]] = []
        if n >= MIN_GROUP:
            options.append((float(n), "the whole tensor at once", [todo]))
        strides = [math.prod(self.shape[a + 1 :]) for a in range(len(self.shape))]
        for axis, (size, stride) in enumerate(zip(self.shape, strides)):
            if size < MIN_GROUP or len(self.shape) < 2 or n == 0:
                continue
            coord = (flat // stride) % size
            _, inverse, counts = torch.unique(flat - coord * stride, return_inverse=True, return_counts=True)
            mean = n / len(counts)
            if mean < MIN_GROUP:
                continue
            order = todo[torch.argsort(inverse, stable=True)]
            options.append((mean, f"groups along axis {axis}", list(torch.split(order, counts.tolist()))))
        options.sort(key=lambda o: -o[0])
        for _, label, groups in options:
            yield label, groups

    def _units(self, groups: list[torch.Tensor], elements: torch.Tensor, stencil: _Stencil) -> list[_Unit]:
        """Slots for moving each group's members together: all down, then one per letter of their
        codewords, each member up where its codeword has a 1 and down where it has a 0 (up and
        down for a single element). Groups of one size are built together."""
        units: list[_Unit | None] = [None] * len(groups)
        by_size: dict[int, list[int]] = {}
        for i, group in enumerate(groups):
            by_size.setdefault(len(group), []).append(i)
        for n, which in by_size.items():
            members = torch.stack([groups[i] for i in which])  # (U, n)
            up, down = stencil.up[members], stencil.down[members]
            if n == 1:
                rows = torch.stack([up, down], dim=1)  # (U, 2, 1)
            else:  # all down, then one slot per letter of the codewords
                code = _codebook(n)[0]
                letters = torch.where(code.T[None], up[:, None], down[:, None])  # (U, L, n)
                rows = torch.cat([down[:, None], letters], dim=1)
            index = elements[members]
            for j, i in enumerate(which):
                units[i] = _Unit(members[j], _Slots.rows(index[j], rows[j]))
        return [u for u in units if u is not None]

    def _groups(
        self,
        groups: list[torch.Tensor],
        elements: torch.Tensor,
        stencil: _Stencil,
        sums: _Sums,
        give_up: bool = False,
    ) -> tuple[list[torch.Tensor], int]:
        """Move each group together and add what each member moved to ``sums``. Returns the
        members left to be moved one by one, and how many of ``groups`` failed structurally (more
        than a few of their outputs mix members; nothing of theirs is added then).

        A group that fails on a few of its outputs (a tie, an abs at 0) is halved and tried again;
        one that fails structurally, or is too small to halve, is left. ``give_up``: once 8 groups
        were tried and most failed structurally, leave the rest untried.

        Chunks of groups run under vmap or in the loop like single elements; a group too large
        for a chunk runs in the loop.
        """
        queue = deque(self._units(groups, elements, stencil))
        left: list[torch.Tensor] = []
        tried = structural = 0
        while queue:
            if give_up and tried >= 8 and structural * 2 > tried:
                left.extend(u.members for u in queue)
                break
            room = self._capacity()
            chunk = [queue.popleft()]
            used = chunk[0].slots.n
            if used + 2 > self.engine.chunk_size(self.flat.numel()):
                self.batchable = False  # a group this large runs in the loop: so do the rest
                room = self._capacity()
            while queue and used + queue[0].slots.n <= room:
                used += queue[0].slots.n
                chunk.append(queue.popleft())
            try:
                rows, center, spread = self._run(_Slots.cat([u.slots for u in chunk]))
            except ForwardError:  # one of them raised: one by one, the element will be named
                left.extend(u.members for u in chunk)
                continue
            for unit, mixed in zip(chunk, self._add(chunk, rows, center, spread, sums)):
                tried += 1
                if mixed is None:
                    continue
                if mixed <= MIXED_FEW and len(unit.members) >= 2 * MIN_GROUP:
                    half = len(unit.members) // 2
                    for part in self._units([unit.members[:half], unit.members[half:]], elements, stencil):
                        part.half = True
                        queue.append(part)
                else:
                    left.append(unit.members)
                    structural += mixed > MIXED_FEW and not unit.half
        return left, structural

    def _singles(self, members: torch.Tensor, elements: torch.Tensor, stencil: _Stencil, sums: _Sums) -> None:
        """Move each element on its own, in chunks under vmap or in the loop."""
        start = 0
        while start < len(members):
            chunk = members[start : start + max(1, self._capacity() // 2)]
            start += len(chunk)
            slots = _Slots.pairs(elements[chunk], stencil.up[chunk], stencil.down[chunk])
            rows, center, spread = self._run(slots)
            self._add_singles(chunk, rows, center, spread, sums)

    def _tolerance(self, spread: torch.Tensor | None) -> torch.Tensor | None:
        """How far apart outputs can be and count as equal: None (bitwise) in the loop; under
        vmap ``NOISE_ULPS`` of the output tensor's scale, or 4 times the spread measured in the
        batch if that is more."""
        if spread is None:
            return None
        return torch.maximum(self.engine.noise, 4 * spread)

    def _mode(self) -> str:
        """Where the next chunk runs: ``TRIAL`` slots under vmap (where the forward allows it) and
        as many in the loop, then the faster of the two (batching saves calls, but copies the
        tensor for every slot of a batch, and its kernels may be slower than the plain ones)."""
        if self.engine.vmap_ok is False or not self.batchable:
            return "loop"
        for mode in ("vmap", "loop"):
            if self.tried[mode][1] < TRIAL:
                return mode
        return min(("vmap", "loop"), key=lambda m: self.tried[m][0] / self.tried[m][1])

    def _capacity(self) -> int:
        """Slots in the next chunk: as many as vmap can batch, or (the loop chosen) as many as the
        memory budget keeps outputs of."""
        batched = self.engine.chunk_size(self.flat.numel()) - 2
        mode = self._mode()
        if self.batchable and min(self.tried["vmap"][1], self.tried["loop"][1]) < TRIAL:
            return min(batched, TRIAL)  # a trial: as long as the other
        if mode == "vmap":
            return batched
        return max(batched, self.engine.loop_chunk())

    def _run(self, slots: _Slots) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Run a chunk of slots: their outputs, the unperturbed outputs, and how far apart the
        batch rounds equal outputs (None: the loop, where equal inputs give bitwise equal
        outputs). A chunk too large for vmap runs in the loop. Each mode's time is kept."""
        mode = self._mode()
        if slots.n + 2 > self.engine.chunk_size(self.flat.numel()):
            mode = "loop"
        start = time.perf_counter()
        rows, center, spread = self.engine.run(self.name, slots, mode)
        ran = "loop" if spread is None else "vmap"
        self.modes.add(ran)
        self.tried[ran][0] += time.perf_counter() - start
        self.tried[ran][1] += slots.n
        return rows, center, spread

    def _add(
        self,
        units: list[_Unit],
        rows: torch.Tensor,
        center: torch.Tensor,
        spread: torch.Tensor | None,
        sums: _Sums,
    ) -> list[float | None]:
        """Add what each member of each unit moved to ``sums`` (``rows``: the units' slots one
        after another). Per unit: None if done, else the share of its moved outputs that mix
        members (nothing of it is added then). Units of one size are decoded together."""
        engine = self.engine
        starts, r = [], 0
        for unit in units:
            starts.append(r)
            r += unit.slots.n
        result: list[float | None] = [None] * len(units)
        by_size: dict[int, list[int]] = {}
        for i, unit in enumerate(units):
            by_size.setdefault(len(unit.members), []).append(i)
        for n, which in by_size.items():
            k = units[which[0]].slots.n
            if len(which) == len(units):  # one size, one after another: a view, no copy
                batch = rows.view(len(units), k, -1)
            else:
                batch = rows[torch.tensor([starts[i] for i in which])[:, None] + torch.arange(k)]
            decoded = _owners(center, batch, engine.g, self._tolerance(spread), n, engine.ulp)
            members = torch.stack([units[i].members for i in which])
            ok = decoded.mixed == 0
            for i, share in zip(which, decoded.mixed.tolist()):
                if share:
                    result[i] = share
            if all(result[i] is not None for i in which):
                continue
            owner, up, down = decoded.owner[ok], decoded.up[ok], decoded.down[ok]
            members = members[ok]
            sel = owner >= 0
            target = members.gather(1, owner.clamp_min(0))[sel]
            g = engine.g.expand_as(up)[sel]
            sums.up.index_add_(0, target, (g * (up - center)[sel]))
            sums.down.index_add_(0, target, (g * (center - down)[sel]))
            rounding = ROUNDING_ULPS * engine.ulp * (up.abs() + center.abs() + down.abs())
            if spread is not None:  # up and center come from two rows of a batch
                rounding = rounding + spread
            sums.rounding_sq.index_add_(0, target, (rounding[sel] * g) ** 2)
            # What moved by no more than rounding is left out, and counted as error (of every member).
            each = members.reshape(-1)
            left = decoded.rest[ok]
            sums.left_out.index_add_(0, each, left[:, None].expand_as(members).reshape(-1))
        return result

    def _add_singles(
        self,
        members: torch.Tensor,
        rows: torch.Tensor,
        center: torch.Tensor,
        spread: torch.Tensor | None,
        sums: _Sums,
    ) -> None:
        """``_add`` for elements moved one by one: rows up, down, up, down, ..."""
        engine = self.engine
        up, down = rows[0::2], rows[1::2]
        exact = spread is None
        tau = self._tolerance(spread)
        tau = torch.zeros_like(center) if tau is None else tau
        moved = ((up - center).abs() > tau) | ((down - center).abs() > tau)
        moved |= ~torch.isfinite(up) | ~torch.isfinite(down)
        relevant = engine.relevant
        changed = moved & relevant
        zero = torch.zeros((), dtype=torch.float64)
        d_up, d_down = engine.g * (up - center), engine.g * (center - down)
        sums.up[members] += torch.where(changed, d_up, zero).sum(1)
        sums.down[members] += torch.where(changed, d_down, zero).sum(1)
        size = up.abs() + center.abs() + down.abs()
        r2 = ((ROUNDING_ULPS * engine.ulp * size + (0 if spread is None else spread)) * engine.g) ** 2
        rest = relevant & ~moved
        if not exact:  # what moved by no more than rounding is left out, counted as error
            counted = changed | (rest & ((up != center) | (down != center)))
            rest_up = torch.where(rest, d_up, zero).sum(1).abs()
            rest_down = torch.where(rest, d_down, zero).sum(1).abs()
            sums.left_out[members] += torch.maximum(rest_up, rest_down)
        else:
            counted = changed
        sums.rounding_sq[members] += torch.where(counted, r2, zero).sum(1)

    # directions --------------------------------------------------------------------------

    def _directions(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``k`` random directions u (scaled by max(|x|, 1)) and central differences of L along
        them, with their errors: rounding, plus the change from a quarter of the step where the
        one-sided gap shrinks with the step (smooth), half the gap where it does not (a kink
        crossed)."""
        empty = torch.empty(0, dtype=torch.float64)
        if k == 0:
            return torch.empty((0, *self.shape), dtype=torch.float64), empty, empty
        n = self.flat.numel()
        dirs, vals, errs = [], [], []
        for _ in range(k):
            v = torch.randn(n, generator=self.gen, dtype=torch.float64)
            u, value, gap, rounding = self._along(v, self.rule.relative)
            _, value2, gap2, rounding2 = self._along(v, self.rule.relative * self.rule.second)
            rho = self.rule.second
            shrinks = abs(gap2 - rho * gap) <= 0.25 * rho * abs(gap) + 2 * (rounding2 + rho * rounding)
            dirs.append(u)
            vals.append(value)
            change = abs(value - value2) * 16 / 15
            errs.append(rounding + (change + rounding2 if shrinks else abs(gap) / 2))
        return (
            torch.stack(dirs).reshape(k, *self.shape),
            torch.tensor(vals, dtype=torch.float64),
            torch.tensor(errs, dtype=torch.float64),
        )

    def _along(self, v: torch.Tensor, c: float) -> tuple[torch.Tensor, float, float, float]:
        """Central and one-sided differences of L along ``v * max(|x|, 1)`` with step ``c``: the
        direction taken (from the steps actually taken), the directional derivative, the gap of
        the one-sided ones, and its rounding error."""
        st = _Stencil.at(self.flat, c * self.flat.abs().clamp_min(1.0) * v)
        rows, center, spread = self._run(_Slots.rows(torch.arange(len(v)), torch.stack([st.up, st.down])))
        rel, g, ulp = self.engine.relevant, self.engine.g, self.engine.ulp
        up, down = rows[0], rows[1]
        d_up = float((g * (up - center))[rel].sum())
        d_down = float((g * (center - down))[rel].sum())
        size = ROUNDING_ULPS * ulp[rel] * (up.abs() + center.abs() + down.abs())[rel]
        if spread is not None:  # up, down and center from three rows of a batch
            size = size + 2 * spread[rel]
        rounding = float((g[rel] * size).norm()) / c
        u = (st.step_up + st.step_down) / (2 * c)
        return u, (d_up + d_down) / (2 * c), (d_up - d_down) / c, rounding


@dataclass
class _Decoded:
    """Per unit of a batch: the member that moved each output (-1: none) and the output with
    that member up and down; the share of moved outputs that mix members (0: none do); and what
    moved by no more than rounding (a bound on its sum, left out)."""

    owner: torch.Tensor  # (U, m)
    up: torch.Tensor  # (U, m)
    down: torch.Tensor  # (U, m)
    mixed: torch.Tensor  # (U,)
    rest: torch.Tensor  # (U,)


@functools.cache
def _codebook(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codewords for ``n`` members: ``(n, L)`` bool, each with ``w = L // 2`` ones, ``L`` the
    smallest length with ``comb(L, w) >= n``; their keys (``sum 2**p`` over the ones) sorted, and
    the member of each sorted key. Codewords are the first ``n`` ``w``-subsets, unranked in the
    combinatorial number system."""
    length = 2
    while math.comb(length, length // 2) < n:
        length += 1
    rank = torch.arange(n)
    code = torch.zeros(n, length, dtype=torch.bool)
    for k in range(length // 2, 0, -1):
        table = torch.tensor([math.comb(c, k) for c in range(length)])
        c = torch.searchsorted(table, rank, right=True) - 1  # the largest c with comb(c, k) <= rank
        code[torch.arange(n), c] = True
        rank = rank - table[c]
    keys = (code.long() << torch.arange(length)).sum(1)
    order = torch.argsort(keys)
    return code, keys[order], order


def _owners(
    center: torch.Tensor,
    rows: torch.Tensor,
    g: torch.Tensor,
    noise: torch.Tensor | None,
    n: int,
    ulp: torch.Tensor,
) -> _Decoded:
    """Decode a batch of units of ``n`` members, ``rows`` (U, slots, m): for ``n == 1`` up and down;
    else all down, then one slot per letter of the members' codewords (``_codebook``).

    An output moved by one member only is its down value where the owner's codeword has a 0, and
    one other value, its up value, where it has a 1: the slots where it is not down spell the
    owner. An output that takes two values besides down, or is never other than down although it
    moved (it moves the same way up and down: abs at 0), or spells no codeword (two members
    acting as one: a max-pool tie moves up with either, and spells the union of their codewords,
    too many ones), mixes members.

    Outputs are equal when bitwise equal (``noise=None``: the loop), or within ``noise`` (vmap:
    its batched kernels round one row and another differently). A member that moves an output by
    no more than ``noise`` is not seen: its owner's rounding counts it (``ulp``: each output's
    rounding unit).
    """
    tau = torch.zeros_like(center) if noise is None else noise

    def near(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a == b if noise is None else (a - b).abs() <= tau

    # Slot by slot: temporaries of one slot's size, not of the batch's.
    slots = rows.shape[1]
    relevant = g != 0
    zero = torch.zeros((), dtype=torch.float64)
    if n == 1:
        up, down = rows[:, 0], rows[:, 1]
        moved = ~(near(up, center) & near(down, center))  # NaN is never near: it moved
        changed = moved & relevant
        owner = torch.where(changed, 0, -1)
        none = torch.zeros(len(rows), dtype=torch.float64)
    else:
        down = rows[:, 0]
        still = near(down, center)  # NaN is never near: it moved
        spell = torch.zeros(down.shape, dtype=torch.long)  # the letters where the output is not down
        weight = torch.zeros(down.shape, dtype=torch.long)
        for p in range(1, slots):
            row = rows[:, p]
            still &= near(row, center)
            other = ~near(row, down)
            spell |= other.long() << (p - 1)
            weight += other
        # The up value: at the lowest letter that is not down (if none, down itself).
        lowest = (spell & -spell).clamp_min(1).double().log2().round().long()
        up = rows.gather(1, (lowest + 1).clamp_max(slots - 1)[:, None]).squeeze(1)
        moved = ~still
        changed = moved & relevant
    if noise is None:  # bitwise: what did not move did not move at all
        rest_sum = torch.zeros(len(rows), dtype=torch.float64)
    else:
        shift = (rows - center).abs().amax(1)
        bound = shift + ROUNDING_ULPS * ulp * center.abs()  # what moved, and its own rounding
        rest_sum = torch.where(relevant & ~moved, g.abs() * bound, zero).sum(1)
    if n == 1:
        return _Decoded(owner, up, down, none, rest_sum)
    _, keys, order = _codebook(n)
    two = (up - down).abs() > 2 * tau  # NaN: not two
    for p in range(1, slots):
        row = rows[:, p]
        two &= near(row, down) | near(row, up)
    at = torch.searchsorted(keys, spell.reshape(-1)).clamp_max(n - 1).reshape(spell.shape)
    ok = two & (weight == (slots - 1) // 2) & (keys[at] == spell)
    mixed = changed & ~ok
    share = mixed.sum(1).double() / changed.sum(1).clamp_min(1).double()
    return _Decoded(torch.where(changed, order[at], -1), up, down, share, rest_sum)


def _unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    index = []
    for size in reversed(shape):
        index.append(flat % size)
        flat //= size
    return tuple(reversed(index))


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal element for element, NaN equal to NaN."""
    if a.is_floating_point():
        return bool(((a == b) | (a.isnan() & b.isnan())).all())
    return torch.equal(a, b)


def _seed_for(seed: int, name: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _as_float64(value: Any, name: str) -> tuple[torch.Tensor, float]:
    """A float64 CPU copy of an output, and the rounding unit of its own dtype."""
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise NumericalError(f"output {name!r} is complex")
        eps = torch.finfo(value.dtype).eps if value.is_floating_point() else EPS
        return value.detach().to("cpu", torch.float64, copy=True), max(float(eps), EPS)
    import numpy as np

    if isinstance(value, (np.ndarray, np.generic)):
        if np.iscomplexobj(value) or value.dtype == object:
            raise NumericalError(f"output {name!r} is a numpy array of {value.dtype}")
        eps = float(np.finfo(value.dtype).eps) if np.issubdtype(value.dtype, np.floating) else EPS
        return torch.from_numpy(np.array(value, dtype=np.float64)), max(eps, EPS)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64), EPS
    raise NumericalError(f"output {name!r} is a {type(value).__name__}, not a tensor, array or number")
