"""Running the real CLI, as the tests that drive commands do: in-process (click's runner) or as a user's shell runs it."""

import contextlib
import os
import subprocess
import sys
import traceback
from pathlib import Path

from click.testing import CliRunner

from deploykit.cli import cli


def command_line(args, timing: bool) -> list[str]:
    """``args`` as strings; an export skips timing every file on every CPU runtime (``--no-timing``, 4 s or more each)
    unless the test reads those timings (``timing=True``): tests/bench/test_runtimes.py, bench --engine auto and the
    export summary tests do, and the README's examples run as written."""
    line = [str(a) for a in args]
    return line + ["--no-timing"] if line[:1] == ["export"] and not timing and "--no-timing" not in line else line


def invoke(*args, timing: bool = False):
    """click's result of ``deploykit ARGS...`` run in-process; arguments may be paths or numbers."""
    return CliRunner().invoke(cli, command_line(args, timing))


def run_cli(*args, timing: bool = False):
    """(click's result, its output on one line) for ``deploykit ARGS...``."""
    result = invoke(*args, timing=timing)
    return result, " ".join(result.output.split())


def deploykit(*args, cwd: Path, env: dict | None = None, timeout: float = 600, timing: bool = False) -> subprocess.CompletedProcess:
    """``python -m deploykit ARGS`` in ``cwd`` with umask 022, in a process of its own, as a user's shell runs it."""
    return subprocess.run(
        [sys.executable, "-m", "deploykit", *command_line(args, timing)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        preexec_fn=lambda: os.umask(0o022),
    )


def deploykit_here(*args, cwd: Path, env: dict | None = None, timing: bool = False) -> subprocess.CompletedProcess:
    """``deploykit ARGS`` in this process (click's runner) in ``cwd`` with umask 022 and ``env`` added, as a
    CompletedProcess like ``deploykit``'s: for what a command says and writes, where the process boundary is not what is
    tested (a cold start costs 2-3 s). An exception the CLI let through is in ``stderr`` as its traceback."""
    previous_umask = os.umask(0o022)
    try:
        with contextlib.chdir(cwd), _environment(env or {}):
            result = CliRunner().invoke(cli, command_line(args, timing))
    finally:
        os.umask(previous_umask)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["deploykit", *command_line(args, timing)], result.exit_code, result.stdout, stderr)


@contextlib.contextmanager
def _environment(added: dict):
    saved = {name: os.environ.get(name) for name in added}
    os.environ.update({name: str(value) for name, value in added.items()})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
