"""What running checked code in worker processes costs, measured side by side in one run.

    python benchmarks/bench_isolation.py [--rounds 5] [--trivial 50]

Four workloads, each run in this process (``Supervisor(isolate=False)``), through the
supervisor serially (``jobs=1``) and with ``jobs=2``, round by round so that machine
noise hits every mode alike; medians are compared with the in-process time:

- the fork server's start-up: ``start()`` returning, and the server ready (torch
  and gradcheck_cli.runner imported), against ``python -c "import torch"``;
- N trivial calls (``add(1, 2)``): the per-call cost of a fork, the pickles and the
  result coming back;
- the built-in catalogue (layer_specs/*.yaml, each through ``gradcheck_cli.check``):
  small torch checks, the case ``--jobs 2`` must win on a 2-core machine (issue 13);
  the results of every mode are compared number for number with the in-process ones;
- one bigger layer (linear, batch 256, 1024 -> 1024, float64, forward and backward)
  four times: isolation's cost next to real work, and two such workers sharing the
  cores at torch's default thread count.

"warmed" modes give the server ``warmup=`` (the catalogue and one big linear, run
once on one thread before any fork), so that workers do not each pay torch's
first-call costs; the in-process mode is warm too (one untimed round first).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SPECS = sorted((REPO / "layer_specs").glob("*.yaml"))
# The module that holds the called functions is preloaded, as the CLI preloads the runner: a worker
# that imports it (and argparse, statistics) itself spends ~5 ms more CPU per call.
PRELOAD = ("torch", "gradcheck_cli.runner", "bench_isolation")
WARMUP = ("bench_isolation:warm_up",)


def add(a: int, b: int) -> int:
    return a + b


def check_spec(path: str) -> list[Any]:
    """One built-in spec through the public API: its status and every tensor's numbers."""
    import gradcheck_cli

    report = gradcheck_cli.check(path)
    return [
        (r.spec, r.status, [(c.name, c.status, c.max_abs_err, c.max_rel_err) for c in r.checks])
        for r in report.results
    ]


def warm_up() -> None:
    """The server's warm-up (``warmup=``): the catalogue once and one big linear, on one thread."""
    for path in SPECS:
        check_spec(str(path))
    big_linear(0)


