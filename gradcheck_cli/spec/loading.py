"""Reading spec files: YAML once and safely, the line of every key, finding specs in folders."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import SpecError
from .files import read_spec_text
from .implementation import implementation
from .model import Implementation, Reference, Spec
from .sections import (
    TOP_KEYS,
    constraints,
    dims,
    double,
    expectation,
    formulas,
    header,
    options,
    outputs,
    reference,
    reference_grads,
    timeout,
    tolerance,
)
from .tensors import numeric_names, tensors
from .where import Where

MAX_NODES = 100_000  # a spec is a page of YAML; this many nodes is an alias bomb or not a spec


def _line_map(
    node: yaml.Node,
    path: Path | None,
    prefix: str = "",
    lines: dict[str, int] | None = None,
    seen_nodes: set[int] | None = None,
) -> dict[str, int]:
    """Map each key path ("implementation.backward", "inputs.x") to its 1-based line.

    A key given twice in one mapping is an error (YAML would keep the last silently).
    A node reached again through an alias is not walked again, so aliases of aliases
    (a "billion laughs") cost their size, not their expansion.
    """
    lines = {} if lines is None else lines
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:
        return lines
    seen_nodes.add(id(node))
    if len(seen_nodes) > MAX_NODES:
        raise SpecError(f"more than {MAX_NODES} YAML nodes: not a spec", path)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            where = f"{prefix}.{key}" if prefix else key
            line = key_node.start_mark.line + 1
            if key in seen:
                raise SpecError(
                    f"{key!r} is given twice (the first at line {lines[where]})", path, line, where
                )
            seen.add(key)
            lines[where] = line
            _line_map(value_node, path, where, lines, seen_nodes)
    return lines


def parse_yaml(text: str, path: Path | None = None) -> tuple[Any, dict[str, int]]:
    """Read YAML once, safely; return the data and the line of every key."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"invalid YAML: {problem}", path, mark.line + 1 if mark else None) from None
    finally:
        loader.dispose()
    return data, (_line_map(node, path) if node is not None else {})


def load_spec(path: str | Path) -> Spec:
    """Load and validate one spec file."""
    path = Path(path)
    data, lines = parse_yaml(read_spec_text(path), path)
    return build_spec(data, path=path, lines=lines)


def numerical_ready(ref: Reference, impl: Implementation, top: Mapping[str, Any], at: Where) -> Reference:
    """Without a reference the hand-written forward is differentiated numerically: it must exist."""
    if not ref.numerical:
        return ref
    if "reference_grads" in top:
        raise at.fail(
            "reference_grads", "reference_grads go with a reference (its outputs are the forward's)"
        )
    if impl.forward is None and impl.autograd_function is None:
        key = "reference" if "reference" in top else "implementation"
        raise at.fail(
            key,
            "with no reference, the expected gradients are finite differences of the hand-written"
            " forward: add implementation.forward (or a reference)",
        )
    return ref


def build_spec(data: Any, path: Path | None = None, lines: Mapping[str, int] | None = None) -> Spec:
    """Validate raw spec data (as read from YAML) into a :class:`Spec`."""
    at = Where(path, dict(lines or {}))
    top = at.mapping(data, "", TOP_KEYS)
    for required in ("name", "implementation"):
        if required not in top:
            raise at.fail("", f"missing required key {required!r}")
    name, description = header(top, at)
    known_dims = dims(top.get("dims"), at)
    opts = options(top.get("options"), known_dims, at)
    inputs, params = tensors(top, known_dims, opts, at)
    all_tensors = {**inputs, **params}
    outs = outputs(top.get("outputs"), all_tensors, at)
    names = set(all_tensors) | set(known_dims) | set(opts)
    impl = implementation(
        top["implementation"], all_tensors, names, outs, at, numeric_names(known_dims, opts)
    )
    checked = [n for n, t in all_tensors.items() if t.grad]
    spec = Spec(
        name=name,
        description=description,
        dims=known_dims,
        options=opts,
        inputs=inputs,
        params=params,
        outputs=outs,
        reference=numerical_ready(reference(top.get("reference"), names, at), impl, top, at),
        implementation=impl,
        tolerance=tolerance(top.get("tolerance"), at),
        formulas=formulas(top.get("formulas"), all_tensors, outs, at),
        constraints=constraints(top.get("constraints"), known_dims, opts, at),
        reference_grads=reference_grads(top.get("reference_grads"), checked, names, outs, at),
        double=double(top.get("double"), impl.convention, at),
        xfail=expectation(top.get("xfail"), "xfail", at),
        skip=expectation(top.get("skip"), "skip", at),
        timeout=timeout(top.get("timeout"), at),
        path=path,
        lines=dict(lines or {}),
    )
    spec.check_sizes(spec.dims)  # with its own sizes every tensor can be drawn: no 0, no 10**12
    return spec
