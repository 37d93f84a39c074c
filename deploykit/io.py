"""Atomic file writes and file hashes: a failed step never leaves a half-written artifact."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from deploykit.errors import DeployKitError


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` if needed and check that files can be written into it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeployKitError(f"cannot create output folder {path}: {exc.strerror}; choose another --out") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise DeployKitError(f"output folder {path} is not writable; choose another --out or fix its permissions")
    return path


def check_writable_file(path: Path | None) -> None:
    """A results file must be writable before a long run, not found unwritable after it (None: nothing to check)."""
    if path is None:
        return
    folder = Path(path).resolve().parent
    if Path(path).is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK):
        raise DeployKitError(f"cannot write {path}: {'it is a folder' if Path(path).is_dir() else 'its folder is missing or not writable'}; choose another path")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    ensure_writable_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_temporary_dir(parent: Path, prefix: str) -> Path:
    """A new folder in ``parent`` with the permissions the umask gives (mkdtemp's are 0700: unreadable to others once
    published)."""
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    os.chmod(path, 0o777 & ~_umask())
    return path


def make_temporary_file(parent: Path, prefix: str) -> Path:
    """A new empty file in ``parent`` with the permissions the umask gives (mkstemp's are 0600)."""
    handle, name = tempfile.mkstemp(dir=parent, prefix=prefix)
    os.close(handle)
    os.chmod(name, 0o666 & ~_umask())
    return Path(name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: Path, payload: dict) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode())


def atomic_save_torch(path: Path, state: object) -> None:
    """``torch.save`` into ``path`` atomically: a kill leaves the previous file or the new one, never half of one."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def exchange_paths(a: Path, b: Path) -> None:
    """Swap two directories in one step (Linux renameat2 RENAME_EXCHANGE): no moment without ``b``.

    Where the kernel, C library or filesystem cannot exchange, three renames do it, through
    ``b``'s ``.previous`` sibling, which ``recover_interrupted_exchange`` puts back after a crash.
    """
    import ctypes
    import errno

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        at_fdcwd, rename_exchange = -100, 2
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
            return
        if ctypes.get_errno() not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(ctypes.get_errno(), f"cannot exchange {a} and {b}: {os.strerror(ctypes.get_errno())}")
    previous = _previous(b)
    os.rename(b, previous)
    os.rename(a, b)
    os.rename(previous, a)


def recover_interrupted_exchange(b: Path) -> None:
    """Put ``b`` back when a three-rename exchange was killed between its first two renames."""
    previous = _previous(b)
    if previous.exists() and not b.exists():
        os.rename(previous, b)


def _previous(b: Path) -> Path:
    return b.with_name(f".{b.name}.previous")


@contextlib.contextmanager
def exclusive_lock(path: Path, wait_seconds: float) -> Iterator[None]:
    """An advisory lock file held for the block; another process waiting more than ``wait_seconds`` gets a one-line error.

    The holder removes the file when it is done, so no empty lock file is left behind: a process that locked a file
    already removed (its path now another file, or none) lets it go and locks the file the path names now."""
    import fcntl

    deadline = time.monotonic() + wait_seconds
    while True:
        handle = open(path, "a")
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise DeployKitError(f"another deploykit process holds {path} (an export into the same folder); wait for it or use another --out") from None
                    time.sleep(0.2)
            if _same_file(handle, path):
                break
        except BaseException:
            handle.close()
            raise
        handle.close()  # the holder before us removed it: lock the one the path names now
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # while still held, so nobody locks a file that is about to go
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _same_file(handle, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False
