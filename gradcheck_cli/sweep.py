"""Sweeps: the case itself, other seeds, and distinct sizes near the spec's own.

Distinct sizes make every axis tell apart from every other, so no transposed or
mis-reduced gradient can have the right shape by chance; a spec's ``constraints``
say which sizes its code can take.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import replace

from .case import Case
from .errors import SpecError
from .spec import Spec


def sweep_cases(case: Case, seeds: int = 3) -> list[Case]:
    """The case itself, other seeds, and sizes near the spec's own, all distinct.

    Distinct sizes make every axis tell apart from every other, so no
    transposed or mis-reduced gradient can have the right shape by chance.
    Size-1 dims stay 1 (they are usually structural). A spec's ``constraints``
    are met: when the distinct sizes break one, the sizes nearby that meet
    them all are used (as distinct as they allow).
    """
    spec = case.spec
    cases = [case]
    for shift in (1, 2):
        distinct: dict[str, int] = {}
        used: set[int] = set()
        for name, size in case.dims.items():
            new = size + shift if size > 1 else 1
            while new > 1 and new in used:
                new += 1
            used.add(new)
            distinct[name] = new
        dims: dict[str, int] | None = distinct
        if spec.constraints and spec.broken_constraint(distinct) is not None:
            dims = _constrained_sizes(spec, case.dims, shift)
        if dims is None or not _shapes_evaluate(spec, dims):
            continue
        cases.append(replace(case, dims=dims, seed=case.seed + shift))
    for s in range(1, seeds):
        cases.append(replace(case, seed=case.seed + 100 * s))
    return _unique(cases)


def _shapes_evaluate(spec: Spec, dims: Mapping[str, int]) -> bool:
    try:
        for t in spec.tensors.values():
            spec.shape_of(t, dims)
    except SpecError:
        return False
    return True


MAX_SIZE_CANDIDATES = 4096  # sizes tried for a sweep case of a constrained spec


def _constrained_sizes(spec: Spec, base: Mapping[str, int], shift: int) -> dict[str, int] | None:
    """Sizes from ``size + shift`` up, meeting every constraint: the most distinct, then the nearest."""
    free = [name for name, size in base.items() if size > 1]
    width = 4
    while width > 1 and width ** len(free) > MAX_SIZE_CANDIDATES:
        width -= 1
    best: tuple[tuple[int, int], dict[str, int]] | None = None
    for sizes in itertools.product(range(width), repeat=len(free)):
        dims = dict(base)
        dims.update({name: base[name] + shift + k for name, k in zip(free, sizes)})
        if spec.broken_constraint(dims) is not None:
            continue
        rank = (-len(set(dims[n] for n in free)), sum(sizes))
        if best is None or rank < best[0]:
            best = (rank, dims)
    return best[1] if best is not None else None


def _unique(cases: Sequence[Case]) -> list[Case]:
    seen, out = set(), []
    for c in cases:
        key = (tuple(sorted(c.dims.items())), c.seed)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out
