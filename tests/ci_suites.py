"""Small spec suites for the CI tests: one right layer and each way a spec can go wrong.

Every spec is the same dense layer ``out = x @ w + b`` whose hand-written
backward is right, or wrong in one known way, or never gets to run.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

SPEC = """\
name: {name}
description: out = x @ w + b
dims: {{batch: 6, in: 3, out: 2}}
inputs:
  x: [batch, in]
params:
  w: [in, out]
  b: [out]
reference: "x @ w + b"
implementation:
  file: {name}.py
  backward: "backward(grad_out, x, w, b) -> x, w, b"
"""

BACKWARDS = {
    # right: b was broadcast over the batch, so its gradient is summed over it
    "dense": "return grad_out @ w.T, x.T @ grad_out, grad_out.sum(0)",
    # wrong shape: the bias gradient is never summed over the batch
    "bias_not_summed": "return grad_out @ w.T, x.T @ grad_out, grad_out",
    # wrong values, right shape: the weight gradient is twice what it should be
    "weight_doubled": "return grad_out @ w.T, 2 * (x.T @ grad_out), grad_out.sum(0)",
    # the checked code raises
    "raises": "raise ZeroDivisionError('division by zero in my backward')",
    # the checked code raises with text no report format may pass through raw
    "raises_markup": "raise ValueError('a | b <tag> & \\x1b[31mred\\x00 ```')",
    # the checked code ends the process it runs in, politely or not
    "exits": "import sys; sys.exit(3)",
    "crashes": "import os; os._exit(7)",
}

# A spec that cannot load: a key the format does not have.
BROKEN = SPEC.format(name="broken") + "tolerances: {atol: 1}\n"


def write_spec(folder: Path, name: str, like: str | None = None) -> Path:
    """Write ``name.yaml`` (and its ``name.py``) into ``folder``; returns the spec path.

    ``like`` picks the backward by another name (``write_spec(f, "a_dense", like="dense")``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    if name == "broken":
        path.write_text(BROKEN)
        return path
    path.write_text(SPEC.format(name=name))
    body = BACKWARDS[like or name]
    code = f"def backward(grad_out, x, w, b):\n{textwrap.indent(body, '    ')}\n"
    (folder / f"{name}.py").write_text(code)
    return path


def write_suite(folder: Path, *names: str) -> Path:
    """A folder of specs, run in name order; returns the folder."""
    for name in names:
        write_spec(folder, name)
    return folder
