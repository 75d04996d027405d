"""Functions for tests/test_supervisor.py to run in a worker: they must be importable by name.

Each one does to its process what careless or hostile checked code does.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

WARMED = False  # set by a warm-up in the server; a worker forked after it inherits True


def warm_up() -> None:
    import torch

    global WARMED
    x = torch.randn(256, 512, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.linear(x, torch.randn(512, 512, dtype=torch.float64)).sum().backward()
    WARMED = True


def warm_up_with_a_thread() -> None:
    import threading

    global WARMED
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    WARMED = True


def warm_up_that_fails() -> None:
    raise RuntimeError("no warm-up today")


def warmed() -> tuple[bool, int | None]:
    """Whether this worker's server ran warm_up, and torch's thread count here."""
    torch = sys.modules.get("torch")
    return WARMED, torch.get_num_threads() if torch is not None else None


def add(a: int, b: int) -> int:
    return a + b


def identify() -> dict[str, Any]:
    """What a worker looks like from inside."""
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "cwd": os.getcwd(),
        "torch_imported": "torch" in sys.modules,
        "fd1_is_fd2": os.path.samestat(os.fstat(1), os.fstat(2)),
        "sigint_ignored": signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
    }


def sleep_then(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def timed_sleep(seconds: float, index: int) -> tuple[int, float, float, int]:
    """Sleep; say when (wall clock, comparable across processes) and in which process."""
    start = time.time()
    time.sleep(seconds)
    return index, start, time.time(), os.getpid()


def exit_now(code: int) -> None:
    os._exit(code)


def sys_exit(code: int | str | None) -> None:
    sys.exit(code)


def segfault() -> None:
    ctypes.string_at(0)


def spin() -> None:
    while True:  # the timeout must name this function and one of these two lines
        pass


def spin_in_torch_ops() -> None:
    import torch

    x = torch.randn(64, 64, dtype=torch.float64)
    while True:
        x = torch.tanh(x @ x.T) / 64


def import_path(path: str) -> str:
    """Import a module from a file (as the runner imports a spec's implementation)."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.__name__


def import_and_call(path: str, name: str) -> Any:
    module = sys.modules.get(Path(path).stem)
    if module is None:
        import_path(path)
        module = sys.modules[Path(path).stem]
    return getattr(module, name)()


def spin_marking(marker: str) -> None:
    """Write this worker's pid to ``marker``, then spin (for the signal tests to wait on)."""
    Path(marker + ".tmp").write_text(str(os.getpid()))
    os.replace(marker + ".tmp", marker)
    while True:
        pass


def terminate_self() -> None:
    """SIGTERM to this process (in-process runs: the parent itself), then wait for it to land."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)


def change_directory(path: str) -> str:
    os.chdir(path)
    return os.getcwd()


def current_directory() -> str:
    return os.getcwd()


def patch_linear() -> str:
    """Monkeypatch F.linear, as a user's module might, and leave it patched."""
    import torch.nn.functional as F

    F.linear = lambda x, w, b=None: x * 0  # type: ignore[assignment]
    return "patched"


def linear_is_torchs() -> bool:
    import torch
    import torch.nn.functional as F

    x, w = torch.ones(2, 3, dtype=torch.float64), torch.ones(4, 3, dtype=torch.float64)
    return bool((F.linear(x, w) == 3).all()) and F.linear is torch._C._nn.linear


def grow_sys_path(entry: str) -> list[str]:
    sys.path.insert(0, entry)
    sys.modules["gradcheck_leftover"] = sys  # a stray module object
    return sys.path[:1]


def sys_state() -> tuple[list[str], bool]:
    return sys.path[:1], "gradcheck_leftover" in sys.modules


def unpicklable() -> Any:
    return {"ok": [1, 2], "gen": (i for i in range(3))}


def tensor_result() -> Any:
    import torch

    return torch.zeros(3)


def big_result(megabytes: int) -> bytes:
    return b"x" * (megabytes << 20)


def claim_a_huge_result() -> int:
    """Write a frame header announcing 4 EiB into every socket this worker holds (its channel)."""
    import struct

    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                os.write(int(fd), struct.pack("<cQ", b"V", 1 << 62))
    time.sleep(30)
    return 1


def print_to_stdout(text: str) -> str:
    print(text)
    sys.stdout.flush()
    os.write(1, b"raw fd 1 write\n")
    return "printed"


def close_stdio() -> str:
    print("about to close stdout and stderr")
    sys.stdout.close()
    sys.stderr.close()
    os.close(1)
    os.close(2)
    return "still here"


def raise_surrogate() -> None:
    raise ValueError("bad \ud800 byte")


def raise_value_error() -> None:
    raise ValueError("the checked code's own error")


def raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


def set_num_threads_report() -> int:
    import torch

    return torch.get_num_threads()
