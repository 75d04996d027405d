"""What a check of a big layer costs, against the bare work it cannot avoid, in time and memory.

    python benchmarks/bench_scale.py [--dtype float64 float32] [--layers linear_1k ...] [--repeat 1]

The bare work: drawing the tensors, the reference's forward and backward under
autograd, and the hand-written forward and backward, called directly. The
check: ``gradcheck_cli.runner.run`` on the same spec and sizes, in the same
way (in process), which adds the comparison, the diagnosis of what fails,
the copies and the in-place-modification guard, and in float32 (calibrated
tolerance) the float64 truth, a second run of the reference that is work the
calibrated rule needs: it is counted as the check's, not as bare work.

Each measurement runs in a fresh child process (its peak RSS is the memory
column; torch's own footprint is in both); bare and check alternate, round
after round, so that machine noise falls on both alike. Ratios are of the
medians. Targets (issue 13): a passing check at most 1.3x the bare work in
time and 1.5x in peak memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

LAYERS: dict[str, tuple[str, dict[str, int]]] = {
    "linear_1k": ("linear", {"batch": 256, "in": 1024, "out": 1024}),
    "linear_4k": ("linear", {"batch": 256, "in": 4096, "out": 4096}),
    "conv2d": ("conv2d", {"batch": 32, "c_in": 64, "c_out": 128, "h": 64, "w": 64, "kh": 3, "kw": 3}),
    "lstm_cell": ("lstm_cell", {"batch": 256, "input_size": 1024, "hidden": 1024}),
    "sdpa": (
        "scaled_dot_product_attention",
        {"batch": 8, "seq_q": 2048, "seq_k": 2048, "d_k": 64, "d_v": 64},
    ),
    "linear_8k": ("linear", {"batch": 256, "in": 8192, "out": 8192}),  # the memory case; not run by default
}
DEFAULT_LAYERS = ["linear_1k", "linear_4k", "conv2d", "lstm_cell", "sdpa"]

CHILD = r"""
import json, resource, sys, time
spec_name, dims, dtype, mode = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
import torch
from gradcheck_cli.catalogue import builtin_dir
from gradcheck_cli.spec import load_spec
spec = load_spec(builtin_dir() / f"{spec_name}.yaml")

def bare():
    from gradcheck_cli.calls import bind
    from gradcheck_cli.reference import reference_outputs
    from gradcheck_cli.runner import make_case, generate
    from gradcheck_cli.usercode import load_namespace
    case = make_case(spec, dims, dtype=dtype)
    values = generate(case)
    leaves = {n: v.detach().requires_grad_(spec.tensors[n].grad) for n, v in values.items()}
    outputs = reference_outputs(spec, case.dims, leaves)
    grad_outs = {n: torch.randn_like(o) for n, o in outputs.items()}
    torch.autograd.backward(list(outputs.values()), list(grad_outs.values()))
    scope = {**spec.options, **case.dims, **values}
    for alias, out in spec.grad_names().items():
        scope[alias] = grad_outs[out]
    namespace = load_namespace(spec.implementation.source, spec, "implementation")
    fwd, bwd = spec.implementation.forward, spec.implementation.backward
    args, kwargs = bind(fwd, scope)
    returned = namespace[fwd.func](*args, **kwargs)
    returned = returned if len(fwd.returns) > 1 else (returned,)
    scope.update({k: v for k, v in zip(fwd.returns, returned) if k != "_"})
    args, kwargs = bind(bwd, scope)
    namespace[bwd.func](*args, **kwargs)

def check():
    from gradcheck_cli.runner import run
    from gradcheck_cli.settings import RunSettings
    result = run(spec, RunSettings(dtype=dtype), dims)
    return result.status

start = time.perf_counter()
status = bare() if mode == "bare" else check()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "peak": peak, "status": status}))
"""


def measure(spec: str, dims: dict[str, int], dtype: str, mode: str) -> dict[str, float | str | None]:
    ran = subprocess.run(
        [sys.executable, "-c", CHILD, spec, json.dumps(dims), dtype, mode],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if ran.returncode != 0:
        return {"seconds": float("nan"), "peak": float("nan"), "status": f"crashed: {ran.stderr[-300:]}"}
    return json.loads(ran.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", nargs="+", default=["float64", "float32"])
    parser.add_argument("--layers", nargs="+", default=DEFAULT_LAYERS, choices=list(LAYERS))
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    header = (
        f"{'layer':<11} {'dtype':<8} {'bare':>8} {'check':>8} {'ratio':>6}   "
        f"{'bare peak':>10} {'check peak':>10} {'ratio':>6}  verdict"
    )
    print(header)
    print("-" * len(header))
    for layer in args.layers:
        spec, dims = LAYERS[layer]
        for dtype in args.dtype:
            runs: dict[str, list[dict[str, float | str | None]]] = {"bare": [], "check": []}
            for _ in range(args.repeat):
                for mode in ("bare", "check"):
                    runs[mode].append(measure(spec, dims, dtype, mode))
            bare_t = statistics.median(float(r["seconds"]) for r in runs["bare"])  # type: ignore[arg-type]
            check_t = statistics.median(float(r["seconds"]) for r in runs["check"])  # type: ignore[arg-type]
            bare_m = statistics.median(float(r["peak"]) for r in runs["bare"])  # type: ignore[arg-type]
            check_m = statistics.median(float(r["peak"]) for r in runs["check"])  # type: ignore[arg-type]
            verdict = runs["check"][-1]["status"]
            print(
                f"{layer:<11} {dtype:<8} {bare_t:>7.2f}s {check_t:>7.2f}s {check_t / bare_t:>5.2f}x   "
                f"{gib(bare_m):>10} {gib(check_m):>10} {check_m / bare_m:>5.2f}x  {verdict}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
