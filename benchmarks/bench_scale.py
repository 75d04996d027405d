"""What a check of a big layer costs, against the bare work it cannot avoid, in time and memory.

    python benchmarks/bench_scale.py [--dtype float64 float32] [--layers linear_1k ...] [--repeat 3]
                                     [--sections layers failing cli]

Three sections, each measured side by side in one run:

``layers``: the five layers of issue 13 (linear 256x1024x1024 and 256x4096x4096, conv2d batch 32
64->128 channels 64x64, lstm_cell 256x1024, scaled_dot_product_attention 8x2048x2048x64) in each
dtype, three modes:

- ``bare``: the work a check cannot avoid, written as a user would write it: the tensors drawn
  in the checked dtype (``torch.randn(..., dtype=)``), the reference's forward and backward
  under autograd (``torch.autograd.grad`` with random upstream gradients), and the hand-written
  forward and backward called directly on the same tensors;
- ``+truth`` (calibrated dtypes only: float32, bfloat16, float16): ``bare`` plus what the
  calibrated rule needs on top, the reference's forward and backward again in float64 from the
  same (rounded) tensors, its gradients kept until the hand-written code has run. The truth is
  work a correct check must do, but not work the user would do: both ratios are shown, the
  check against ``bare`` (what the user sees) and against ``+truth`` (gradcheck's overhead on
  top of what its rule needs);
- ``check``: ``gradcheck_cli.runner.run`` on the same spec and sizes, in process: all of the
  above (tensors drawn as gradcheck draws them) plus the comparison, the copies and the
  in-place-modification guard, and the diagnosis of what fails.

``failing``: linear 256x4096x4096 with a wrong hand-written backward, two mistakes in the weight
gradient (divided by the batch size: a rule names the factor; weight decay added: no rule explains
it, so every rule is tried), against ``bare`` and the passing check: what the diagnosis adds.
Target: at most the bare work again, ``(fail - pass) / bare <= 1``.

``cli``: linear 256x4096x4096 through the real command line, ``gradcheck linear --batch 256
--in 4096 --out 4096`` (a torch-free parent, the fork server, the spec's worker process),
against ``runner.run`` in a fresh ``python -c``; both end to end (interpreter start-up and the
torch import included), the memory the largest process's peak RSS.

How: each measurement is a fresh child process. In ``layers`` and ``failing`` the child first
runs its mode once at the spec's own (tiny) sizes, untimed, so that imports and torch's
first-call costs (a cold ``sympy`` import in ``autograd.grad``, oneDNN's kernel choice) fall on
neither side; then it runs at the big sizes, timed. The memory columns are the child's peak RSS
above its RSS just before the timed run (the work's own memory; the import baseline, ~0.3 GiB
with torch, is in neither), and the peak RSS itself. Modes alternate round after round, so that
machine noise falls on all alike; the numbers are medians over ``--repeat`` rounds, and the
``load`` column is the 1-minute load average over the row's measurements (this machine has two
cores: a load above ~0.5 means others were running and the times are less reliable than the
memory). torch keeps its default thread count unless ``--threads`` says (``--threads 1``: the
work of one core, less sensitive to others' load, as a cross-check). Targets (issue 13): a
passing check at most 1.3x the bare work in time and 1.5x in (work) memory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
CALIBRATED = ("float32", "bfloat16", "float16")  # the dtypes whose default tolerance needs the truth

# The failing section's wrong backwards: linear's, with one mistake in the weight gradient.
MISTAKES = {
    "weight / batch": "grad_weight = grad_out.T @ x / x.shape[0]",
    "weight decay added": "grad_weight = grad_out.T @ x + 1e-2 * weight",
}
MISTAKE_MODULE = '''
"""linear's backward with one mistake in the weight gradient (benchmarks/bench_scale.py)."""


def linear_forward(x, weight, bias):
    return x @ weight.T + bias


def linear_backward(grad_out, x, weight, bias):
    {line}
    return grad_out @ weight, grad_weight, grad_out.sum(dim=0)
