"""Run a function in a worker process, and say why it did not return when it did not.

``Supervisor.run(fn, args, timeout=..., label=...)`` runs a picklable module-level
function in a fresh worker and returns its value, or a :class:`Died` that says
what happened instead: the process ended (``os._exit``, ``sys.exit``), a signal
killed it (a segfault), it ran past its timeout (with the file:line where it was
spinning), its result could not be pickled, it raised, or Ctrl-C/SIGTERM came
first. ``map`` does the same for many calls, ``jobs`` at a time, in order.

What runs where:

- This process (the "parent") never imports torch. ``start()`` launches a fork
  server (``python -c ...``) that imports torch and the ``preload`` modules once,
  before any torch op (torch's thread pools are not fork-safe once used), and
  returns at once; the first call waits for it, so the import overlaps the
  parent's own start-up.
- Each call is a fresh ``fork()`` of that server: it inherits the imported
  modules (no second torch import) and nothing from earlier calls, so
  ``os.chdir``, a monkeypatched ``torch.nn.functional.linear`` or a changed
  ``sys.modules``/``sys.path`` end with the call. The worker takes the parent's
  current directory and ``sys.path`` at the time of the call (like
  multiprocessing); the environment is the parent's as of ``start()``.
- In the worker, fd 1 is fd 2 (prints in the checked code go to stderr and can
  never corrupt a report written to stdout), stdin is ``/dev/null``, SIGINT is
  ignored (the parent handles Ctrl-C; no worker tracebacks), and the worker gets
  SIGKILL when the server dies, the server when the parent dies
  (``PR_SET_PDEATHSIG`` on Linux; elsewhere the server kills its workers when
  the parent's end of its socket closes).

Why a small server of our own rather than multiprocessing's "forkserver":
multiprocessing's worker re-imports the parent's ``__main__`` (pytest's, the
CLI's script) and runs its own start-up in every child; it has no hook to set
``PR_SET_PDEATHSIG`` in the server or its workers, or to redirect fds and ignore
SIGINT before the preload; ``ProcessPoolExecutor`` reports a worker that dies
only as a broken pool, with no exit status or signal; and issue 9 saw its
forkserver and a spinning worker outlive a SIGTERM to the parent. The protocol here is small:
the parent sends the server one 17-byte record and two fds per call (a socket
for the request and the result, a pipe for faulthandler's dumps); the server
forks and reports the worker's pid and, later, its raw wait status.

Speed: forking a process that has imported torch costs some 3 ms (its page
tables: ~150 MB of anonymous memory), and its exit as much again. The server
keeps one spare worker, forked ahead of need and waiting for its call's fds, so
a call does not wait for a fork, and the next spare is forked while the call
runs; a worker's slot counts as free once it has sent its result (it runs no
more checked code, only ``os._exit``). The value comes back pickled; reading it
here imports nothing this process has not imported that ``never_import`` names
(torch by default), and failures come back as plain tuples read with no
globals at all. It is not a sandbox: the checked code is code, it can signal
this process, and a value it returns is trusted like the code that built it.

Timeouts: the clock starts when the worker is forked (a slow server start-up is
not the checked code's time). At the deadline the parent has the server send the
worker SIGUSR1, on which ``faulthandler`` (registered in the worker) writes every
thread's stack to the dump pipe from a C signal handler, so it works inside a
torch op loop and at the import of a user module alike; then SIGKILL. The
location reported is the deepest frame that is not torch, numpy, site-packages,
the standard library or gradcheck_cli's own machinery (its ``layers/`` are
checked code), else the deepest frame of any kind. ``faulthandler.enable`` in
the worker gives the same location for a segfault.

Threads: workers keep torch's default thread count (what a serial run and the
Python API use). Measured on this machine (torch 2.13, MKL, 2 cores): the full
reductions ``sum()``/``mean()`` of a 5M-element tensor give different last bits
with 1, 2 or 4 threads, in float64 as in float32 (matmul, linear, conv2d,
softmax, logsumexp, layer_norm, per-dim sums, norm and linear's gradients do
not). Losses reduce with sum or mean, so ``torch.set_num_threads(1)`` in parallel
workers could change a check's numbers between ``--jobs 1`` and ``--jobs 2``.
Small tensors (under torch's 32768-element grain) run on one thread anyway, so
there is no oversubscription for them; big layers with ``jobs`` > 1 share the
cores, which costs time, not bits.

Signals: while ``run``/``map`` is running (and while a ``map`` is suspended
between yields), SIGINT and SIGTERM are caught: the workers are killed, no new
call starts, the calls that had completed keep their values, the rest come back
as ``Died(reason="interrupted")``, and :attr:`Supervisor.interrupted` names the
signal (exit ``128 + signal``: 130, 143). The previous handlers come back when
the call returns, and at the latest on ``close()``.

``isolate=False`` runs the calls in this process (``--pdb``, the Python API),
with the same outcomes for what can be caught there (``sys.exit``, an
exception, Ctrl-C, SIGTERM) and no timeouts.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import importlib
import io
import json
import os
import pickle
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Generic, Literal, NoReturn, TypeAlias, TypeVar

from .errors import GradcheckError, Stopped, printable
from .frames import Frame, at, choose_frame, exception_frames, traceback_frames

T = TypeVar("T")

Reason = Literal["exit", "signal", "timeout", "unpicklable", "raised", "interrupted", "lost"]
REASONS: tuple[Reason, ...] = ("exit", "signal", "timeout", "unpicklable", "raised", "interrupted", "lost")

# The longest wait for faulthandler's dump after SIGUSR1, then the wait for the rest of it once it
# has started (a C signal handler writes it in microseconds), before SIGKILL.
DUMP_GRACE = 0.5
DUMP_SETTLE = 0.02
# A result bigger than this is not sent back (it would be held in the parent's memory whole).
MAX_RESULT_BYTES = 1 << 30


@dataclass(frozen=True)
class Died:
    """Why a call returned no value.

    ``reason``: ``exit`` (the process ended without sending a result:
    ``os._exit``, ``sys.exit``), ``signal`` (killed by one, e.g. SIGSEGV),
    ``timeout``, ``unpicklable`` (the call could not be sent or its result
    could not come back), ``raised`` (an exception escaped the function),
    ``interrupted`` (SIGINT/SIGTERM in the parent came first) or ``lost`` (the
    fork server itself died). ``message`` is one line; ``where`` is the
    checked code's ``file:line`` when known; ``traceback`` the raw text
    (a faulthandler dump or a Python traceback) when there is one.
    """

    reason: Reason
    message: str
    where: str | None = None
    traceback: str | None = None
    label: str = ""
    seconds: float = 0.0  # from the worker's fork (the call's start in-process) to the end


# What ``run`` returns and ``map`` yields: the function's value, or why there is none.
Outcome: TypeAlias = T | Died


@dataclass(frozen=True)
class Call(Generic[T]):
    """One call for :meth:`Supervisor.map`: ``fn(*args, **kwargs)``.

    ``fn`` must be importable by name in the worker (a module-level function
    of a module on ``sys.path``, not ``__main__``); ``args`` and ``kwargs``
    must pickle.
    """

    fn: Callable[..., T]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    label: str = ""


class SupervisorError(GradcheckError):
    """The worker server could not be started (not a problem of the checked code)."""


class _Terminated(Stopped):
    """SIGTERM during an in-process call (``isolate=False``)."""


# -- Where the checked code was ------------------------------------------------------------------

_DUMP_FRAME = re.compile(r'^\s*File "(.*)", line (\d+) in (.*)$')
_DUMP_THREAD = re.compile(r"^(Current thread|Thread) 0x[0-9a-fA-F]+")


def dump_frames(dump: str) -> list[Frame]:
    """The main thread's frames in a faulthandler dump, outermost first.

    The main thread is the one that runs the worker (its stack holds
    :func:`_worker`); a dump of one thread, or one cut at 100 frames, is
    taken as it is.
    """
    threads: list[list[Frame]] = []
    for line in dump.splitlines():
        if _DUMP_THREAD.match(line) or line.startswith("Stack (most recent call first)") or not threads:
            threads.append([])
        match = _DUMP_FRAME.match(line)
        if match:
            threads[-1].append((match[1], int(match[2]), match[3]))
    threads = [t for t in threads if t]
    here = os.path.abspath(__file__)
    for frames in threads:
        if any(name == "_worker" and os.path.abspath(path) == here for path, _, name in frames):
            return frames[::-1]
    return threads[0][::-1] if threads else []


# -- Text that always prints -----------------------------------------------------------------------


def _one_line(text: str, limit: int = 300) -> str:
    line = printable(text).strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _type_name(obj: object) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    module = getattr(cls, "__module__", "")
    name = getattr(cls, "__qualname__", cls.__name__)
    return name if module in ("builtins", "__main__", "") else f"{module}.{name}"


def _exception_text(exc: BaseException) -> str:
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - a user __str__ that raises
        text = "<the exception's str() failed>"
    name = _type_name(exc)
    return f"{name}: {_one_line(text)}" if text.strip() else name


def _format_traceback(exc: BaseException) -> str:
    try:
        return printable("".join(traceback.format_exception(exc)))
    except BaseException:  # noqa: BLE001
        return _exception_text(exc)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _exit_message(code: int) -> str:
    return f"the checked code ended the process: exit code {code}"


def _raised(exc: BaseException, label: str, seconds: float) -> Died:
    frame = choose_frame(exception_frames(exc))
    return Died(
        "raised",
        f"the checked code raised {_exception_text(exc)}",
        at(frame),
        _format_traceback(exc),
        label,
        seconds,
    )


def _exit_code(exc: SystemExit) -> int:
    """The status ``sys.exit(code)`` gives a process (a message is printed, status 1)."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1


