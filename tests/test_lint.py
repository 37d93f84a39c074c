"""ruff's linter and formatter over the code, as pyproject.toml configures them: a failure names each file and rule, or
each file the formatter would change (`ruff format` rewrites them; pyproject.toml lists the three it leaves alone, and
why)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = ["deploykit", "tests", "benchmarks", "calibration"]


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_linter_finds_nothing():
    done = ruff("check", *CODE)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-1000:]


def test_the_code_is_formatted():
    done = ruff("format", "--check", *CODE)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-1000:]
