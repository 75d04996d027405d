"""The supervisor: checked code runs in a forked worker, and whatever it does to its process
comes back as an Outcome (its value, or a Died saying why not) while the other calls go on.

The targets the workers run live in tests/supervisor_targets.py (a worker imports them by name).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gradcheck_cli.supervisor import Call, Died, Supervisor, choose_frame, dump_frames
from tests import supervisor_targets as targets

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="worker processes need os.fork")


@pytest.fixture(scope="module")
def supervisor() -> Iterator[Supervisor]:
    with Supervisor(jobs=2, preload=("torch",)) as sup:
        yield sup


def lines_of(fn: object) -> set[int]:
    source, first = inspect.getsourcelines(fn)  # type: ignore[arg-type]
    return set(range(first, first + len(source)))


def where_in(died: Died, fn: object) -> bool:
    """``died.where`` is ``file:line`` inside ``fn``'s source."""
    assert died.where is not None, died
    path, _, line = died.where.rpartition(":")
    return Path(path).resolve() == Path(inspect.getfile(fn)).resolve() and int(line) in lines_of(fn)  # type: ignore[arg-type]


# -- /proc: which processes are still there ------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of a process, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def gone(pid: int) -> bool:
    """Not running: no such process, or a zombie waiting for its (new) parent to reap it."""
    stat = _stat(pid)
    return stat is None or stat[0] == "Z"