# -- The wire ---------------------------------------------------------------------------------------

# Control records between the parent and the server: kind, call id, value.
#   parent -> server: b"R" run (two fds attached: the call's socket, the dump pipe's write end)
#                     b"K" send the call's worker the signal ``value``
#   server -> parent: b"L" loaded (preload done), b"P" forked (value: pid), b"X" ended (value: wait status)
_RECORD = struct.Struct("<cqq")
# Frames on a call's socket: kind, length. Parent -> worker: b"C" the call. Worker -> parent:
#   b"V" the pickled value, b"F" a failure (reason, message, frames, traceback), b"Q" sys.exit (frames, tb).
_FRAME = struct.Struct("<cQ")


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise EOFError("the parent closed the call's socket")
        got += n
    return bytes(buf)


def _send_frame(sock: socket.socket, kind: bytes, body: bytes) -> None:
    sock.sendall(_FRAME.pack(kind, len(body)))
    sock.sendall(body)


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        os._exit(1)


# -- The server (in its own process) --------------------------------------------------------------

_BOOT = (
    "import os\n"
    "try:\n    os.dup2(2, 1)\nexcept OSError:\n    pass\n"
    "import json, sys\n"
    "sys.path[:] = json.loads(sys.argv[1])\n"
    "from gradcheck_cli.supervisor import _serve\n"
    "_serve(int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4]), json.loads(sys.argv[5]))\n"
)


