"""Finite differences: gradcheck's numerical engine against torch.autograd.gradcheck.

    python benchmarks/bench_numerical.py [--sizes 31,3.1K,20K,80K,1M] [--batch 4] [--threads 1]

The same linear layers (``out = x @ weight.T + bias`` in float64, every input checked) with a
hand-written backward, correct and wrong (the bias gradient a mean over the batch instead of a
sum), checked three ways: gradcheck's engine (``numerical_vjp``, every element, no sampling, then
``comparison`` at atol = rtol = 1e-7) and ``torch.autograd.gradcheck`` in slow and in fast mode
(on an ``autograd.Function`` with the same backward, its default tolerances). Each measurement
runs in a child process of its own: the time of the check itself (tensors built, imports done)
and the child's peak RSS, torch included. torch's checks are stopped past ``--limit-s`` (120 s)
or ``--limit-gib`` (8 GiB) and reported as stopped. Then, for the wrong backward at
``--show``, what each one says.

Targets (issue 11): >= 100x faster than slow mode at 20K parameters with the same verdicts; the
1M-parameter layer checked in full in under a minute and under 2 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

# parameters (weight + bias) -> (in_features, out_features): square layers, as in issue 11's
# measurements (55 -> 3,080 parameters, 143 -> 20,592, 286 -> 82,082)
SIZES: dict[str, tuple[int, int]] = {
    "31": (5, 5),
    "3.1K": (55, 55),
    "20K": (143, 143),
    "80K": (286, 286),
    "1M": (1000, 1000),
}
METHODS = ("numerical", "torch-slow", "torch-fast")
LABELS = {
    "numerical": "gradcheck numerical",
    "torch-slow": "torch gradcheck (slow)",
    "torch-fast": "torch gradcheck (fast)",
}
WRONG = "bias gradient a mean over the batch, not a sum"


# --- the child: one measurement ---------------------------------------------------------------


def _backward(g: Any, x: Any, weight: Any, wrong: bool) -> tuple[Any, Any, Any]:
    """The hand-written backward of ``x @ weight.T + bias``."""
    grad_x = g @ weight
    grad_weight = g.T @ x
    grad_bias = g.mean(0) if wrong else g.sum(0)
    return grad_x, grad_weight, grad_bias


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    import gradcheck_cli.numerical  # noqa: F401  (imported before the clock starts, like torch)

    torch.set_num_threads(spec["threads"])
    n_in, n_out, batch, wrong = spec["in"], spec["out"], spec["batch"], spec["wrong"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, n_in, dtype=torch.float64, generator=gen)
    weight = torch.randn(n_out, n_in, dtype=torch.float64, generator=gen) / n_in**0.5
    bias = torch.randn(n_out, dtype=torch.float64, generator=gen)
    g = torch.randn(batch, n_out, dtype=torch.float64, generator=gen)
    baseline = _rss_kib()
    start, cpu = time.perf_counter(), time.process_time()
    if spec["method"] == "numerical":
        out = _numerical(x, weight, bias, g, wrong)
    else:
        out = _torch(x, weight, bias, wrong, fast=spec["method"] == "torch-fast")
    out["seconds"] = time.perf_counter() - start
    out["cpu_seconds"] = time.process_time() - cpu
    out["baseline_kib"] = baseline
    out["peak_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return out


def _numerical(x: Any, weight: Any, bias: Any, g: Any, wrong: bool) -> dict[str, Any]:
    from gradcheck_cli.numerical import comparison, numerical_vjp

    analytic = dict(zip(("x", "weight", "bias"), _backward(g, x, weight, wrong)))
    num = numerical_vjp(
        lambda v: {"out": v["x"] @ v["weight"].T + v["bias"]},
        {"x": x, "weight": weight, "bias": bias},
        {"out": g},
        ["x", "weight", "bias"],
        samples=None,
    )
    findings, failed = [], False
    for name, grad in analytic.items():
        t = num[name]
        cmp = comparison(grad, t)
        close, _ = cmp.close(1e-7, 1e-7)
        worst = cmp.worst(1e-7, 1e-7)
        if worst is None:
            findings.append(f"{name}: all {len(close):,} elements agree")
        else:
            failed = True
            index = ", ".join(map(str, worst[0]))
            findings.append(
                f"{name}: {int((~close).sum()):,} of {len(close):,} elements differ; worst {name}[{index}]:"
                f" numerical {worst[1]:.6g}, analytic {worst[2]:.6g}"
            )
        findings.append(f"    ({t.grouping}; {t.method})")
    return {
        "verdict": "fail" if failed else "pass",
        "message": "\n".join(findings),
        "detail": f"{num.evaluations:,} forwards in {num.forward_calls:,} calls; {num.describe()}",
    }


def _torch(x: Any, weight: Any, bias: Any, wrong: bool, fast: bool) -> dict[str, Any]:
    import torch

    class Linear(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, weight: Any, bias: Any) -> Any:
            ctx.save_for_backward(x, weight)
            return x @ weight.T + bias

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            x, weight = ctx.saved_tensors
            return _backward(g, x, weight, wrong)

    inputs = tuple(t.clone().requires_grad_() for t in (x, weight, bias))
    from torch.autograd.gradcheck import GradcheckError

    try:
        torch.autograd.gradcheck(Linear.apply, inputs, fast_mode=fast)
    except GradcheckError as exc:
        return {"verdict": "fail", "message": str(exc), "detail": ""}
    return {"verdict": "pass", "message": "", "detail": ""}


# --- the parent: run children, watch them, print ----------------------------------------------


@dataclass
class Measured:
    status: str  # "ok", "stopped (time)", "stopped (memory)", "crashed"
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_kib: int = 0
    baseline_kib: int = 0
    verdict: str = ""
    message: str = ""
    detail: str = ""


def measure(spec: dict[str, Any], limit_s: float | None, limit_kib: int | None) -> Measured:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    start, peak = time.perf_counter(), 0
    status = "ok"
    while proc.poll() is None:
        time.sleep(0.1)
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                rss = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            rss = 0
        peak = max(peak, rss)
        if limit_kib is not None and rss > limit_kib:
            status = "stopped (memory)"
        elif limit_s is not None and time.perf_counter() - start > limit_s:
            status = "stopped (time)"
        if status != "ok":
            proc.kill()
            proc.wait()
            return Measured(status, seconds=time.perf_counter() - start, peak_kib=peak)
    out, err = proc.communicate()
    if proc.returncode != 0:
        return Measured("crashed", message=err.strip().splitlines()[-1] if err.strip() else "")
    data = json.loads(out.strip().splitlines()[-1])
    return Measured(
        "ok",
        **{
            k: data[k]
            for k in ("seconds", "cpu_seconds", "peak_kib", "baseline_kib", "verdict", "message", "detail")
        },
    )


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}"
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each child")
    parser.add_argument("--limit-s", type=float, default=120.0, help="stop torch's checks past this")
    parser.add_argument("--limit-gib", type=float, default=8.0, help="stop torch's checks past this RSS")
    parser.add_argument("--show", default="20K", help="the size whose wrong-backward messages are printed")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [s for s in sizes if s not in SIZES] + [m for m in methods if m not in METHODS]
    if bad:
        parser.error(f"unknown: {', '.join(bad)}")
    print(
        f"linear layers out = x @ weight.T + bias, float64, batch {args.batch},"
        f" {args.threads} thread(s) per run;"
        f" torch stopped past {args.limit_s:.0f} s or {args.limit_gib:g} GiB"
    )
    print(f"wrong backward: {WRONG}")
    print(f"load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print()
    header = (
        f"{'params':>9}  {'method':24} {'correct':>10} {'(cpu)':>9} {'wrong':>10} {'peak RSS':>10}"
        "  verdict correct / wrong"
    )
    print(header)
    print("-" * len(header))
    results: dict[tuple[str, str, bool], Measured] = {}
    for size in sizes:
        n_in, n_out = SIZES[size]
        params = n_in * n_out + n_out
        for method in methods:
            limit_s = args.limit_s if method != "numerical" else None
            limit_kib = int(args.limit_gib * 2**20) if method != "numerical" else None
            row = []
            for wrong in (False, True):
                slow = results.get((size, "torch-slow", False))
                if (
                    wrong
                    and method != "numerical"
                    and slow
                    and (slow.status != "ok" or slow.seconds > limit_s / 2)
                ):
                    # torch reports a failure by computing the Jacobians in slow mode (fast mode
                    # too): at this size that was stopped, or near it, for the correct backward
                    row.append(Measured("not run (slow mode at this size)"))
                    results[(size, method, True)] = row[-1]
                    break
                spec = {
                    "method": method,
                    "in": n_in,
                    "out": n_out,
                    "batch": args.batch,
                    "threads": args.threads,
                    "wrong": wrong,
                }
                m = measure(spec, limit_s, limit_kib)
                results[(size, method, wrong)] = m
                row.append(m)
                if m.status != "ok":  # the wrong backward would be stopped the same way
                    results[(size, method, True)] = m
                    break
            ok, bad_run = row[0], row[-1]

            def cell(m: Measured) -> str:
                if m.status == "ok":
                    return f"{m.seconds:.2f} s"
                return (
                    "not run" if m.status.startswith("not run") else m.status.replace("stopped ", "stopped")
                )

            wrong_cell = cell(bad_run) if len(row) == 2 else "-"
            cpu_cell = f"{ok.cpu_seconds:.2f} s" if ok.status == "ok" else "-"
            peak = max(m.peak_kib for m in row if not m.status.startswith("not run"))
            verdicts = " / ".join(f"{m.verdict or m.status}" for m in row)
            label = f"{params:,}" if method == methods[0] else ""
            print(
                f"{label:>9}  {LABELS[method]:24} {cell(ok):>10} {cpu_cell:>9} {wrong_cell:>10}"
                f" {_mib(peak):>10}  {verdicts}"
            )
        ours = results.get((size, "numerical", False))
        slow = results.get((size, "torch-slow", False))
        if ours and slow and ours.status == slow.status == "ok" and ours.seconds > 0:
            print(
                f"{'':>9}  speed-up over slow mode (correct backward): {slow.seconds / ours.seconds:,.0f}x"
                f" wall, {slow.cpu_seconds / max(ours.cpu_seconds, 1e-9):,.0f}x cpu"
            )
        if ours and ours.detail:
            print(f"{'':>9}  {ours.detail}")
        print()

    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print("targets (issue 11):")
    ours, slow = results.get(("20K", "numerical", False)), results.get(("20K", "torch-slow", False))
    if ours and slow and ours.status == slow.status == "ok":
        same = all(
            results[("20K", "numerical", w)].verdict == results[("20K", "torch-slow", w)].verdict
            for w in (False, True)
            if ("20K", "torch-slow", w) in results and results[("20K", "torch-slow", w)].status == "ok"
        )
        ratio = slow.seconds / ours.seconds
        mark = "met" if ratio >= 100 and same else "NOT met"
        print(f"  20K: {ratio:,.0f}x faster than slow mode (target 100x), same verdicts: {same}: {mark}")
    big = results.get(("1M", "numerical", False))
    if big and big.status == "ok":
        mark = "met" if big.seconds < 60 and big.peak_kib < 2 * 2**20 else "NOT met"
        print(
            f"  1M in full: {big.seconds:.1f} s (target 60 s),"
            f" peak RSS {_mib(big.peak_kib)} (target 2 GiB): {mark}"
        )
    print()

    if args.show in sizes:
        print(f"what each says about the wrong backward at {args.show} parameters ({WRONG}):")
        for method in methods:
            m = results.get((args.show, method, True))
            if m is None:
                continue
            print(f"\n--- {LABELS[method]}")
            if m.status != "ok":
                print(m.status)
                continue
            lines = m.message.splitlines()
            shown = lines[:6]
            print("\n".join(shown) if shown else "(passed)")
            if len(lines) > len(shown):
                print(f"[... {len(lines) - len(shown):,} more lines, {len(m.message):,} characters in all]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
