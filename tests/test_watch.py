"""``gradcheck run PATH --watch``: an edit to a spec's code runs that spec again; Ctrl-C ends it."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

from .ci_suites import write_spec, write_suite


def _reader(process: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _until(lines: queue.Queue[str], text: str, timeout: float = 60) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} never came; got {''.join(seen)!r}")


def test_watch_runs_again_only_what_an_edit_touched_and_ends_on_ctrl_c(tmp_path):
    suite = write_suite(tmp_path / "specs", "dense", "weight_doubled")
    env = {**os.environ, "NO_COLOR": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gradcheck_cli", "run", str(suite), "--watch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        lines = _reader(process)
        assert any("FAIL: 1 passed, 1 failed" in line for line in _until(lines, "FAIL:"))
        time.sleep(0.1)  # a different mtime for the edit
        write_spec(suite, "dense", like="bias_not_summed")  # break the right one
        rerun = _until(lines, "FAIL:")
        assert any("1 changed (dense), running again" in line for line in rerun)
        assert any(line.startswith("dense [") for line in rerun)
        assert not any(line.startswith("weight_doubled [") for line in rerun)  # untouched: not run again
        assert any("b: [missing_reduction]" in line for line in rerun)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
        assert process.stderr is not None and "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
