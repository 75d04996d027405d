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


# The poll itself, driven directly: no sleeping, no subprocess.


def _polls(tmp_path, *targets):
    from gradcheck_cli.suite import collect

    ran: list[list[str]] = []
    items = collect(list(targets))
    return items, ran, (lambda again: ran.append([item.name for item in again]))


def test_a_spec_given_by_name_and_deleted_is_said_gone_and_the_watch_goes_on(tmp_path, capsys):
    from gradcheck_cli.watch import watch

    suite = write_suite(tmp_path / "specs", "dense", "weight_doubled")
    dense, other = suite / "dense.yaml", suite / "weight_doubled.yaml"
    items, ran, run = _polls(tmp_path, dense, other)
    dense.unlink()
    watch([dense, other], None, items, run, interval=0, rounds=1)  # no traceback
    out = capsys.readouterr().out
    assert f"dense ({dense}) is gone; still watching" in out
    assert ran == []  # nothing else changed: nothing runs again

    from gradcheck_cli.watch import Watcher

    watcher = Watcher([dense, other], None, items, run)
    assert watcher.step() == [] and watcher.step() == []
    assert capsys.readouterr().out.count("is gone") == 1  # said once, then quiet
    write_spec(suite, "dense")  # back: collected again and run
    assert [item.name for item in watcher.step()] == ["dense"]
    assert ran == [["dense"]]


def test_a_spec_deleted_from_a_watched_folder_is_said_gone_and_the_rest_still_run_again(tmp_path, capsys):
    from gradcheck_cli.watch import Watcher

    suite = write_suite(tmp_path / "specs", "dense", "weight_doubled")
    items, ran, run = _polls(tmp_path, suite)
    watcher = Watcher([suite], None, items, run)
    (suite / "dense.yaml").unlink()
    assert watcher.step() == []
    assert "dense (" in capsys.readouterr().out
    write_spec(suite, "weight_doubled", like="dense")  # an edit to a spec still there
    (suite / "weight_doubled.py").touch()
    assert watcher.step() and ran == [["weight_doubled"]]


def test_a_watched_folder_that_goes_away_is_waited_for(tmp_path, capsys):
    import shutil

    from gradcheck_cli.watch import Watcher

    suite = write_suite(tmp_path / "specs", "dense")
    items, ran, run = _polls(tmp_path, suite)
    watcher = Watcher([suite], None, items, run)
    shutil.rmtree(suite)
    assert watcher.step() == []
    out = capsys.readouterr().out
    assert f"{suite} is gone; watching for it to come back" in out
    write_suite(suite, "dense")
    assert [item.name for item in watcher.step()] == ["dense"]


def test_a_poll_reads_no_spec_until_a_file_or_a_folder_changes(tmp_path, monkeypatch):
    from gradcheck_cli import watch as watching

    suite = write_suite(tmp_path / "specs", "dense")
    (suite / "more").mkdir()
    items, ran, run = _polls(tmp_path, suite)
    collected: list[int] = []
    real = watching.collect
    monkeypatch.setattr(watching, "collect", lambda *a: collected.append(1) or real(*a))
    watcher = watching.Watcher([suite], None, items, run)
    assert watcher.step() == [] and len(collected) == 1  # the first poll collects
    assert watcher.step() == [] and watcher.step() == [] and len(collected) == 1  # then nothing to read
    write_spec(suite / "more", "weight_doubled")  # a new spec in a subfolder changes its listing
    assert [item.name for item in watcher.step()] == ["weight_doubled"] and len(collected) == 2
    for _ in range(watching.COLLECT_EVERY - 1):
        watcher.step()
    assert len(collected) == 2
    watcher.step()
    assert len(collected) == 3  # and every COLLECT_EVERY-th poll collects all the same


def test_a_file_that_becomes_a_spec_by_an_edit_in_place_is_run_on_the_next_poll(tmp_path):
    from gradcheck_cli.watch import Watcher

    suite = write_suite(tmp_path / "specs", "dense")
    items, ran, run = _polls(tmp_path, suite)
    watcher = Watcher([suite], None, items, run)
    watcher.step()
    spec = write_spec(tmp_path / "elsewhere", "weight_doubled")
    (suite / "weight_doubled.py").write_text((spec.parent / "weight_doubled.py").read_text())
    new = suite / "weight_doubled.yaml"
    new.write_text("")  # an editor's new, empty file: not a spec yet
    assert watcher.step() == []
    with new.open("w") as f:  # saved in place: the folder's listing does not change
        f.write(spec.read_text())
    assert [item.name for item in watcher.step()] == ["weight_doubled"]


def test_a_spec_whose_code_file_is_missing_runs_again_when_the_file_appears(tmp_path):
    from gradcheck_cli.watch import Watcher

    suite = write_suite(tmp_path / "specs", "dense")
    code = (suite / "dense.py").read_text()
    (suite / "dense.py").unlink()
    items, ran, run = _polls(tmp_path, suite)
    assert items[0].error is not None  # the spec does not load without its code
    watcher = Watcher([suite], None, items, run)
    watcher.step()
    (suite / "dense.py").write_text(code)
    assert [item.name for item in watcher.step()] == ["dense"] and ran[-1] == ["dense"]
