"""The comparison of one tensor at scale: the compare() before issue 13 against today's.

    python benchmarks/bench_compare.py [--sizes 1024 4096 8192] [--repeat 3] [--threads N]

A run with ``--threads 1`` on the 2-core development machine, shared and busy (load ~10):

    torch 2.13.0+cpu, 1 thread(s); median of 3 runs
           size dtype    case     old s    new s  old/new inputs MiB  old extra  new extra  old/new
     1024x1024  float64  pass     0.235    0.011    21.4x         16         49          7     6.5x
     1024x1024  float64  fail     1.184    0.034    35.3x         16         86          7    12.4x
     1024x1024  float32  pass     0.472    0.030    15.6x          8         64          8     8.1x
     1024x1024  float32  fail     7.494    0.137    54.9x          8        126          6    19.7x
     4096x4096  float64  pass    12.525    0.804    15.6x        256        692         23    30.7x
     4096x4096  float64  fail     9.163    0.675    13.6x        256        756         21    36.0x
     4096x4096  float32  pass     6.942    0.688    10.1x        128        947         34    28.1x
     4096x4096  float32  fail    11.260    0.689    16.3x        128        963         29    33.7x
     8192x8192  float64  pass    22.339    1.443    15.5x       1024       2500         39    63.5x
     8192x8192  float64  fail    17.406    1.916     9.1x       1024       2692         70    38.5x
     8192x8192  float32  pass    18.722    1.606    11.7x        512       3523         79    44.8x
     8192x8192  float32  fail    30.215    2.498    12.1x        512       3715         93    39.8x

Each measurement is a fresh child process that builds an expected and an actual square tensor
(a passing pair: the actual is a few units of rounding off; a failing one: every 100th element
off by 1), then runs one compare() and reports its time and its peak memory beyond the two
inputs (``ru_maxrss`` after minus before: what compare itself allocated at its peak). The old
compare is copied here as it was (``old_compare``): it converted both tensors to float64 and made
some 25 full-size temporaries. Children run interleaved (old, new, old, new, ...); the median of
``--repeat`` is shown, with old/new ratios side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

from gradcheck_cli.compare import compare
from gradcheck_cli.result import Check
from gradcheck_cli.tolerance import tolerance_for

# -- the baseline: compare() as it was before issue 13 ---------------------------------------------


def _old_allclose(atol: float, rtol: float, actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    within = (actual - expected).abs() <= atol + rtol * expected.abs()
    return (within & torch.isfinite(expected)) | (actual == expected)


def old_compare(
    name: str, kind: str, expected: torch.Tensor, actual: torch.Tensor, atol: float, rtol: float
) -> Check:
    check = Check(
        name=name,
        kind=kind,
        expected_shape=list(expected.shape),
        actual_shape=list(actual.shape),
        status="pass",
        numel=expected.numel(),
    )
    if tuple(expected.shape) != tuple(actual.shape):
        check.status = "shape_error"
        return check
    e = expected.detach().to("cpu", torch.float64)
    a = actual.detach().to("cpu", torch.float64)
    close = _old_allclose(atol, rtol, a, e)
    finite = torch.isfinite(a) & torch.isfinite(e)
    diff = torch.where(finite, (a - e).abs(), torch.zeros_like(e))
    rel = torch.where(e != 0, diff / e.abs().clamp_min(1e-300), torch.where(diff > 0, math.inf, 0.0))
    check.max_abs_err = float(diff.max()) if diff.numel() else 0.0
    check.max_rel_err = float(rel.max()) if rel.numel() else 0.0
    check.mismatched = int((~close).sum())
    if check.mismatched:
        check.status = "mismatch"
        excess = diff - (atol + rtol * e.abs())
        excess = torch.where(finite, excess, torch.full_like(e, float("inf")))
        excess = torch.where(close, torch.full_like(e, float("-inf")), excess)
        flat = int(excess.reshape(-1).argmax())
        index = torch.unravel_index(torch.tensor(flat), e.shape) if e.dim() else ()
        check.worst_index = [int(i) for i in index]
        check.expected_value = float(e.reshape(-1)[flat])
        check.actual_value = float(a.reshape(-1)[flat])
    return check


# -- one measurement, in a child process -------------------------------------------------------------


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def child(impl: str, size: int, dtype: str, case: str, threads: int) -> dict[str, Any]:
    if threads:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    expected = torch.randn(size, size, generator=gen, dtype=getattr(torch, dtype))
    actual = expected * (1 + 2e-7 if dtype == "float32" else 1 + 2e-8)  # within the default tolerance
    if case == "fail":
        actual.view(-1)[::100] += 1.0
    tol = tolerance_for(dtype)
    before = _peak_bytes()
    start = time.perf_counter()
    if impl == "old":
        check = old_compare("x", "input", expected, actual, tol.atol, tol.rtol)
    else:
        check = compare("x", "input", expected, actual, tol)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "extra": _peak_bytes() - before,
        "status": check.status,
        "mismatched": check.mismatched,
        "worst": check.worst_index,
    }


def measure(impl: str, size: int, dtype: str, case: str, threads: int) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", impl, str(size), dtype, case, "--threads", str(threads)]
    ran = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(ran.stdout)  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 8192])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads in the children (0: torch's default)"
    )
    parser.add_argument("--child", nargs=4, metavar=("IMPL", "SIZE", "DTYPE", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl, size, dtype, case = args.child
        print(json.dumps(child(impl, int(size), dtype, case, args.threads)))
        return 0

    threads = args.threads or torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} thread(s); median of {args.repeat} runs")
    print(
        f"{'size':>11} {'dtype':8} {'case':5} {'old s':>8} {'new s':>8} {'old/new':>8}"
        f" {'inputs MiB':>10} {'old extra':>10} {'new extra':>10} {'old/new':>8}"
    )
    for size in args.sizes:
        for dtype in ("float64", "float32"):
            for case in ("pass", "fail"):
                runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
                for _ in range(args.repeat):
                    for impl in runs:
                        runs[impl].append(measure(impl, size, dtype, case, args.threads))
                old, new = runs["old"], runs["new"]
                same = {(r["status"], r["mismatched"], str(r["worst"])) for r in old + new}
                if len(same) != 1:
                    raise SystemExit(f"old and new disagree at {size} {dtype} {case}: {same}")
                t_old = statistics.median(r["seconds"] for r in old)
                t_new = statistics.median(r["seconds"] for r in new)
                m_old = statistics.median(r["extra"] for r in old) / 2**20
                m_new = statistics.median(r["extra"] for r in new) / 2**20
                inputs = 2 * size * size * torch.finfo(getattr(torch, dtype)).bits / 8 / 2**20
                print(
                    f"{size:>5}x{size:<5} {dtype:8} {case:5} {t_old:8.3f} {t_new:8.3f} {t_old / t_new:7.1f}x"
                    f" {inputs:10.0f} {m_old:10.0f} {m_new:10.0f} {m_old / max(m_new, 1):7.1f}x"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
