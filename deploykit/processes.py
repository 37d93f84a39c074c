"""Processes deploykit starts end with it, and what a killed run left behind is removed by the next one.

A child is started with ``die_with_parent``: Linux sends it SIGKILL the moment deploykit ends, whatever ended it
(SIGKILL, SIGHUP from a closed terminal, a crash). A temporary folder made by ``owned_temp_dir`` records its owner's
pid and start time; ``remove_abandoned`` deletes those whose owner is gone, with whatever ``also`` names for each
(Triton's shared-memory regions).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

OWNER_FILE = ".owner"
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets SIGKILL when this process ends (Linux; elsewhere None)."""
    if _LIBC is None:
        return None
    parent = os.getpid()

    def arm() -> None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent ended between fork and prctl
            os._exit(1)

    return arm


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


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP (a closed terminal) stop the program as Ctrl-C does; a signal ignored at start (nohup) stays so."""
    def stop(signum, frame) -> None:
        raise Stopped(signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, stop)
