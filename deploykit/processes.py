"""Processes deploykit starts end with it, and what a killed run left behind is removed by the next one.

A child is started through ``dying_with_this_process(command)``: a small launcher (``python -m deploykit.processes``)
asks Linux for a parent-death signal and then execs the command, so the child gets SIGKILL the moment the thread that
started it ends, whatever ended it (SIGKILL, SIGHUP from a closed terminal, a crash). Start such children from the main
thread. The launcher does this after exec, not in a ``preexec_fn``, which is unsafe in a process with threads. A temporary folder made by ``owned_temp_dir`` records its owner's
pid and start time; ``remove_abandoned`` deletes those whose owner is gone, with whatever ``also`` names for each
(Triton's shared-memory regions).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

OWNER_FILE = ".owner"
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def dying_with_this_process(command: list[str]) -> list[str]:
    """``command`` run through the launcher that makes it die with this process (on Linux; elsewhere as it is)."""
    if _LIBC is None:
        return command
    return [sys.executable, "-m", "deploykit.processes", str(os.getpid()), *command]


def _exec_dying_with(parent: int, command: list[str]) -> None:
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # kept across execve
    if os.getppid() != parent:  # the parent ended before the signal was armed
        os._exit(1)
    os.execvp(command[0], command)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


@contextlib.contextmanager
def owned_temp_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder that names this process as its owner, removed when the block ends."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        (path / OWNER_FILE).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _abandoned(folder: Path) -> bool:
    try:
        if folder.stat().st_uid != os.getuid():
            return False
        pid, started = (folder / OWNER_FILE).read_text().split()
    except (OSError, ValueError):
        return False  # not ours, or its owner is still writing the record
    return _start_time(int(pid)) != started


def remove_abandoned(prefix: str, also: Callable[[Path], None] | None = None) -> list[Path]:
    """Delete the temporary folders named ``prefix*`` whose owner process is gone (and what ``also`` removes for each)."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        if folder.is_dir() and _abandoned(folder):
            if also is not None:
                also(folder)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, so that every ``finally`` runs as it does for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_RECEIVED: list[int] = []


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP (a closed terminal) stop the program as Ctrl-C does; a signal ignored at start (nohup) stays so.
    Each stop signal is also recorded (received_stop): one that lands while a finalizer runs raises there, and Python
    prints and ignores it."""

    def stop(signum, frame) -> None:
        _RECEIVED.append(signum)
        raise Stopped(signum)

    def interrupt(signum, frame) -> None:
        _RECEIVED.append(signum)
        raise KeyboardInterrupt

    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, stop)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, interrupt)


def received_stop() -> Stopped | None:
    """The first stop signal this process received (SIGINT included), whether or not its exception reached the top."""
    return Stopped(_RECEIVED[0]) if _RECEIVED else None


T = TypeVar("T")


def run_stoppable(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coroutine)``, where a stop signal (SIGINT, SIGTERM, SIGHUP; one ignored at start stays so) cancels
    the run and is raised as ``Stopped`` once the loop has closed. Raised inside the loop, as the handlers of
    ``stop_on_signals`` raise it, it escapes from whichever task runs then and leaves the others pending (Python's
    warnings after the one error line)."""
    received: list[int] = []
    watched = [s for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) if signal.getsignal(s) is not signal.SIG_IGN]
    previous = {signum: signal.getsignal(signum) for signum in watched}

    async def cancellable() -> T:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        for signum in watched:
            loop.add_signal_handler(signum, lambda signum=signum: (received.append(signum), task.cancel()))
        return await coroutine

    try:
        return asyncio.run(cancellable())
    except asyncio.CancelledError:
        if not received:
            raise
        _RECEIVED.append(received[0])
        raise Stopped(received[0]) from None
    finally:
        for signum, handler in previous.items():  # asyncio leaves its own defaults behind
            signal.signal(signum, handler)


if __name__ == "__main__":
    _exec_dying_with(int(sys.argv[1]), sys.argv[2:])