def _serve(ctl_fd: int, parent_pid: int, preload: list[str], warmup: list[str]) -> None:
    """The fork server: import ``preload``, then hand each ``R`` record to a fresh fork."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # until a worker registers faulthandler for it
    _die_with_parent(parent_pid)
    ctl = socket.socket(fileno=ctl_fd)
    ctl.setblocking(True)
    for name in preload:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - each call will meet (and report) the same error
            print(
                f"gradcheck: the worker server could not import {name}: {_exception_text(exc)}",
                file=sys.stderr,
            )
    if warmup:
        _warm_up(warmup)
    gc.collect()
    gc.freeze()  # forked workers then leave the preloaded objects' pages shared
    _ForkServer(ctl).serve()


def _os_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()  # Python threads only: the best there is without /proc


def _warm_up(names: list[str]) -> None:
    """Call each ``module:function`` once, torch on one thread, so that workers start warm.

    A fresh process pays torch's first-call costs in every worker unless the server
    has paid them (a first ``backward(grad)`` imports sympy: some 400 ms here). With
    one thread no OpenMP pool starts (a child forked after one has run hangs in its
    first parallel op); if a thread started all the same, this server is not safe
    to fork: it starts again (exec) without the warm-up.
    """
    threads = _os_threads()
    torch: Any = sys.modules.get("torch")
    default = torch.get_num_threads() if torch is not None else 0
    if torch is not None:
        torch.set_num_threads(1)
    try:
        for name in names:
            module, _, function = name.partition(":")
            try:
                getattr(importlib.import_module(module), function)()
            except BaseException as exc:  # noqa: BLE001 - a failed warm-up costs time, not results
                print(
                    f"gradcheck: the worker server's warm-up {name} failed: {_exception_text(exc)}",
                    file=sys.stderr,
                )
    finally:
        if torch is not None:
            torch.set_num_threads(default)
    if _os_threads() > threads:
        print(
            "gradcheck: the worker server's warm-up started a thread, which forked workers cannot"
            " have; the server starts again without it",
            file=sys.stderr,
        )
        argv = list(sys.orig_argv)
        argv[-1] = "[]"
        os.execv(sys.executable, argv)


class _ForkServer:
    """The server's loop. It keeps one spare worker, forked ahead and waiting for a call.

    Forking a process that has imported torch takes a few milliseconds (its
    page tables); the spare takes that off the call's critical path: a call is
    handed to the spare, and the next spare is forked while the call runs.
    """

    def __init__(self, ctl: socket.socket) -> None:
        self.ctl = ctl
        self.pid = os.getpid()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self.selector = selectors.DefaultSelector()
        self.selector.register(ctl, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.workers: dict[int, int] = {}  # pid -> call id
        self.pids: dict[int, int] = {}  # call id -> pid
        self.spare: tuple[int, socket.socket] | None = None
        self.inbox = bytearray()
        self.fds: deque[int] = deque()

    def serve(self) -> None:
        self.send(b"L", 0, 0)
        self.fork_spare()
        while True:
            for key, _ in self.selector.select():
                if key.fileobj is self.wake_r:
                    with contextlib.suppress(OSError):
                        while os.read(self.wake_r, 512):
                            pass
                else:
                    self.read_records()
            self.reap()

    def read_records(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self.ctl, 1 << 16, 64)
        except OSError:
            data, fds = b"", []
        if not data:
            self.shutdown()
        self.inbox += data
        self.fds.extend(fds)
        while len(self.inbox) >= _RECORD.size:
            kind, call_id, value = _RECORD.unpack_from(self.inbox)
            del self.inbox[: _RECORD.size]
            if kind == b"R":
                self.start(call_id, self.fds.popleft(), self.fds.popleft())
            elif kind == b"K" and call_id in self.pids:
                with contextlib.suppress(OSError):
                    os.kill(self.pids[call_id], value)

    def start(self, call_id: int, sock_fd: int, dump_fd: int) -> None:
        pid = 0
        if self.spare is not None:
            pid, channel = self.spare
            self.spare = None
            try:
                socket.send_fds(channel, [b"C"], [sock_fd, dump_fd])
            except OSError:  # the spare died; its exit is reaped and ignored
                pid = 0
            channel.close()
        if not pid:
            pid = _fork()
            if pid == 0:
                self.in_child()
                _run_worker(sock_fd, dump_fd, self.pid)
        os.close(sock_fd)
        os.close(dump_fd)
        self.workers[pid], self.pids[call_id] = call_id, pid
        self.send(b"P", call_id, pid)
        self.fork_spare()

    def fork_spare(self) -> None:
        mine, theirs = socket.socketpair()
        pid = _fork()
        if pid == 0:
            self.in_child()
            mine.close()
            _prepare_worker(self.pid)
            try:
                _, fds, _, _ = socket.recv_fds(theirs, 16, 2)
            except OSError:
                fds = []
            theirs.close()
            if len(fds) != 2:  # the server has ended
                os._exit(0)
            _run_worker(fds[0], fds[1], self.pid)
        theirs.close()
        self.spare = (pid, mine)

    def in_child(self) -> None:
        """In a fresh fork: drop the server's handlers and every fd that is not the child's own."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.selector.close()
        spare = [self.spare[1].fileno()] if self.spare is not None else []
        for fd in (self.ctl.fileno(), self.wake_r, self.wake_w, *spare, *self.fds):
            with contextlib.suppress(OSError):
                os.close(fd)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.workers:
                call_id = self.workers.pop(pid)
                self.pids.pop(call_id, None)
                self.send(b"X", call_id, status)
            elif self.spare is not None and self.spare[0] == pid:
                self.spare[1].close()
                self.spare = None

    def send(self, kind: bytes, call_id: int, value: int) -> None:
        try:
            self.ctl.sendall(_RECORD.pack(kind, call_id, value))
        except OSError:
            self.shutdown()

    def shutdown(self) -> NoReturn:
        """The parent has gone: kill every worker (and the spare), reap them, exit."""
        pids = [*self.workers, *([self.spare[0]] if self.spare else [])]
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
        os._exit(0)