def big_linear(seed: int) -> float:
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 1024, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(1024, 1024, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(1024, dtype=torch.float64, generator=g, requires_grad=True)
    out = torch.nn.functional.linear(x, w, b)
    # sum().backward(), not backward(ones): a grad tensor makes torch import sympy (~0.4 s) in
    # each fresh worker, which gradcheck's own runner avoids (reference.py's _vjp).
    out.sum().backward()
    assert x.grad is not None and w.grad is not None
    return float(out.detach().sum() + x.grad.sum() + w.grad.sum())


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def cpu_seconds(server_pid: int | None) -> float:
    """CPU time of this process, plus the server's and its reaped workers' (Linux /proc).

    Wall time on a machine that others load measures them too; CPU time much less so.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    if server_pid is not None:
        try:
            stat = Path(f"/proc/{server_pid}/stat").read_text()
        except OSError:
            return total
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        total += ticks / os.sysconf("SC_CLK_TCK")
    return total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trivial", type=int, default=50, help="trivial calls per round")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_isolation as me  # by name, so that the workers can import the functions

    from gradcheck_cli.supervisor import Call, Died, Supervisor

    # Start-up: the server's torch import, against a bare one.
    bare = statistics.median(
        timed(lambda: subprocess.run([sys.executable, "-c", "import torch"], check=True))[0] for _ in range(3)
    )
    returned, ready, warmed = [], [], []
    for _ in range(3):
        sup = Supervisor(preload=PRELOAD)
        returned.append(timed(sup.start)[0])
        ready.append(sup.wait_ready())
        sup.close()
        sup = Supervisor(preload=PRELOAD, warmup=WARMUP)
        sup.start()
        warmed.append(sup.wait_ready())
        sup.close()

    import torch  # noqa: F401 - the in-process mode runs torch here; imported before any timing

    modes: dict[str, Supervisor] = {
        "in-process": Supervisor(isolate=False),
        "supervised, jobs=1": Supervisor(jobs=1, preload=PRELOAD),
        "supervised, jobs=2": Supervisor(jobs=2, preload=PRELOAD),
        "warmed, jobs=1": Supervisor(jobs=1, preload=PRELOAD, warmup=WARMUP),
        "warmed, jobs=2": Supervisor(jobs=2, preload=PRELOAD, warmup=WARMUP),
    }
    for sup in modes.values():
        sup.wait_ready()
    workloads: dict[str, list[Call[Any]]] = {
        f"{args.trivial} trivial calls": [Call(me.add, (1, 2))] * args.trivial,
        f"catalogue ({len(SPECS)} specs)": [Call(me.check_spec, (str(p),), label=p.stem) for p in SPECS],
        "4 x linear 256x1024x1024": [Call(me.big_linear, (seed,)) for seed in range(4)],
    }
    for calls in workloads.values():  # warm-up: the in-process mode's first torch ops, file caches
        list(modes["in-process"].map(calls))
    times: dict[tuple[str, str], list[float]] = {(w, m): [] for w in workloads for m in modes}
    cpu: dict[tuple[str, str], list[float]] = {(w, m): [] for w in workloads for m in modes}
    identical: dict[tuple[str, str], bool] = {}
    for _ in range(args.rounds):
        for work, calls in workloads.items():
            baseline = None
            for mode, sup in modes.items():
                before = cpu_seconds(sup.server_pid)
                seconds, outcomes = timed(lambda sup=sup, calls=calls: list(sup.map(calls)))
                time.sleep(0.05)  # the last workers exit and are reaped: their CPU is the server's
                cpu[(work, mode)].append(cpu_seconds(sup.server_pid) - before)
                assert not any(isinstance(o, Died) for o in outcomes), outcomes
                times[(work, mode)].append(seconds)
                baseline = outcomes if baseline is None else baseline
                identical[(work, mode)] = identical.get((work, mode), True) and outcomes == baseline
    for sup in modes.values():
        sup.close()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; medians of {args.rounds} rounds\n")
    started, loaded, loaded_warm = (
        statistics.median(returned),
        statistics.median(ready),
        statistics.median(warmed),
    )
    print(f"{'fork server start-up':44} {'seconds':>9} {'ratio':>7}")
    for name, seconds in (
        ('python -c "import torch"', bare),
        ("Supervisor.start() returns", started),
        ("server ready (torch + runner imported)", loaded),
        ("server ready, warmed (+ catalogue, 1 thread)", loaded_warm),
    ):
        print(f"  {name:42} {seconds:9.4f} {seconds / bare:7.3f}")
    print()
    header = (
        "workload",
        "mode",
        "wall s",
        "ms/call",
        "vs in-proc",
        "CPU s",
        "CPU ms/call",
        "vs in-proc",
        "same",
    )
    print(
        f"{header[0]:28} {header[1]:20} {header[2]:>8} {header[3]:>9} {header[4]:>10}"
        f" {header[5]:>8} {header[6]:>11} {header[7]:>10} {header[8]:>5}"
    )
    for work, calls in workloads.items():
        base = statistics.median(times[(work, "in-process")])
        base_cpu = statistics.median(cpu[(work, "in-process")])
        for mode in modes:
            wall, used = statistics.median(times[(work, mode)]), statistics.median(cpu[(work, mode)])
            ratio = f"{wall / base:9.2f}x" if base > 0.01 else f"{'-':>10}"  # no ratio to ~0
            cpu_ratio = f"{used / base_cpu:9.2f}x" if base_cpu > 0.02 else f"{'-':>10}"
            same = "yes" if identical[(work, mode)] else "NO"
            print(
                f"{work:28} {mode:20} {wall:8.3f} {1000 * wall / len(calls):9.2f} {ratio}"
                f" {used:8.3f} {1000 * used / len(calls):11.2f} {cpu_ratio} {same:>5}"
            )
    return 0 if all(identical.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