'''
MISTAKE_SPEC = """
name: linear_mistake
dims: {batch: 5, in: 3, out: 4}
inputs:
  x: [batch, in]
params:
  weight: [out, in]
  bias: [out]
reference: "F.linear(x, weight, bias)"
implementation:
  file: mistake.py
  forward: "linear_forward(x, weight, bias) -> out"
  backward: "linear_backward(grad_out, x, weight, bias) -> x, weight, bias"
"""

CHILD = r"""
import gc, json, os, resource, sys, time
spec_path, dims, dtype, mode = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
import torch
if os.environ.get("BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
from gradcheck_cli.spec import load_spec
spec = load_spec(spec_path)
DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
          "bfloat16": torch.bfloat16}


def draw(dims):
    # The tensors as a user draws them: in the checked dtype, one generator.
    gen = torch.Generator().manual_seed(0)
    values = {}
    for t in spec.tensors.values():
        assert t.derived is None and t.permutation is None, "bare drawing: plain tensors only"
        shape = spec.shape_of(t, dims)
        if t.dtype in ("int64", "int32"):
            low, high = int(spec.bound(t.low, dims)), int(spec.bound(t.high, dims))
            kind = torch.int64 if t.dtype == "int64" else torch.int32
            values[t.name] = torch.randint(low, high, shape, generator=gen, dtype=kind)
            continue
        x = torch.randn(shape, generator=gen, dtype=DTYPES[dtype])
        if t.low is not None or t.high is not None:
            lo = float(spec.bound(t.low, dims) or 0.0)
            hi = lo + 1.0 if t.high is None else float(spec.bound(t.high, dims))
            x = torch.rand(shape, generator=gen, dtype=DTYPES[dtype]).mul_(hi - lo).add_(lo)
        if t.min_abs:
            x = torch.where(x >= 0, x.clamp_min(t.min_abs), x.clamp_max(-t.min_abs))
        values[t.name] = x
    return values


def reference_grads(dims, values, grad_outs):
    from gradcheck_cli.reference import reference_outputs
    checked = [t.name for t in spec.checked]
    leaves = {n: v.detach().requires_grad_(n in checked) for n, v in values.items()}
    outputs = reference_outputs(spec, dims, leaves)
    if grad_outs is None:
        grad_outs = {n: torch.randn_like(o) for n, o in outputs.items()}
    grads = torch.autograd.grad(list(outputs.values()), [leaves[n] for n in checked],
                                [grad_outs[n] for n in outputs])
    return {n: o.detach() for n, o in outputs.items()}, dict(zip(checked, grads)), grad_outs


def bare(dims, truth):
    from gradcheck_cli.calls import bind
    from gradcheck_cli.usercode import load_namespace
    values = draw(dims)
    outputs, grads, grad_outs = reference_grads(dims, values, None)
    kept = None
    if truth:  # what the calibrated rule adds: the same in float64, kept until compared
        wide = {n: v.to(torch.float64) if v.is_floating_point() else v for n, v in values.items()}
        kept = reference_grads(dims, wide, {n: g.to(torch.float64) for n, g in grad_outs.items()})
        del wide
    scope = {**spec.options, **dims, **values}
    for alias, out in spec.grad_names().items():
        scope[alias] = grad_outs[out]
    namespace = load_namespace(spec.implementation.source, spec, "implementation")
    fwd, bwd = spec.implementation.forward, spec.implementation.backward
    args, kwargs = bind(fwd, scope)
    returned = namespace[fwd.func](*args, **kwargs)
    returned = returned if len(fwd.returns) > 1 else (returned,)
    scope.update({k: v for k, v in zip(fwd.returns, returned) if k != "_"})
    args, kwargs = bind(bwd, scope)
    found = namespace[bwd.func](*args, **kwargs)
    return "-", (outputs, grads, kept, found)


def check(dims):
    from gradcheck_cli.runner import run
    from gradcheck_cli.settings import RunSettings
    result = run(spec, RunSettings(dtype=dtype), dims)
    failing = [f"{c.name}: {c.diagnosis or 'no diagnosis'}" for c in result.checks if not c.ok]
    return result.status + (f" ({'; '.join(failing)})" if failing else ""), result


def once(dims):
    return check(dims) if mode == "check" else bare(dims, truth=mode == "+truth")


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


once(dict(spec.dims))  # untimed, at the spec's own sizes: imports and first calls
gc.collect()
before = rss()
cpu = resource.getrusage(resource.RUSAGE_SELF)
start = time.perf_counter()
status, kept = once(dims)
seconds = time.perf_counter() - start
used = resource.getrusage(resource.RUSAGE_SELF)
peak = used.ru_maxrss * 1024
cpu_s = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
print(json.dumps({"seconds": seconds, "cpu": cpu_s, "peak": peak, "extra": max(0, peak - before),
                  "status": status, "load": os.getloadavg()[0]}))
"""

# End to end, as a user runs it: the CLI, and the same check in one fresh Python process.
IN_PROCESS = r"""
import json, sys
from gradcheck_cli.catalogue import builtin_dir
from gradcheck_cli.runner import run
from gradcheck_cli.settings import RunSettings
from gradcheck_cli.spec import load_spec
result = run(load_spec(builtin_dir() / (sys.argv[1] + ".yaml")), RunSettings(dtype=sys.argv[3]),
             json.loads(sys.argv[2]))
print(result.status)
"""
# Runs a command and reports the peak RSS of its largest descendant (the CLI's worker is a
# grandchild, reaped by the fork server, which the CLI reaps: Linux passes the peak up).
WRAPPER = r"""
import json, os, resource, subprocess, sys, time
start = time.perf_counter()
ran = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
ok = ran.returncode in (0, 1)
status = (ran.stdout.strip().splitlines() or ["?"])[-1][:60] if ok else ran.stderr[-300:]
print(json.dumps({"seconds": seconds, "cpu": 0.0, "peak": peak, "extra": peak, "status": status,
                  "rc": ran.returncode, "load": os.getloadavg()[0]}))
"""

Row = dict[str, Any]


def _child(argv: Sequence[str]) -> Row:
    ran = subprocess.run([sys.executable, "-c", *argv], capture_output=True, text=True, cwd=REPO)
    if ran.returncode != 0:
        nan = float("nan")
        return {"seconds": nan, "cpu": nan, "peak": nan, "extra": nan, "load": nan,
                "status": f"crashed: {ran.stderr.strip()[-300:]}"}  # fmt: skip
    return json.loads(ran.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def measure(spec_path: Path, dims: dict[str, int], dtype: str, mode: str) -> list[str]:
    """The child's arguments for one measurement of ``mode``."""
    return [CHILD, str(spec_path), json.dumps(dims), dtype, mode]


def rounds(modes: dict[str, list[str]], repeat: int) -> dict[str, list[Row]]:
    """Each mode's child run ``repeat`` times, interleaved: a, b, c, a, b, c, ..."""
    found: dict[str, list[Row]] = {m: [] for m in modes}
    for _ in range(repeat):
        for mode, argv in modes.items():
            found[mode].append(_child(argv))
    return found


def median(rows: list[Row], key: str) -> float:
    return statistics.median(float(r[key]) for r in rows)


def mib(n: float) -> str:
    return f"{n / 2**20:.0f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"


def builtin(name: str) -> Path:
    return REPO / "layer_specs" / f"{name}.yaml"


def print_header(header: str) -> None:
    """A Markdown table's header row and the rule under it (the last column left open)."""
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|---|")


def layers_section(layers: list[str], dtypes: list[str], repeat: int) -> None:
    print("## layers: bare work vs check (seconds; work memory in MiB above the import baseline)\n")
    header = (
        f"| {'layer':<10} | {'dtype':<8} | {'bare s':>7} | {'+truth s':>8} | {'check s':>7} | {'/bare':>6} |"
        f" {'/+truth':>7} | {'bare MiB':>8} | {'+truth MiB':>10} | {'check MiB':>9} | {'/bare':>6} |"
        f" {'/+truth':>7} | {'peak GiB b/c':>12} | {'load':>4} | verdict"
    )
    print_header(header)
    for layer in layers:
        name, dims = LAYERS[layer]
        for dtype in dtypes:
            modes = ["bare", *(["+truth"] if dtype in CALIBRATED else []), "check"]
            runs = rounds({m: measure(builtin(name), dims, dtype, m) for m in modes}, repeat)
            t = {m: median(runs[m], "seconds") for m in modes}
            x = {m: median(runs[m], "extra") for m in modes}
            p = {m: median(runs[m], "peak") for m in modes}
            load = statistics.mean(float(r["load"]) for rs in runs.values() for r in rs)
            truth_t = f"{t['+truth']:8.2f}" if "+truth" in t else f"{'-':>8}"
            truth_x = f"{mib(x['+truth']):>10}" if "+truth" in x else f"{'-':>10}"
            vs_truth_t = ratio(t["check"], t["+truth"]) if "+truth" in t else "-"
            vs_truth_x = ratio(x["check"], x["+truth"]) if "+truth" in x else "-"
            print(
                f"| {layer:<10} | {dtype:<8} | {t['bare']:7.2f} | {truth_t} | {t['check']:7.2f} |"
                f" {ratio(t['check'], t['bare']):>6} | {vs_truth_t:>7} | {mib(x['bare']):>8} | {truth_x} |"
                f" {mib(x['check']):>9} | {ratio(x['check'], x['bare']):>6} | {vs_truth_x:>7} |"
                f" {p['bare'] / 2**30:5.2f}/{p['check'] / 2**30:<6.2f} | {load:4.1f} |"
                f" {runs['check'][-1]['status']}",
                flush=True,
            )
    print()


def failing_section(dtypes: list[str], repeat: int) -> None:
    name, dims = LAYERS["linear_4k"]
    print("## failing: linear 256x4096x4096 with a wrong weight gradient: what the diagnosis adds\n")
    header = (
        f"| {'mistake':<18} | {'dtype':<8} | {'bare s':>7} | {'pass s':>7} | {'fail s':>7} |"
        f" {'(fail-pass)/bare':>16} | {'fail/bare':>9} | {'pass MiB':>8} | {'fail MiB':>8} | {'load':>4} |"
        " diagnosis"
    )
    print_header(header)
    with tempfile.TemporaryDirectory() as tmp:
        for mistake, line in MISTAKES.items():
            folder = Path(tmp) / mistake.replace(" ", "_").replace("/", "")
            folder.mkdir()
            (folder / "mistake.py").write_text(MISTAKE_MODULE.format(line=line))
            (folder / "linear_mistake.yaml").write_text(MISTAKE_SPEC)
            wrong = folder / "linear_mistake.yaml"
            for dtype in dtypes:
                runs = rounds(
                    {
                        "bare": measure(wrong, dims, dtype, "bare"),
                        "pass": measure(builtin(name), dims, dtype, "check"),
                        "fail": measure(wrong, dims, dtype, "check"),
                    },
                    repeat,
                )
                bare, passed, failed = (median(runs[m], "seconds") for m in ("bare", "pass", "fail"))
                load = statistics.mean(float(r["load"]) for rs in runs.values() for r in rs)
                added = (failed - passed) / bare
                print(
                    f"| {mistake:<18} | {dtype:<8} | {bare:7.2f} | {passed:7.2f} | {failed:7.2f} |"
                    f" {added:16.2f} | {ratio(failed, bare):>9} | {mib(median(runs['pass'], 'extra')):>8} |"
                    f" {mib(median(runs['fail'], 'extra')):>8} | {load:4.1f} | {runs['fail'][-1]['status']}",
                    flush=True,
                )
    print()


def cli_section(dtypes: list[str], repeat: int) -> None:
    name, dims = LAYERS["linear_4k"]
    gradcheck = [sys.executable, "-m", "gradcheck_cli"]  # the `gradcheck` script, from this checkout
    flags = [f for d, n in dims.items() for f in (f"--{d}", str(n))]
    print(f"## cli: `gradcheck {name} {' '.join(flags)}` vs runner.run in one process, end to end\n")
    header = (
        f"| {'dtype':<8} | {'in-process s':>12} | {'CLI s':>7} | {'CLI/in-process':>14} |"
        f" {'in-process GiB':>14} | {'CLI GiB':>7} | {'load':>4} | verdict"
    )
    print_header(header)
    for dtype in dtypes:
        here = [sys.executable, "-c", IN_PROCESS, name, json.dumps(dims), dtype]
        cli = [*gradcheck, name, *flags, "--dtype", dtype, "-qq", "--color", "never"]
        runs = rounds({"in-process": [WRAPPER, *here], "cli": [WRAPPER, *cli]}, repeat)
        here_t, cli_t = median(runs["in-process"], "seconds"), median(runs["cli"], "seconds")
        here_m, cli_m = median(runs["in-process"], "peak"), median(runs["cli"], "peak")
        load = statistics.mean(float(r["load"]) for rs in runs.values() for r in rs)
        print(
            f"| {dtype:<8} | {here_t:12.2f} | {cli_t:7.2f} | {ratio(cli_t, here_t):>14} |"
            f" {here_m / 2**30:14.2f} | {cli_m / 2**30:7.2f} | {load:4.1f} |"
            f" {runs['in-process'][-1]['status']} / rc {runs['cli'][-1].get('rc')}",
            flush=True,
        )
    print()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dtype", nargs="+", default=["float64", "float32"])
    parser.add_argument("--layers", nargs="+", default=DEFAULT_LAYERS, choices=list(LAYERS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sections", nargs="+", default=["layers", "failing", "cli"])
    parser.add_argument(
        "--threads", type=int, help="torch threads in the layers and failing children (default: torch's)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        os.environ["BENCH_THREADS"] = str(args.threads)
    import torch

    threads = args.threads or torch.get_num_threads()
    print(
        f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} cores;"
        f" medians of {args.repeat} rounds; load average at start {os.getloadavg()[0]:.1f}\n"
    )
    del torch
    started = time.perf_counter()
    if "layers" in args.sections:
        layers_section(args.layers, args.dtype, args.repeat)
    if "failing" in args.sections:
        failing_section(args.dtype, args.repeat)
    if "cli" in args.sections:
        cli_section(args.dtype, args.repeat)
    print(f"{time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
