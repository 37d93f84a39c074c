"""Running the real CLI, as the tests that drive commands do: in-process (click's runner) or as a user's shell runs it."""

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from deploykit.cli import cli


def invoke(*args):
    """click's result of ``deploykit ARGS...`` run in-process; arguments may be paths or numbers."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def run_cli(*args):
    """(click's result, its output on one line) for ``deploykit ARGS...``."""
    result = invoke(*args)
    return result, " ".join(result.output.split())


def deploykit(*args, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m deploykit ARGS`` in ``cwd`` with umask 022, in a process of its own, as a user's shell runs it."""
    return subprocess.run([sys.executable, "-m", "deploykit", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, preexec_fn=lambda: os.umask(0o022))
