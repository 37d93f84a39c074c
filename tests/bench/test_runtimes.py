"""export times every file on every CPU runtime in a process of its own: what a crash there costs, and the figures."""

import json
import signal
import stat
import sys

import pytest

from deploykit.bench import runtimes
from deploykit.bench.runtimes import time_runtimes_apart
from deploykit.io import sha256_file
from deploykit.manifest import ONNX_NAME
from deploykit.recipes.configs import ExportConfig
from deploykit.recipes.export import export
from tests.cli import invoke


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    return export(ExportConfig("cifar_resnet20", out=tmp_path_factory.mktemp("timing"), input_size=16, time_runtimes=False)).folder


def test_every_runtime_is_timed_in_interleaved_rounds(small_export):
    timings = time_runtimes_apart(small_export, {ONNX_NAME: ("fp32", True)}, (1, 3, 16, 16))
    expected = {"ort", "openvino"} if runtimes.openvino_installed() else {"ort"}
    assert {c.runtime for c in timings.combinations} == expected and timings.rounds == runtimes.ROUNDS
    assert all(c.p50_ms > 0 and c.passed and c.file == ONNX_NAME for c in timings.combinations)
    assert timings.fastest == min(timings.combinations, key=lambda c: c.p50_ms)
    assert timings.from_dict(timings.as_dict()) == timings


def test_a_failing_check_is_never_the_fastest(small_export):
    timings = time_runtimes_apart(small_export, {ONNX_NAME: ("fp32", False)}, (1, 3, 16, 16))
    assert timings.combinations and timings.fastest is None


def test_a_timing_process_killed_by_a_signal_costs_the_timing_not_the_export(tmp_path, monkeypatch):
    """The timing runs in a real child process; here it dies of SIGSEGV, as a crashing runtime would. The export is
    still published, says why nothing was timed, and bench --engine auto then has nothing to choose from."""
    crashing = tmp_path / "python"
    crashing.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crashing.chmod(crashing.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(sys, "executable", str(crashing))
    result = export(ExportConfig("cifar_resnet20", out=tmp_path / "out", input_size=16))
    assert result.runtimes.combinations == () and result.runtimes.fastest is None
    assert result.runtimes.not_timed[0].startswith(f"the timing process ended with signal {int(signal.SIGSEGV)}")
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["runtimes"]["fastest"] is None and sha256_file(result.onnx_path) == manifest["files"][ONNX_NAME]["sha256"]
    monkeypatch.undo()
    bench = invoke("bench", result.folder, "--engine", "auto", "--runs", 2)
    assert bench.exit_code == 2 and "has no such measurement; export first" in bench.output