def _fork() -> int:
    with warnings.catch_warnings():
        # Python 3.12+ warns on fork() with threads; importing torch/numpy starts idle BLAS threads, as
        # multiprocessing's forkserver preload does. No torch op has run, and the child runs Python only.
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def _prepare_worker(server_pid: int) -> None:
    """What a worker sets up before it has a call."""
    _die_with_parent(server_pid)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def _run_worker(sock_fd: int, dump_fd: int, server_pid: int) -> NoReturn:
    try:
        if os.getppid() != server_pid:
            os._exit(1)
        _prepare_worker(server_pid)
        _worker(sock_fd, dump_fd)
    finally:
        os._exit(70)


def _worker(sock_fd: int, dump_fd: int) -> None:
    """In the forked worker: read the call, run it, send the value (or why not), exit."""
    faulthandler.enable(file=dump_fd, all_threads=True)
    faulthandler.register(signal.SIGUSR1, file=dump_fd, all_threads=True, chain=False)
    sock = socket.socket(fileno=sock_fd)
    sock.setblocking(True)
    kind, size = _FRAME.unpack(_recv_exact(sock, _FRAME.size))
    cwd, path, limit, payload = pickle.loads(_recv_exact(sock, size))
    sys.path[:] = path
    stage = "load"
    try:
        os.chdir(cwd)
        fn, args, kwargs = pickle.loads(payload)
        stage = "run"
        value = fn(*args, **kwargs)
    except SystemExit as exc:
        code = _exit_code(exc)
        info = (traceback_frames(exc.__traceback__), _format_traceback(exc))
        _flush_stdio()
        with contextlib.suppress(OSError):
            _send_frame(sock, b"Q", pickle.dumps(info))
        os._exit(code)
    except BaseException as exc:  # noqa: BLE001 - any exception is this call's outcome
        text = _exception_text(exc)
        message = (
            f"the checked code raised {text}"
            if stage == "run"
            else f"the call could not be loaded in the worker: {text}"
        )
        failure = ("raised", message, exception_frames(exc), _format_traceback(exc))
        kind, body = b"F", pickle.dumps(failure)
    else:
        kind, body = b"V", b""
        try:
            body = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # noqa: BLE001 - a pickler may raise anything
            what = f"{_type_name(value)} cannot be pickled ({_exception_text(exc)})"
            message = f"the result could not be sent back: {what}"
            kind, body = b"F", pickle.dumps(("unpicklable", message, [], _format_traceback(exc)))
        if kind == b"V" and len(body) > limit:
            message = (
                f"the result could not be sent back: {_type_name(value)} pickles to {_size(len(body))},"
                f" over the {_size(limit)} limit"
            )
            kind, body = b"F", pickle.dumps(("unpicklable", message, [], None))
    _flush_stdio()
    try:
        _send_frame(sock, kind, body)
    except OSError:
        os._exit(71)
    os._exit(0)


def _flush_stdio() -> None:
    for stream in {id(s): s for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)}.values():
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


# -- The parent side -------------------------------------------------------------------------------