def _all_processes() -> dict[int, tuple[str, int, int]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            found[int(entry)] = stat
    return found


def descendants(pid: int) -> set[int]:
    """Live (not zombie) processes below ``pid``."""
    procs = _all_processes()
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, (_state, ppid, _) in procs.items():
            if ppid == parent and child not in found:
                found.add(child)
                frontier.append(child)
    return {p for p in found if procs[p][0] != "Z"}


def in_group(pgrp: int) -> set[int]:
    return {pid for pid, (state, _, group) in _all_processes().items() if group == pgrp and state != "Z"}


def wait_until(condition: object, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return bool(condition())  # type: ignore[operator]


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


# -- What comes back ----------------------------------------------------------------------------


def test_a_value_comes_back(supervisor: Supervisor) -> None:
    assert supervisor.run(targets.add, (2, 3), timeout=10, label="add") == 5


def test_a_timeout_longer_than_the_wait_can_hold_is_waited_for_a_day_at_a_time(
    supervisor: Supervisor,
) -> None:
    """select() takes at most ~2**31 ms; a spec's ``timeout: 1.0e+10`` overflowed it, a traceback."""
    assert supervisor.run(targets.add, (2, 3), timeout=1e10, label="add") == 5


def test_the_worker_is_a_fork_of_a_server_that_imported_torch(supervisor: Supervisor) -> None:
    first = supervisor.run(targets.identify, ())
    second = supervisor.run(targets.identify, ())
    assert isinstance(first, dict) and isinstance(second, dict)
    assert first["torch_imported"], "the worker inherits torch from the server, it does not import it"
    assert first["ppid"] == second["ppid"] == supervisor.server_pid
    assert first["pid"] != second["pid"] != os.getpid(), "each call is a fresh process"
    assert first["fd1_is_fd2"], "the checked code's stdout is the parent's stderr"
    assert first["sigint_ignored"], "Ctrl-C is the parent's to handle"


@pytest.mark.parametrize(
    ("target", "args", "message"),
    [
        (targets.exit_now, (0,), "the checked code ended the process: exit code 0"),
        (targets.exit_now, (7,), "the checked code ended the process: exit code 7"),
        (targets.sys_exit, (3,), "the checked code ended the process: exit code 3"),
        (targets.sys_exit, (None,), "the checked code ended the process: exit code 0"),
        (targets.sys_exit, ("a message",), "the checked code ended the process: exit code 1"),
    ],
)
def test_a_worker_that_ends_without_a_result_is_an_exit(
    supervisor: Supervisor, target: object, args: tuple[object, ...], message: str
) -> None:
    died = supervisor.run(target, args, timeout=10, label="ends")  # type: ignore[arg-type]
    assert isinstance(died, Died)
    assert (died.reason, died.message, died.label) == ("exit", message, "ends")


def test_sys_exit_says_where_it_was_called(supervisor: Supervisor) -> None:
    died = supervisor.run(targets.sys_exit, (3,))
    assert isinstance(died, Died) and where_in(died, targets.sys_exit)
    assert died.traceback is not None and "SystemExit: 3" in died.traceback


def test_a_segfault_is_a_signal_with_the_crash_site(supervisor: Supervisor) -> None:
    died = supervisor.run(targets.segfault, (), timeout=10)
    assert isinstance(died, Died)
    assert (died.reason, died.message) == ("signal", "the checked code was killed by SIGSEGV")
    assert where_in(died, targets.segfault), "faulthandler's dump names the crash site"
    assert died.traceback is not None and "Segmentation fault" in died.traceback


def test_an_exception_is_raised_with_its_type_message_and_line(supervisor: Supervisor) -> None:
    died = supervisor.run(targets.raise_value_error, ())
    assert isinstance(died, Died)
    assert died.reason == "raised"
    assert died.message == "the checked code raised ValueError: the checked code's own error"
    assert where_in(died, targets.raise_value_error)
    assert died.traceback is not None and died.traceback.startswith("Traceback")


def test_a_syntax_error_in_a_user_module_points_at_its_line(supervisor: Supervisor, tmp_path: Path) -> None:
    module = tmp_path / "broken.py"
    module.write_text("x = 1\ny = (\n")
    died = supervisor.run(targets.import_path, (str(module),))
    assert isinstance(died, Died) and died.reason == "raised"
    assert died.message.startswith("the checked code raised SyntaxError: ")
    assert died.where == f"{module}:2"


def test_a_lone_surrogate_in_an_exception_message_prints(supervisor: Supervisor) -> None:
    died = supervisor.run(targets.raise_surrogate, ())
    assert isinstance(died, Died)
    assert died.message == "the checked code raised ValueError: bad \\ud800 byte"
    died.message.encode("utf-8")  # a terminal or a JSON file can take it
    assert died.traceback is not None
    died.traceback.encode("utf-8")


# -- Timeouts say where the code was --------------------------------------------------------------


def test_a_spin_times_out_naming_the_function_and_its_line(supervisor: Supervisor) -> None:
    died = supervisor.run(targets.spin, (), timeout=1, label="spin")
    assert isinstance(died, Died)
    assert died.reason == "timeout"
    assert where_in(died, targets.spin)
    assert died.message == f"timed out after 1 s; the checked code was at {died.where} (in spin)"
    assert died.traceback is not None and "in spin" in died.traceback
    assert died.seconds >= 1.0, "the clock ran from the fork to the deadline"


def test_a_spin_inside_torch_ops_names_the_loop_not_torch(supervisor: Supervisor) -> None:
    died = supervisor.run(targets.spin_in_torch_ops, (), timeout=1)
    assert isinstance(died, Died) and died.reason == "timeout"
    assert where_in(died, targets.spin_in_torch_ops), died.traceback
    assert died.message.endswith("(in spin_in_torch_ops)")


def test_a_spin_at_import_of_a_user_module_names_the_module_line(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    module = tmp_path / "slow_import.py"
    module.write_text("import math\ncount = 0\nwhile True:\n    count += 1\n")
    died = supervisor.run(targets.import_path, (str(module),), timeout=1)
    assert isinstance(died, Died) and died.reason == "timeout"
    assert died.where in (f"{module}:3", f"{module}:4"), died.traceback
    assert died.message.endswith("(in <module>)")


# -- Results that cannot come back -------------------------------------------------------------


def test_an_unpicklable_result_names_its_type(supervisor: Supervisor) -> None:
    died = supervisor.run(targets.unpicklable, ())
    assert isinstance(died, Died)
    assert died.reason == "unpicklable"
    assert died.message == (
        "the result could not be sent back: dict cannot be pickled"
        " (TypeError: cannot pickle 'generator' object)"
    )


def test_a_call_that_cannot_be_pickled_is_not_sent(supervisor: Supervisor) -> None:
    died = supervisor.run(lambda: 1, ())
    assert isinstance(died, Died) and died.reason == "unpicklable"
    assert died.message.startswith("the call could not be sent to a worker: ")


def test_a_result_whose_class_the_parent_cannot_import(supervisor: Supervisor, tmp_path: Path) -> None:
    module = tmp_path / "only_in_the_worker.py"
    module.write_text("class Thing:\n    pass\n\ndef make():\n    return Thing()\n")
    died = supervisor.run(targets.import_and_call, (str(module), "make"))
    assert isinstance(died, Died) and died.reason == "unpicklable"
    assert died.message.startswith("the result could not be read back: ModuleNotFoundError")


def test_a_huge_result_comes_back_whole(supervisor: Supervisor) -> None:
    value = supervisor.run(targets.big_result, (64,), timeout=30)
    assert isinstance(value, bytes) and len(value) == 64 << 20 and value.count(b"x") == len(value)


def test_a_result_over_the_limit_is_refused_in_the_worker() -> None:
    with Supervisor(preload=(), max_result_bytes=1 << 20) as small:
        died = small.run(targets.big_result, (2,))
    assert isinstance(died, Died) and died.reason == "unpicklable"
    assert (
        died.message == "the result could not be sent back: bytes pickles to 2.0 MiB, over the 1.0 MiB limit"
    )


@needs_proc
def test_garbage_on_the_workers_channel_is_refused_not_allocated(supervisor: Supervisor) -> None:
    started = time.monotonic()
    died = supervisor.run(targets.claim_a_huge_result, (), timeout=20)
    assert isinstance(died, Died) and died.reason == "unpicklable"
    assert died.message == "the result could not be read back: the worker sent something else than a result"
    assert time.monotonic() - started < 10, "the worker is killed, not waited for"


def test_closing_stdout_and_stderr_does_not_lose_the_result(supervisor: Supervisor) -> None:
    assert supervisor.run(targets.close_stdio, ()) == "still here"


def test_prints_go_to_stderr_never_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    with Supervisor(preload=()) as sup:  # started here, so its workers write to the captured fds
        assert sup.run(targets.print_to_stdout, ("from the checked code",)) == "printed"
    out, err = capfd.readouterr()
    assert "from the checked code" not in out and "raw fd 1 write" not in out
    assert "from the checked code" in err and "raw fd 1 write" in err


# -- One call's side effects never reach another -------------------------------------------------


def test_chdir_in_a_call_does_not_reach_the_next_call_or_the_parent(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    here = os.getcwd()
    assert supervisor.run(targets.change_directory, (str(tmp_path),)) == str(tmp_path)
    assert supervisor.run(targets.current_directory, ()) == here
    assert os.getcwd() == here


def test_a_worker_starts_in_the_parents_current_directory(
    supervisor: Supervisor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert supervisor.run(targets.current_directory, ()) == str(tmp_path)


def test_a_monkeypatched_torch_function_does_not_reach_the_next_call(supervisor: Supervisor) -> None:
    assert supervisor.run(targets.linear_is_torchs, ()) is True
    assert supervisor.run(targets.patch_linear, ()) == "patched"
    assert supervisor.run(targets.linear_is_torchs, ()) is True


def test_sys_path_and_sys_modules_changes_do_not_reach_the_next_call(supervisor: Supervisor) -> None:
    assert supervisor.run(targets.grow_sys_path, ("/nowhere",)) == ["/nowhere"]
    assert supervisor.run(targets.sys_state, ()) == ([sys.path[0]], False)
    assert "/nowhere" not in sys.path


# -- map: order, concurrency, one bad call affects only itself --------------------------------------


def test_map_keeps_submission_order_with_two_jobs(supervisor: Supervisor) -> None:
    calls = [Call(targets.timed_sleep, (0.3 - 0.05 * i, i), label=f"c{i}") for i in range(6)]
    outcomes = list(supervisor.map(calls))
    assert [o[0] for o in outcomes] == list(range(6))  # type: ignore[index]
    spans = [(start, end) for _, start, end, _ in outcomes]  # type: ignore[misc]
    running_at = [sum(s <= t < e for s, e in spans) for t, _ in spans]
    assert max(running_at) == 2, "two workers at a time, never more"
    assert len({pid for *_, pid in outcomes}) == 6  # type: ignore[misc]


def test_a_crash_or_timeout_in_map_affects_only_its_own_call(supervisor: Supervisor) -> None:
    calls = [
        Call(targets.add, (1, 1), label="first"),
        Call(targets.segfault, label="segfault"),
        Call(targets.spin, timeout=1, label="spin"),
        Call(targets.exit_now, (7,), label="exit"),
        Call(targets.add, (2, 2), label="middle"),
        Call(targets.sys_exit, (3,), label="sys.exit"),
        Call(targets.unpicklable, label="unpicklable"),
        Call(targets.add, (3, 3), label="last"),
    ]
    outcomes = list(supervisor.map(calls))
    assert outcomes[0] == 2 and outcomes[4] == 4 and outcomes[7] == 6
    died = {o.label: o.reason for o in outcomes if isinstance(o, Died)}
    assert died == {
        "segfault": "signal",
        "spin": "timeout",
        "exit": "exit",
        "sys.exit": "exit",
        "unpicklable": "unpicklable",
    }


@needs_proc
def test_close_kills_running_workers_and_the_server() -> None:
    before = descendants(os.getpid())
    sup = Supervisor(jobs=3, preload=())
    outcomes = sup.map([Call(targets.add, (1, 2)), Call(targets.spin), Call(targets.spin)])
    assert next(outcomes) == 3  # the map is now suspended, with two workers spinning
    running = descendants(os.getpid()) - before
    assert len(running) >= 3, "the server and two spinning workers (and a spare)"
    sup.close()
    assert descendants(os.getpid()) - before == set()
    assert all(gone(pid) for pid in running)


def test_the_callers_signal_handlers_come_back_when_the_map_ends(supervisor: Supervisor) -> None:
    def mine(signum: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    sigint = signal.getsignal(signal.SIGINT)
    try:
        outcomes = supervisor.map([Call(targets.add, (1, 1)), Call(targets.add, (2, 2))])
        assert next(outcomes) == 2
        assert signal.getsignal(signal.SIGTERM) is not mine, "the supervisor's while the map is open"
        assert signal.getsignal(signal.SIGINT) is not sigint
        assert list(outcomes) == [4]
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is sigint
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- Warm-up in the server ------------------------------------------------------------------------


def test_a_warm_up_runs_once_in_the_server_and_workers_keep_the_default_threads(
    supervisor: Supervisor,
) -> None:
    cold, threads = supervisor.run(targets.warmed, ())  # type: ignore[misc]
    assert cold is False and threads is not None
    with Supervisor(preload=("torch",), warmup=("tests.supervisor_targets:warm_up",)) as warm:
        assert warm.run(targets.warmed, ()) == (True, threads), "warmed, on torch's default thread count"
        assert warm.run(targets.spin_in_torch_ops, (), timeout=1).reason == "timeout"  # type: ignore[union-attr]


def test_a_warm_up_that_starts_a_thread_is_dropped_so_workers_cannot_hang(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with Supervisor(preload=(), warmup=("tests.supervisor_targets:warm_up_with_a_thread",)) as sup:
        assert sup.run(targets.warmed, (), timeout=30) == (False, None)
    assert "the worker server's warm-up started a thread" in capfd.readouterr().err


def test_a_warm_up_that_fails_is_one_line_and_the_calls_run(capfd: pytest.CaptureFixture[str]) -> None:
    with Supervisor(preload=(), warmup=("tests.supervisor_targets:warm_up_that_fails",)) as sup:
        assert sup.run(targets.add, (1, 2)) == 3
    err = capfd.readouterr().err
    assert (
        "gradcheck: the worker server's warm-up tests.supervisor_targets:warm_up_that_fails failed:"
        " RuntimeError: no warm-up today"
    ) in err
    assert "Traceback" not in err


# -- In this process (--pdb, the Python API) ------------------------------------------------------


def test_in_process_calls_give_the_same_outcomes() -> None:
    here = Supervisor(isolate=False)
    assert here.run(targets.add, (2, 3)) == 5
    died = here.run(targets.sys_exit, (3,))
    assert isinstance(died, Died) and (died.reason, died.message) == (
        "exit",
        "the checked code ended the process: exit code 3",
    )
    assert where_in(died, targets.sys_exit)
    died = here.run(targets.raise_value_error, ())
    assert isinstance(died, Died) and died.reason == "raised" and where_in(died, targets.raise_value_error)
    here.close()


def test_ctrl_c_in_process_interrupts_this_call_and_the_rest() -> None:
    here = Supervisor(isolate=False)
    calls = [Call(targets.add, (1, 1)), Call(targets.raise_keyboard_interrupt), Call(targets.add, (2, 2))]
    outcomes = list(here.map(calls))
    assert outcomes[0] == 2
    assert [o.reason for o in outcomes[1:]] == ["interrupted", "interrupted"]  # type: ignore[union-attr]
    assert here.interrupted == signal.SIGINT
    here.close()


# -- Where a frame is -----------------------------------------------------------------------------


def test_the_deepest_frame_of_the_checked_code_is_chosen() -> None:
    torch_spec = importlib.util.find_spec("torch")
    assert torch_spec is not None and torch_spec.origin is not None
    torch_file = str(Path(torch_spec.origin).parent / "nn" / "functional.py")
    frames = [
        ("<string>", 1, "<module>"),
        (str(REPO / "gradcheck_cli" / "supervisor.py"), 10, "_worker"),
        ("/home/me/layer.py", 12, "backward"),
        ("/home/me/layer.py", 30, "helper"),
        (torch_file, 2000, "linear"),
        ("<frozen importlib._bootstrap>", 241, "_call_with_frames_removed"),
    ]
    assert choose_frame(frames) == ("/home/me/layer.py", 30, "helper")
    only_machinery = [frames[0], frames[1], frames[4]]
    assert choose_frame(only_machinery) == frames[4], "no checked code: the deepest frame of any kind"
    assert choose_frame([]) is None


def test_a_faulthandler_dump_is_read_from_the_workers_thread() -> None:
    supervisor_file = str(REPO / "gradcheck_cli" / "supervisor.py")
    dump = textwrap.dedent(
        f"""\
        Thread 0x00007f0000000001 (most recent call first):
          File "/usr/lib/python3.11/threading.py", line 320 in wait
          File "/home/me/helper_thread.py", line 5 in run

        Current thread 0x00007f0000000002 (most recent call first):
          File "/home/me/layer.py", line 12 in backward
          File "{supervisor_file}", line 600 in _worker
          File "<string>", line 7 in <module>
        """
    )
    assert dump_frames(dump) == [
        ("<string>", 7, "<module>"),
        (supervisor_file, 600, "_worker"),
        ("/home/me/layer.py", 12, "backward"),
    ]


# -- The server dies, the parent dies, signals ----------------------------------------------------


@needs_proc
def test_workers_die_with_their_server_and_the_next_map_starts_a_new_one(tmp_path: Path) -> None:
    marker = tmp_path / "spinning"
    with Supervisor(jobs=2, preload=()) as sup:
        assert sup.run(targets.add, (1, 1)) == 2
        server = sup.server_pid
        assert server is not None
        outcomes = sup.map(
            [Call(targets.add, (2, 2)), Call(targets.spin_marking, (str(marker),), timeout=30)]
        )
        assert next(outcomes) == 4
        assert wait_until(lambda: marker.exists(), 10.0)
        worker = int(marker.read_text())
        try:
            os.kill(server, signal.SIGKILL)
            lost = next(outcomes)
            assert isinstance(lost, Died) and lost.reason == "lost"
            assert lost.message == "the worker was lost: gradcheck's worker server ended (killed by SIGKILL)"
            assert wait_until(lambda: gone(worker), 2.0), "the worker outlived its server"
        finally:
            if not gone(worker):
                os.kill(worker, signal.SIGKILL)
        assert list(outcomes) == []
        assert sup.run(targets.add, (3, 3)) == 6, "a new server for the next map"
        assert sup.server_pid != server


DRIVER = textwrap.dedent(
    """\
    import os, sys, signal, json
    from gradcheck_cli.supervisor import Call, Died, Supervisor
    from tests import supervisor_targets as targets

    mode, marker = sys.argv[1], sys.argv[2]
    if mode in ("between-here", "between-workers"):
        sup = Supervisor(isolate=mode == "between-workers", preload=())
        calls = [Call(targets.add, (1, 1), label="a"), Call(targets.add, (2, 2), label="b")]
        for call, out in zip(calls, sup.map(calls)):
            print(call.label, out.reason if isinstance(out, Died) else "completed", flush=True)
            if call.label == "a":
                os.kill(os.getpid(), signal.SIGTERM)  # while this code, not a call, runs
        sup.close()
        print("interrupted by", sup.interrupted.name if sup.interrupted else None, flush=True)
        sys.exit(128 + sup.interrupted if sup.interrupted else 0)
    if mode == "here":
        sup = Supervisor(isolate=False)
        calls = [Call(targets.add, (1, 1), label="a"), Call(targets.terminate_self, label="term"),
                 Call(targets.add, (2, 2), label="b")]
        for call, out in zip(calls, sup.map(calls)):
            print(call.label, out.reason if isinstance(out, Died) else "completed", flush=True)
        print("interrupted by", sup.interrupted.name if sup.interrupted else None, flush=True)
        sys.exit(128 + sup.interrupted if sup.interrupted else 0)
    if mode == "tensor":
        with Supervisor(preload=("torch",)) as sup:
            out = sup.run(targets.tensor_result, ())
        print(json.dumps([out.reason, out.message, "torch" in sys.modules]))
        sys.exit(0)
    sup = Supervisor(jobs=1, preload=())  # these calls need no torch: a fast start
    sup.start()
    print("server", sup.server_pid, flush=True)
    calls = [Call(targets.add, (1, 1), label="a"), Call(targets.add, (2, 2), label="b"),
             Call(targets.spin_marking, (marker,), label="spin"),
             Call(targets.add, (3, 3), label="c"), Call(targets.add, (4, 4), label="d")]
    for call, out in zip(calls, sup.map(calls)):
        print(call.label, out.reason if isinstance(out, Died) else "completed", flush=True)
    sup.close()
    print("interrupted by", sup.interrupted.name if sup.interrupted else None, flush=True)
    sys.exit(128 + sup.interrupted if sup.interrupted else 0)
    """
)


def start_driver(mode: str, marker: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, mode, str(marker)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal would give it
    )


def wait_for_spin(driver: subprocess.Popen[str], marker: Path) -> tuple[int, int]:
    """The server's and the spinning worker's pids, once it spins."""
    assert driver.stdout is not None
    line = driver.stdout.readline()
    assert line.startswith("server "), line
    assert wait_until(lambda: marker.exists() and marker.read_text().strip(), 30.0), "the spin never started"
    return int(line.split()[1]), int(marker.read_text())


@needs_proc
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_a_signal_to_the_parent_reports_the_completed_calls_and_leaves_nothing(
    tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    marker = tmp_path / "spinning"
    driver = start_driver("map", marker)
    try:
        server, worker = wait_for_spin(driver, marker)
        if signum == signal.SIGINT:
            os.killpg(driver.pid, signum)  # Ctrl-C reaches the whole foreground group
        else:
            os.kill(driver.pid, signum)  # kill PID: the parent alone
        out, err = driver.communicate(timeout=10)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == code, err
    assert out.splitlines() == [
        "a completed",
        "b completed",
        "spin interrupted",
        "c interrupted",
        "d interrupted",
        f"interrupted by {signum.name}",
    ]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert gone(server) and gone(worker)
    assert in_group(driver.pid) == set()


@needs_proc
def test_killing_the_parent_leaves_nothing_running(tmp_path: Path) -> None:
    marker = tmp_path / "spinning"
    driver = start_driver("map", marker)
    try:
        server, worker = wait_for_spin(driver, marker)
        os.kill(driver.pid, signal.SIGKILL)
        driver.communicate(timeout=10)
        assert wait_until(lambda: in_group(driver.pid) == set(), 2.0), (
            "a worker or the server outlived the parent"
        )
        assert gone(server) and gone(worker)
    finally:
        for pid in in_group(driver.pid):  # whatever outlived it, so that a failure leaves nothing spinning
            os.kill(pid, signal.SIGKILL)


def test_sigterm_during_an_in_process_call_interrupts_it_and_the_rest(tmp_path: Path) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", DRIVER, "here", str(tmp_path / "unused")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 143, ran.stderr
    assert ran.stdout.splitlines() == [
        "a completed",
        "term interrupted",
        "b interrupted",
        "interrupted by SIGTERM",
    ]


@pytest.mark.parametrize("mode", ["between-here", "between-workers"])
def test_sigterm_between_two_calls_is_held_for_the_next(tmp_path: Path, mode: str) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", DRIVER, mode, str(tmp_path / "unused")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 143, ran.stderr
    assert ran.stdout.splitlines() == ["a completed", "b interrupted", "interrupted by SIGTERM"]
    assert "Traceback" not in ran.stderr


def test_a_tensor_result_never_imports_torch_in_the_parent(tmp_path: Path) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", DRIVER, "tensor", str(tmp_path / "unused")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    reason, message, torch_imported = __import__("json").loads(ran.stdout)
    assert reason == "unpicklable"
    assert message == (
        "the result could not be read back: _pickle.UnpicklingError: it holds a"
        " torch._utils._rebuild_tensor_v2, and this process does not import torch"
    )
    assert torch_imported is False
