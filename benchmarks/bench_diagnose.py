"""Cost of diagnosing a big failing gradient, measured against one ``a @ b`` of that size.

    python benchmarks/bench_diagnose.py [--size 4096] [--dtype float32] [--before REV] [--repeat 3]

Each case is a wrong gradient of a big tensor (a [size, size] weight gradient of a
linear layer with batch = size, and elementwise and embedding layers of about as many
elements), made from the expected one the way the mistake makes it: transposed, scaled,
partly wrong, blocks swapped, cropped, overwritten (``=`` for ``+=``), and unexplained
(the expected gradient plus noise). ``diagnose.explain`` runs on each, timed, next to
one ``a @ b`` of two [size, size] matrices in the same dtype (the bare work of a linear
layer is some six of those: the reference's forward and backward, the hand-written ones)
and next to the layer's own bare work, timed in the same round: the draw of its tensors
and the reference's forward and backward, twice (the hand-written side does that work
again). For the elementwise and embedding layers that bare work is a few passes over
memory, so their "x bare" is the harder ratio.

``--before REV`` also times ``gradcheck_cli/diagnose.py`` as it is at git revision REV
(default: where this branch left main), in the same process, round by round, so that
machine noise hits both alike. Target (issue 13): explain() costs at most about one
bare work ("x bare" <= 1) on every case.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from gradcheck_cli import diagnose
from gradcheck_cli.compare import compare
from gradcheck_cli.runner import generate, make_case, run_reference
from gradcheck_cli.spec import build_spec

REPO = Path(__file__).resolve().parent.parent

LINEAR = {
    "name": "bench_linear",
    "dims": {"batch": 0, "in": 0, "out": 0},
    "inputs": {"x": ["batch", "in"]},
    "params": {"weight": ["out", "in"], "bias": ["out"]},
    "reference": "F.linear(x, weight, bias)",
    "implementation": {"module": "gradcheck_cli.layers.linear", "backward": "f(grad_out) -> x"},
}
LOWER_BOUND = {
    "name": "bench_lower_bound",
    "dims": {"rows": 0, "cols": 0},
    "options": {"bound": 0.1},
    "inputs": {"x": ["rows", "cols"]},
    "reference": "torch.max(x, torch.tensor(bound, dtype=x.dtype))",
    "implementation": {"module": "gradcheck_cli.layers.linear", "backward": "f(grad_out) -> x"},
}
EMBEDDING = {
    "name": "bench_embedding",
    "dims": {"tokens": 0, "vocab": 0, "dim": 0},
    "inputs": {"indices": {"shape": ["tokens"], "dtype": "int64", "low": 0, "high": "vocab", "grad": False}},
    "params": {"weight": ["vocab", "dim"]},
    "reference": "F.embedding(indices, weight)",
    "implementation": {"module": "gradcheck_cli.layers.linear", "backward": "f(grad_out) -> weight"},
}


class Layer:
    """One spec at one size: its tensors, the reference's results, and its bare work."""

    def __init__(self, raw: dict[str, Any], dims: dict[str, int], dtype: str, tensor: str) -> None:
        self.spec = build_spec({**raw, "dims": dims})
        self.case = make_case(self.spec, dtype=dtype)
        self.tensor = self.spec.tensors[tensor]
        self.values = generate(self.case)
        with torch.enable_grad():
            self.expected = run_reference(self.case, self.values)
        self.e = self.expected.grads[tensor]
        self.g = self.expected.grad_outs["out"]

    def bare(self) -> float:
        """Seconds for the bare work of a check: the draw, the reference under autograd, and
        the hand-written forward and backward, which do that work again (the reference stands in)."""
        start = time.perf_counter()
        values = generate(self.case)
        drawn = time.perf_counter()
        with torch.enable_grad():
            run_reference(self.case, values)
        return (drawn - start) + 2 * (time.perf_counter() - drawn)

    def reference(self, tensors: Any) -> dict[str, torch.Tensor]:
        scope = {**self.spec.options, **self.case.dims, **tensors, "torch": torch, "F": torch.nn.functional}
        assert self.spec.reference.expr is not None
        return {"out": eval(self.spec.reference.expr, scope)}  # noqa: S307 - the benchmark's own specs

    def context(self, module: ModuleType) -> Any:
        """``module.Context`` for this layer, with the fields that version of diagnose has."""
        fields = {f.name for f in dataclasses.fields(module.Context)}
        extra = {"grad_outs": self.expected.grad_outs, "reference": self.reference}
        return module.Context(
            self.spec,
            self.case.dims,
            self.tensor,
            self.case.tolerance,
            self.expected.grads,
            self.values,
            **{k: v for k, v in extra.items() if k in fields},
        )