class _Server:
    """The parent's handle on the fork server: its process and its control socket."""

    def __init__(self, preload: Sequence[str], warmup: Sequence[str]) -> None:
        if not sys.executable:
            raise SupervisorError("cannot start worker processes: sys.executable is not known")
        self.ctl, theirs = socket.socketpair()
        flags: Callable[[], list[str]] = getattr(subprocess, "_args_from_interpreter_flags", list)
        argv = [
            sys.executable,
            *flags(),
            "-c",
            _BOOT,
            json.dumps([str(p) for p in sys.path]),
            str(theirs.fileno()),
            str(os.getpid()),
            json.dumps(list(preload)),
            json.dumps(list(warmup)),  # the last argument: a warm-up that fails safe execs without it
        ]
        self.started_at = time.monotonic()
        try:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),))
        except OSError as exc:
            self.ctl.close()
            raise SupervisorError(f"cannot start the worker server ({sys.executable}): {exc}") from None
        finally:
            theirs.close()
        self.loaded_at: float | None = None
        self.alive = True
        self._inbox = bytearray()

    def send(self, kind: bytes, call_id: int, value: int = 0, fds: Sequence[int] = ()) -> bool:
        if not self.alive:
            return False
        try:
            record = _RECORD.pack(kind, call_id, value)
            if fds:
                socket.send_fds(self.ctl, [record], list(fds))
            else:
                self.ctl.sendall(record)
        except OSError:
            self.alive = False
        return self.alive

    def receive(self) -> list[tuple[bytes, int, int]]:
        """The records the server has sent (call when the socket is readable)."""
        try:
            data = self.ctl.recv(1 << 16)
        except BlockingIOError:
            return []
        except OSError:
            data = b""
        if not data:
            self.alive = False
            return []
        self._inbox += data
        records = []
        while len(self._inbox) >= _RECORD.size:
            kind, call_id, value = _RECORD.unpack_from(self._inbox)
            del self._inbox[: _RECORD.size]
            if kind == b"L":
                self.loaded_at = time.monotonic()
            records.append((kind, call_id, value))
        return records

    def close(self) -> None:
        """End the server and, with it, every worker; wait until it is gone."""
        loaded = self.loaded_at is not None
        with contextlib.suppress(OSError):
            self.ctl.close()  # the server kills and reaps its workers, then exits
        self.alive = False
        if not loaded:  # still importing torch: it has no workers yet
            with contextlib.suppress(OSError):
                self.process.kill()
        try:
            self.process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                self.process.kill()
            self.process.wait()


