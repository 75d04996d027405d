"""Start-up cost of the gradcheck command, measured against `python -c "import torch"`.

    python benchmarks/bench_startup.py [--repeat 7]

Every command runs as a fresh process, interleaved round by round so that
machine noise hits them alike; the median of each is compared with the
median of the torch import. Targets (issue 2): --help and list under 0.35x
(they must not import torch), `gradcheck linear --in 3 --out 4` within 1.3x.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

TARGETS = {
    "gradcheck --help": 0.35,
    "gradcheck list": 0.35,
    "gradcheck linear --in 3 --out 4": 1.3,
}


def _gradcheck() -> list[str]:
    exe = shutil.which("gradcheck")
    return [exe] if exe else [sys.executable, "-m", "gradcheck_cli"]


def commands() -> dict[str, list[str]]:
    gc = _gradcheck()
    return {
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        "gradcheck --help": [*gc, "--help"],
        "gradcheck list": [*gc, "list"],
        "gradcheck linear --in 3 --out 4": [*gc, "linear", "--in", "3", "--out", "4"],
    }


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    cmds = commands()
    for argv in cmds.values():  # warm the file cache
        timed(argv)
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(args.repeat):
        for name, argv in cmds.items():
            times[name].append(timed(argv))
    base = statistics.median(times['python -c "import torch"'])
    print(f"{'command':34} {'median':>9} {'ratio':>7} {'target':>7}")
    ok = True
    for name, samples in times.items():
        median = statistics.median(samples)
        ratio = median / base
        target = TARGETS.get(name)
        mark = ""
        if target is not None:
            mark = f"<{target}x" + (" ok" if ratio < target else " OVER")
            ok &= ratio < target
        print(f"{name:34} {median * 1000:7.0f}ms {ratio:6.2f}x {mark:>7}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
