"""A small tmpfs mounted for one test (a full or read-only disk), where this machine allows mounting (it needs root)."""

import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(folder: Path, options: str):
    """Mount a tmpfs with ``options`` (e.g. "size=3m", "size=1m,ro") on ``folder`` for the block; skip the test where
    mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
