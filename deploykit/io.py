"""Atomic file writes and file hashes: a failed step never leaves a half-written artifact."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: Path, payload: dict) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