@dataclasses.dataclass
class Bench:
    name: str
    layer: Layer
    actual: torch.Tensor


def benches(size: int, dtype: str) -> list[Bench]:
    linear = Layer(LINEAR, {"batch": size, "in": size, "out": size}, dtype, "weight")
    e = linear.e
    noise = torch.randn(e.shape, generator=torch.Generator().manual_seed(7), dtype=e.dtype)
    quarter = size // 4
    zero_rows = e.clone()
    zero_rows[:quarter] = 0
    blocks = torch.cat([e[quarter : 2 * quarter], e[:quarter], e[2 * quarter :]])
    lower = Layer(LOWER_BOUND, {"rows": size, "cols": size}, dtype, "x")
    g, x = lower.g, lower.values["x"]
    embedding = Layer(EMBEDDING, {"tokens": size, "vocab": size // 2, "dim": size}, dtype, "weight")
    assigned = torch.zeros_like(embedding.e)
    assigned[embedding.values["indices"]] = embedding.g  # `=`: a repeated index keeps one row, not the sum
    return [
        Bench("linear weight, transposed", linear, e.T.contiguous()),
        Bench("linear weight, scaled 1/2", linear, e / 2),
        Bench("linear weight, rows 0-1/4 zero", linear, zero_rows),
        Bench("linear weight, gate blocks 1,0,2,3", linear, blocks),
        Bench("linear weight, cropped by one", linear, e[:-1, :-1].contiguous()),
        Bench("linear weight, unexplained", linear, e + 3 * e.std() * noise),
        Bench("lower bound, surrogate (x<b & g<0)", lower, g * ((x >= 0.1) | (g < 0))),
        Bench("embedding weight, = for +=", embedding, assigned),
    ]


def load_before(rev: str) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{rev}:gradcheck_cli/diagnose.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    name = "gradcheck_cli._diagnose_before"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "gradcheck_cli"
    sys.modules[name] = module
    exec(compile(source, f"{rev}:gradcheck_cli/diagnose.py", "exec"), module.__dict__)  # noqa: S102
    return module


def timed(module: ModuleType, bench: Bench) -> tuple[float, str]:
    context = bench.layer.context(module)
    expected = bench.layer.e
    check = compare("t", "param", expected, bench.actual, context.tol)
    start = time.perf_counter()
    module.explain(check, expected, bench.actual, context)
    return time.perf_counter() - start, str(check.diagnosis)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument(
        "--before", default=None, help="a git revision to compare with (default: merge-base with main)"
    )
    parser.add_argument("--no-before", action="store_true", help="time the current diagnose.py only")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    modules: dict[str, ModuleType] = {"after": diagnose}
    if not args.no_before:
        rev = (
            args.before
            or subprocess.run(
                ["git", "merge-base", "HEAD", "main"], cwd=REPO, capture_output=True, text=True, check=True
            ).stdout.strip()
        )
        modules = {"before": load_before(rev), "after": diagnose}
        print(f"before: gradcheck_cli/diagnose.py at {rev[:12]}")

    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(args.size, args.size, generator=gen, dtype=dtype)
    b = torch.randn(args.size, args.size, generator=gen, dtype=dtype)
    a @ b  # warm up
    matmul: list[float] = []
    print(f"size {args.size}, {args.dtype}, {torch.get_num_threads()} threads; setting up the cases...")
    cases = benches(args.size, args.dtype)
    layers = list(dict.fromkeys(bench.layer for bench in cases))
    times: dict[tuple[str, str], list[float]] = {}
    bare: dict[Layer, list[float]] = {}
    found: dict[tuple[str, str], str] = {}
    for _ in range(args.repeat):
        start = time.perf_counter()
        a @ b
        matmul.append(time.perf_counter() - start)
        for layer in layers:
            bare.setdefault(layer, []).append(layer.bare())
        for bench in cases:
            for label, module in modules.items():
                seconds, diagnosis = timed(module, bench)
                times.setdefault((bench.name, label), []).append(seconds)
                found[(bench.name, label)] = diagnosis
    unit = statistics.median(matmul)
    print(f"one a @ b: {unit:.3f} s; bare: the draw, the reference's forward and backward, twice")
    print(f"(medians of {args.repeat} rounds)\n")
    head = f"{'case':36} {'bare s':>7}"
    for label in modules:
        head += f" {label + ' diagnosis':>22} {'s':>7} {'x matmul':>8} {'x bare':>7}"
    print(head)
    for bench in cases:
        base = statistics.median(bare[bench.layer])
        line = f"{bench.name:36} {base:7.3f}"
        for label in modules:
            t = statistics.median(times[(bench.name, label)])
            line += f" {found[(bench.name, label)]:>22} {t:7.3f} {t / unit:8.2f} {t / base:7.2f}"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
