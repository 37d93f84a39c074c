"""The TensorRT code, checked without TensorRT: mypy against TensorRT 10.13's stubs, and the 10/11 version guards."""

import subprocess
import sys
from pathlib import Path

import pytest

from deploykit import DeployKitError
from deploykit.runtime.trt_engine import PrecisionFlags, precision_flags, tensorrt_major

ROOT = Path(__file__).resolve().parents[2]


def _mypy(stubs: Path, *files: str) -> subprocess.CompletedProcess:
    env = {"MYPYPATH": str(stubs), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", *files], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_tensorrt_code_type_checks_against_the_stubs(tensorrt_stubs):
    proc = _mypy(tensorrt_stubs)  # the files listed in pyproject's [tool.mypy]
    assert proc.returncode == 0 and "Success: no issues found in 3 source files" in proc.stdout, proc.stdout[-3000:]


def test_the_check_catches_a_wrong_tensorrt_name(tensorrt_stubs, tmp_path):
    """Not vacuous: a misspelt attribute and a wrong argument type are errors."""
    wrong = tmp_path / "wrong.py"
    wrong.write_text("import tensorrt as trt\n\nflag = trt.BuilderFlag.FP17\nbuilder = trt.Builder(trt.Logger(trt.Logger.WARNING))\nbuilder.create_network('explicit')\n")
    proc = _mypy(tensorrt_stubs, "--follow-imports=silent", str(wrong))
    assert proc.returncode == 1, proc.stdout
    assert 'has no attribute "FP17"' in proc.stdout and "create_network" in proc.stdout


@pytest.mark.parametrize(
    "version, fp16, qdq, flags",
    [
        ("10.13.0.35", False, True, PrecisionFlags(fp16=False, int8=True)),  # weakly typed: Q/DQ needs BuilderFlag.INT8
        ("10.13.0.35", True, False, PrecisionFlags(fp16=True, int8=False)),
        ("11.4.0.106", False, True, PrecisionFlags(fp16=False, int8=False)),  # strongly typed: no flags exist
        ("11.4.0.106", False, False, PrecisionFlags(fp16=False, int8=False)),
    ],
)
def test_precision_flags_follow_the_tensorrt_version(version, fp16, qdq, flags):
    assert precision_flags(version, fp16, qdq) == flags


def test_versions_without_the_api_are_refused():
    with pytest.raises(DeployKitError, match="no FP16 builder flag"):
        precision_flags("11.4.0.106", fp16=True, has_qdq=False)
    for version in ("8.6.1", "9.3.0.post12.dev1", "12.0", "unknown"):
        with pytest.raises(DeployKitError, match="install TensorRT 10 or 11"):
            tensorrt_major(version)
    assert tensorrt_major("10.0.1") == 10 and tensorrt_major("11.4.0.106") == 11