class _Flight:
    """A call handed to a worker: what was sent, what came back, what the server said."""

    def __init__(self, index: int, call: Call[Any], call_id: int, request: bytes, limit: int) -> None:
        self.index, self.call, self.call_id = index, call, call_id
        self.limit = limit + (1 << 20)  # a value's limit, and room for a failure's traceback
        self.corrupt = False  # the worker sent something that is not one of our frames
        self.sock, theirs = socket.socketpair()
        self.dump_r, self.dump_w = os.pipe()
        self.theirs = theirs
        self.outgoing = memoryview(request)
        self.started: float | None = None
        self.deadline: float | None = None
        self.stopping = False  # the deadline passed: SIGUSR1 sent, SIGKILL due at kill_at
        self.kill_at: float | None = None
        self.killed = False
        self.header = bytearray()
        self.body: bytearray | None = None
        self.got = 0
        self.frame: tuple[bytes, bytes] | None = None  # kind, body of the worker's frame
        self.dump = bytearray()
        self.answered = False  # a value or a failure frame has been read
        self.sock_open = True
        self.dump_open = True

    def seconds(self) -> float:
        return time.monotonic() - self.started if self.started is not None else 0.0

    def read_socket(self) -> None:
        """Read what the worker has sent, without blocking."""
        while self.sock_open and self.frame is None:
            try:
                if self.body is None:
                    chunk = self.sock.recv(_FRAME.size - len(self.header))
                    if not chunk:
                        self.sock_open = False
                        break
                    self.header += chunk
                    if len(self.header) == _FRAME.size:
                        kind, size = _FRAME.unpack(self.header)
                        if kind not in (b"V", b"F", b"Q") or size > self.limit:
                            self.corrupt, self.sock_open = True, False
                            break
                        self.body = bytearray(size)
                        self.got = 0
                    continue
                n = self.sock.recv_into(memoryview(self.body)[self.got :]) if self.got < len(self.body) else 0
                if n == 0 and self.got < len(self.body):
                    self.sock_open = False
                    break
                self.got += n
                if self.got == len(self.body):
                    kind, _ = _FRAME.unpack(self.header)
                    self.frame = (kind, bytes(self.body))
                    self.body = None
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.sock_open = False
                break

    def read_dump(self) -> None:
        while self.dump_open:
            try:
                chunk = os.read(self.dump_r, 1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.dump_open = False
                return
            self.dump += chunk

    def dump_text(self) -> str | None:
        text = printable(self.dump.decode("utf-8", "replace")).strip()
        return text or None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        for fd in (self.dump_r, self.dump_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            self.theirs.close()


class _PlainUnpickler(pickle.Unpickler):
    """Reads a failure frame: tuples of strings and numbers, nothing that names a global."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a failure frame does not hold {module}.{name}")


def _plain(body: bytes) -> Any:
    return _PlainUnpickler(io.BytesIO(body)).load()


class _RefusingUnpickler(pickle.Unpickler):
    """Reads a result without importing a package this process must not import (torch)."""

    def __init__(self, data: bytes, refused: Collection[str]) -> None:
        super().__init__(io.BytesIO(data))
        self.refused = refused

    def find_class(self, module: str, name: str) -> Any:
        top = module.partition(".")[0]
        if top in self.refused and top not in sys.modules:
            raise pickle.UnpicklingError(
                f"it holds a {module}.{name}, and this process does not import {top}"
            )
        return super().find_class(module, name)


class Supervisor:
    """Runs calls in worker processes forked from a server that imported ``preload`` once.

    ::

        with Supervisor(jobs=2, preload=("torch", "gradcheck_cli.runner")) as supervisor:
            for outcome in supervisor.map(Call(run_one, (item,), timeout=60) for item in items):
                ...  # a value, or a Died
        if supervisor.interrupted:
            sys.exit(128 + supervisor.interrupted)

    ``jobs``: at most this many workers run checked code at once.
    ``preload``: modules the server imports before it forks anything.
    ``warmup``: ``"module:function"`` names the server calls once after the
    preload, torch on one thread, so that each worker does not pay torch's
    first-call costs again (off by default: it costs start-up time, worth it
    for many calls, not for one). ``never_import``: top-level packages a result
    may not make this process import (a torch tensor in a result becomes
    ``Died(reason="unpicklable")`` unless torch is already imported here).
    ``max_result_bytes``: a bigger pickled result is refused in the worker.
    Not thread-safe; one ``run``/``map`` at a time; call ``start()`` from the
    thread that will outlive the supervisor (the server dies with that thread
    on Linux).
    """

    def __init__(
        self,
        jobs: int = 1,
        preload: Sequence[str] = ("torch",),
        isolate: bool = True,
        *,
        never_import: Collection[str] = ("torch",),
        max_result_bytes: int = MAX_RESULT_BYTES,
        warmup: Sequence[str] = (),
    ) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, not {jobs}")
        self.jobs = jobs
        self.preload = tuple(preload)
        self.isolate = isolate and hasattr(os, "fork")
        self.never_import = frozenset(never_import)
        self.max_result_bytes = max_result_bytes
        self.warmup = tuple(warmup)
        self.interrupted: signal.Signals | None = None
        self._server: _Server | None = None
        self._call_ids = 0
        self._active = False
        self._closed = False
        self._saved_handlers: dict[int, Any] = {}
        self._in_call = False  # in this process: a call is running (a signal interrupts it)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # -- life cycle

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Launch the fork server (it imports ``preload``) and return at once; idempotent."""
        if self._closed:
            raise RuntimeError("this Supervisor is closed")
        if self.isolate and (self._server is None or not self._server.alive):
            if self._server is not None:
                self._server.close()
            self._server = _Server(self.preload, self.warmup)

    def wait_ready(self, timeout: float | None = None) -> float:
        """Block until the server has imported ``preload``; its start-up time in seconds (0 in-process)."""
        if not self.isolate:
            return 0.0
        self.start()
        server = self._server
        assert server is not None
        end = None if timeout is None else time.monotonic() + timeout
        while server.loaded_at is None and server.alive:
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("the worker server is not ready")
            with selectors.DefaultSelector() as selector:
                selector.register(server.ctl, selectors.EVENT_READ)
                if selector.select(remaining):
                    server.receive()
        if server.loaded_at is None:
            raise SupervisorError("the worker server ended while it started")
        return server.loaded_at - server.started_at

    @property
    def server_pid(self) -> int | None:
        """The fork server's process id, once started."""
        return self._server.process.pid if self._server is not None else None

    def close(self) -> None:
        """Kill every live worker and the server, and wait for them; restore the signal handlers."""
        self._restore_signals()
        if self._server is not None:
            self._server.close()
        if not self._closed:
            self._closed = True
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    # -- calls

    def run(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...] = (),
        *,
        kwargs: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        label: str = "",
    ) -> Outcome[T]:
        """``fn(*args, **kwargs)`` in a worker: its value, or a :class:`Died` saying why not."""
        call: Call[T] = Call(fn, tuple(args), dict(kwargs or {}), timeout, label)
        outcomes = self.map([call])
        return next(outcomes)

    def map(self, calls: Iterable[Call[T]]) -> Iterator[Outcome[T]]:
        """The outcome of each call, in the order given; ``jobs`` workers at a time.

        ``calls`` is read as workers free up. A call that crashes or times out
        is that call's outcome only. After SIGINT/SIGTERM every call not yet
        completed is ``Died(reason="interrupted")`` and :attr:`interrupted` is set.
        """
        if self._closed:
            raise RuntimeError("this Supervisor is closed")
        if self._active:
            raise RuntimeError("a Supervisor.map is still open: finish it (or close() it) before the next")
        return self._map_isolated(calls) if self.isolate else self._map_here(calls)

    def _interrupted(self, call: Call[Any], seconds: float = 0.0) -> Died:
        name = self.interrupted.name if self.interrupted else "a signal"
        return Died(
            "interrupted", f"interrupted by {name} before it completed", label=call.label, seconds=seconds
        )

    # -- in this process

    def _map_here(self, calls: Iterable[Call[Any]]) -> Iterator[Any]:
        self._active = True
        self._install_signals(here=True)
        try:
            for call in calls:
                if self.interrupted:
                    yield self._interrupted(call)
                    continue
                start = time.monotonic()
                try:
                    self._in_call = True
                    try:
                        value = call.fn(*call.args, **call.kwargs)
                    finally:
                        self._in_call = False
                except SystemExit as exc:
                    frame = choose_frame(traceback_frames(exc.__traceback__))
                    code = _exit_code(exc)
                    yield Died(
                        "exit",
                        _exit_message(code),
                        at(frame),
                        _format_traceback(exc),
                        call.label,
                        time.monotonic() - start,
                    )
                except KeyboardInterrupt:
                    self.interrupted = signal.SIGINT
                    yield self._interrupted(call, time.monotonic() - start)
                except _Terminated:
                    self.interrupted = signal.SIGTERM
                    yield self._interrupted(call, time.monotonic() - start)
                except BaseException as exc:  # noqa: BLE001 - the call's outcome
                    yield _raised(exc, call.label, time.monotonic() - start)
                else:
                    yield value
        finally:
            self._restore_signals()
            self._active = False

    # -- in workers

    def _map_isolated(self, calls: Iterable[Call[Any]]) -> Iterator[Any]:
        self._active = True
        pending = iter(calls)
        exhausted = False
        done: dict[int, Outcome[Any]] = {}
        live: dict[int, _Flight] = {}  # by call id: forked or about to be, until its exit status
        submitted = yielded = 0
        selector = selectors.DefaultSelector()
        self._install_signals(here=False)
        try:
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            self.start()
            server = self._server
            assert server is not None
            selector.register(server.ctl, selectors.EVENT_READ, "server")
            while True:
                while yielded in done:
                    outcome = done.pop(yielded)
                    yielded += 1
                    yield outcome
                if self.interrupted:
                    for flight in list(live.values()):
                        if not flight.answered:
                            server.send(b"K", flight.call_id, signal.SIGKILL)
                            done[flight.index] = self._interrupted(flight.call, flight.seconds())
                        self._land(flight, live, selector)
                    for call in pending if not exhausted else ():
                        done[submitted] = self._interrupted(call)
                        submitted += 1
                    exhausted = True
                    if yielded == submitted:
                        return
                    continue
                # A worker that has answered runs no more checked code (it is in os._exit): its slot is free.
                while not exhausted and sum(not f.answered for f in live.values()) < self.jobs:
                    new = next(pending, None)
                    if new is None:
                        exhausted = True
                        break
                    index, submitted = submitted, submitted + 1
                    if not server.alive:
                        done[index] = self._lost(new, server)
                        continue
                    sent = self._dispatch(index, new, server, selector)
                    if isinstance(sent, Died):
                        done[index] = sent
                    else:
                        live[sent.call_id] = sent
                if exhausted and yielded == submitted and all(f.answered for f in live.values()):
                    return  # the workers that are left have answered and are exiting
                if yielded in done:
                    continue
                self._wait(server, live, done, selector)
        finally:
            for flight in live.values():
                if not flight.answered:
                    server_ = self._server
                    if server_ is not None:
                        server_.send(b"K", flight.call_id, signal.SIGKILL)
                flight.close()
            selector.close()
            self._restore_signals()
            self._active = False

    def _dispatch(
        self, index: int, call: Call[Any], server: _Server, selector: selectors.BaseSelector
    ) -> _Flight | Died:
        try:
            if getattr(call.fn, "__module__", None) == "__main__":
                raise pickle.PicklingError(
                    f"{call.fn!r} is defined in __main__, which a worker cannot import"
                )
            payload = pickle.dumps((call.fn, call.args, dict(call.kwargs)), pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - a pickler may raise anything
            message = f"the call could not be sent to a worker: {_exception_text(exc)}"
            return Died("unpicklable", message, label=call.label)
        body = pickle.dumps((os.getcwd(), [str(p) for p in sys.path], self.max_result_bytes, payload))
        self._call_ids += 1
        flight = _Flight(
            index, call, self._call_ids, _FRAME.pack(b"C", len(body)) + body, self.max_result_bytes
        )
        flight.sock.setblocking(False)
        os.set_blocking(flight.dump_r, False)
        server.send(b"R", flight.call_id, 0, (flight.theirs.fileno(), flight.dump_w))
        flight.theirs.close()
        os.close(flight.dump_w)
        flight.dump_w = -1
        selector.register(flight.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, flight)
        selector.register(flight.dump_r, selectors.EVENT_READ, flight)
        self._send_request(flight, selector)
        return flight

    def _wait(
        self,
        server: _Server,
        live: dict[int, _Flight],
        done: dict[int, Outcome[Any]],
        selector: selectors.BaseSelector,
    ) -> None:
        """Wait for something to happen (a record, a result, a deadline) and deal with it."""
        now = time.monotonic()
        times = [
            (f.kill_at if f.stopping else f.deadline) for f in live.values() if not (f.answered or f.killed)
        ]
        due = [t for t in times if t is not None]
        # At most a day at a time: select() overflows past ~2**31 ms, and a spec may ask for more.
        timeout = min(max(0.0, min(due) - now), 86_400.0) if due else None
        for key, events in selector.select(timeout):
            if key.data == "wake":
                with contextlib.suppress(OSError):
                    while os.read(self._wake_r, 512):
                        pass
            elif key.data == "server":
                for kind, call_id, value in server.receive():
                    flight = live.get(call_id)
                    if flight is None:
                        continue
                    if kind == b"P":
                        flight.started = time.monotonic()
                        if flight.call.timeout is not None:
                            flight.deadline = flight.started + flight.call.timeout
                    elif kind == b"X":
                        self._ended(flight, value, done)
                        self._land(flight, live, selector)
                if not server.alive:
                    with contextlib.suppress(KeyError, ValueError):
                        selector.unregister(server.ctl)
                    for flight in list(live.values()):
                        flight.read_socket()
                        self._answer(flight, done)
                        if not flight.answered:
                            done[flight.index] = self._lost(flight.call, server)
                        self._land(flight, live, selector)
            elif isinstance(key.fileobj, socket.socket):
                flight = key.data
                if events & selectors.EVENT_WRITE:
                    self._send_request(flight, selector)
                if events & selectors.EVENT_READ:
                    flight.read_socket()
                    self._answer(flight, done)
                    if flight.corrupt and not flight.answered:
                        done[flight.index], flight.answered = self._corrupt(flight), True
                        server.send(b"K", flight.call_id, signal.SIGKILL)
                    if not flight.sock_open or flight.frame is not None:  # a worker sends one frame
                        with contextlib.suppress(KeyError, ValueError):
                            selector.unregister(flight.sock)
            else:
                flight = key.data
                flight.read_dump()
                if flight.stopping and flight.dump:
                    flight.kill_at = min(flight.kill_at or now, time.monotonic() + DUMP_SETTLE)
                if not flight.dump_open:
                    with contextlib.suppress(KeyError, ValueError):
                        selector.unregister(flight.dump_r)
        now = time.monotonic()
        for flight in live.values():
            if flight.answered or flight.killed:
                continue
            if flight.kill_at is not None and now >= flight.kill_at:
                server.send(b"K", flight.call_id, signal.SIGKILL)
                flight.killed = True
            elif not flight.stopping and flight.deadline is not None and now >= flight.deadline:
                server.send(b"K", flight.call_id, signal.SIGUSR1)
                flight.stopping = True
                flight.kill_at = now + DUMP_GRACE

    def _send_request(self, flight: _Flight, selector: selectors.BaseSelector) -> None:
        try:
            sent = flight.sock.send(flight.outgoing)
            flight.outgoing = flight.outgoing[sent:]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the worker is gone; its exit status will say why
            flight.outgoing = flight.outgoing[:0]
        if not flight.outgoing and flight.sock_open:
            selector.modify(flight.sock, selectors.EVENT_READ, flight)

    def _answer(self, flight: _Flight, done: dict[int, Outcome[Any]]) -> None:
        """Record the worker's value or failure once its frame is complete (``Q`` waits for the exit)."""
        if flight.answered or flight.frame is None or flight.stopping:
            return
        kind, body = flight.frame
        label, seconds = flight.call.label, flight.seconds()
        if kind == b"V":
            try:
                done[flight.index] = _RefusingUnpickler(body, self.never_import).load()
            except Exception as exc:  # noqa: BLE001 - an unpickler may raise anything
                message = f"the result could not be read back: {_exception_text(exc)}"
                done[flight.index] = Died("unpicklable", message, label=label, seconds=seconds)
        elif kind == b"F":
            try:
                reason, message, frames, text = _plain(body)
                done[flight.index] = Died(reason, message, at(choose_frame(frames)), text, label, seconds)
            except Exception as exc:  # noqa: BLE001 - not the frame our worker code writes
                done[flight.index] = self._corrupt(flight, exc)
        else:
            return
        flight.answered = True

    def _corrupt(self, flight: _Flight, exc: BaseException | None = None) -> Died:
        detail = f": {_exception_text(exc)}" if exc is not None else ""
        message = f"the result could not be read back: the worker sent something else than a result{detail}"
        return Died("unpicklable", message, label=flight.call.label, seconds=flight.seconds())

    def _ended(self, flight: _Flight, status: int, done: dict[int, Outcome[Any]]) -> None:
        """The worker has ended: its outcome, from what it sent and how it ended."""
        flight.read_socket()
        flight.read_dump()
        self._answer(flight, done)
        if flight.answered:
            return
        label, seconds = flight.call.label, flight.seconds()
        dump = flight.dump_text()
        frame = choose_frame(dump_frames(dump)) if dump else None
        if flight.stopping:
            assert flight.call.timeout is not None
            message = f"timed out after {flight.call.timeout:g} s"
            if frame:
                message += f"; the checked code was at {frame[0]}:{frame[1]} (in {frame[2]})"
            done[flight.index] = Died("timeout", printable(message), at(frame), dump, label, seconds)
        elif os.WIFSIGNALED(status):
            message = f"the checked code was killed by {_signal_name(os.WTERMSIG(status))}"
            done[flight.index] = Died("signal", message, at(frame), dump, label, seconds)
        else:
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
            where, text = None, dump
            if flight.frame is not None and flight.frame[0] == b"Q":
                with contextlib.suppress(Exception):
                    frames, text = _plain(flight.frame[1])
                    where = at(choose_frame(frames))
            done[flight.index] = Died("exit", _exit_message(code), where, text, label, seconds)
        flight.answered = True

    def _land(self, flight: _Flight, live: dict[int, _Flight], selector: selectors.BaseSelector) -> None:
        for obj in (flight.sock, flight.dump_r):
            with contextlib.suppress(KeyError, ValueError):
                selector.unregister(obj)
        flight.close()
        live.pop(flight.call_id, None)

    def _lost(self, call: Call[Any], server: _Server) -> Died:
        try:
            code: int | None = server.process.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            code = None
        how = ""
        if code is not None:
            how = f" (killed by {_signal_name(-code)})" if code < 0 else f" (exit code {code})"
        message = f"the worker was lost: gradcheck's worker server ended{how}"
        return Died("lost", message, label=call.label)

    # -- signals

    def _install_signals(self, here: bool) -> None:
        if self._saved_handlers:
            return
        try:
            handler = self._on_signal_here if here else self._on_signal
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._saved_handlers[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread: the caller keeps its own handlers
            self._saved_handlers.clear()

    def _restore_signals(self) -> None:
        while self._saved_handlers:
            signum, handler = self._saved_handlers.popitem()
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def _on_signal_here(self, signum: int, frame: FrameType | None) -> None:
        """In this process: stop the running call, as Ctrl-C would; between calls, remember it."""
        if self._in_call:
            raise KeyboardInterrupt if signum == signal.SIGINT else _Terminated()
        if self.interrupted is None:
            self.interrupted = signal.Signals(signum)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupted is None:
            self.interrupted = signal.Signals(signum)
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"!")
