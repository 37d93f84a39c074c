"""export times every file on every CPU runtime in a process of its own: what a crash there costs, and the figures."""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from deploykit.bench import runtimes
from deploykit.bench.runtimes import RuntimeTimings, time_runtimes_apart
from deploykit.choices import CPU_RUNTIMES
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
    assert all(len(c.rounds_ms) == runtimes.ROUNDS and min(c.rounds_ms) <= c.p50_ms <= max(c.rounds_ms) for c in timings.combinations)
    assert timings.decision.tied[0] == min(timings.combinations, key=lambda c: c.p50_ms)
    assert timings.from_dict(timings.as_dict()) == timings


def test_a_failing_check_is_never_chosen(small_export):
    timings = time_runtimes_apart(small_export, {ONNX_NAME: ("fp32", False)}, (1, 3, 16, 16))
    assert timings.combinations and timings.decision is None


def test_the_same_file_twice_is_a_tie_settled_by_accuracy_and_a_heavier_file_loses(small_export, tmp_path):
    """Real runners on real files: the FP32 file and a byte copy of it labelled INT8 time alike, so neither is faster
    beyond noise (the tie goes to FP32, the smaller accuracy loss); a model with 3x the work is slower beyond noise."""
    folder = Path(shutil.copytree(small_export, tmp_path / "pair"))
    shutil.copy(folder / ONNX_NAME, folder / "model.int8.onnx")
    heavy = export(ExportConfig("cifar_resnet56", out=tmp_path / "heavy", input_size=16, time_runtimes=False)).onnx_path
    shutil.copy(heavy, folder / "heavy.onnx")
    timings = time_runtimes_apart(folder, {ONNX_NAME: ("fp32", True), "model.int8.onnx": ("int8", True), "heavy.onnx": ("fp32", True)}, (1, 3, 16, 16))
    for runtime in {c.runtime for c in timings.combinations}:
        fp32, copy, slow = (next(c for c in timings.combinations if (c.file, c.runtime) == (name, runtime)) for name in (ONNX_NAME, "model.int8.onnx", "heavy.onnx"))
        assert not fp32.slower_beyond_noise(copy) and not copy.slower_beyond_noise(fp32), (fp32, copy)
        assert slow.slower_beyond_noise(fp32) and slow.slower_beyond_noise(copy), (slow, fp32)
    decision = timings.decision
    assert "heavy.onnx" not in {c.file for c in decision.tied} and decision.chosen.precision == "fp32"
    if {c.runtime for c in decision.tied} == {"ort"}:
        assert decision.tie and decision.chosen.file == ONNX_NAME and "tie within noise" in decision.describe()


def _combination(runtime: str, precision: str, rounds: list[float]) -> runtimes.Combination:
    return runtimes.Combination("f", runtime, precision, True, sorted(rounds)[len(rounds) // 2], tuple(rounds))


def test_the_decision_names_a_winner_only_beyond_noise():
    """Paired rounds: a steady 20% lead wins even through one noisy round; overlapping rounds tie, and a tie goes to
    the smaller accuracy loss, then onnxruntime; a 3% lead is within the margin."""
    fast = _combination("openvino", "int8", [10, 10.2, 9.9, 10.1, 30, 10, 10.1])
    slow = _combination("ort", "fp32", [12, 12.3, 11.9, 12.1, 12, 12.2, 12.1])
    won = runtimes.RuntimeTimings(1, 7, (slow, fast)).decision
    assert not won.tie and won.chosen == fast and "faster than every other beyond noise" in won.describe()
    noisy = _combination("ort", "int8", [10, 14, 9, 13, 10.5, 12, 9.5])
    steady = _combination("openvino", "fp32", [11, 11, 11, 11, 11, 11, 11])
    tied = runtimes.RuntimeTimings(1, 7, (noisy, steady)).decision
    assert tied.tie and tied.chosen == steady and "tie within noise of onnxruntime INT8, OpenVINO FP32" in tied.describe()
    close = _combination("openvino", "fp32", [10.3] * 7)
    assert runtimes.RuntimeTimings(1, 7, (close, _combination("ort", "fp32", [10.0] * 7))).decision.chosen.runtime == "ort"
    assert not close.slower_beyond_noise(_combination("ort", "fp32", [10.0] * 7))


def test_a_timing_process_killed_by_a_signal_costs_the_timing_not_the_export(tmp_path, monkeypatch):
    """The timing runs in a real child process; here it dies of SIGSEGV, as a crashing runtime would. The export is
    still published, says why nothing was timed, and bench --engine auto then has nothing to choose from."""
    crashing = tmp_path / "python"
    crashing.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crashing.chmod(crashing.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(sys, "executable", str(crashing))
    result = export(ExportConfig("cifar_resnet20", out=tmp_path / "out", input_size=16))
    assert result.runtimes.combinations == () and result.runtimes.decision is None
    assert result.runtimes.not_timed[0].startswith(f"the timing process ended with signal {int(signal.SIGSEGV)}")
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["runtimes"]["chosen"] is None and sha256_file(result.onnx_path) == manifest["files"][ONNX_NAME]["sha256"]
    monkeypatch.undo()
    bench = invoke("bench", result.folder, "--engine", "auto", "--runs", 2)
    assert bench.exit_code == 2 and "has no such measurement; export first" in bench.output


def test_a_line_the_timing_child_prints_does_not_cost_the_timing(small_export, tmp_path, monkeypatch):
    """A sitecustomize that prints at exit (as some site setups do): the result travels in a file, not on stdout."""
    (tmp_path / "sitecustomize.py").write_text("import atexit\natexit.register(lambda: print('goodbye from sitecustomize'))\n")
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    timings = time_runtimes_apart(small_export, {ONNX_NAME: ("fp32", True)}, (1, 3, 16, 16))
    assert timings.combinations and not any("nothing was timed" in line for line in timings.not_timed), timings


def test_a_broken_openvino_costs_only_openvinos_timings(small_export, tmp_path, monkeypatch):
    """An openvino package that is found but fails to import: onnxruntime is still timed, and the line says what is wrong."""
    (tmp_path / "openvino").mkdir()
    (tmp_path / "openvino" / "__init__.py").write_text("raise ImportError('libopenvino.so.2026.4.1: cannot open shared object file')\n")
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    timings = time_runtimes_apart(small_export, {ONNX_NAME: ("fp32", True)}, (1, 3, 16, 16))
    assert [c.runtime for c in timings.combinations] == ["ort"]
    assert any("OpenVINO is installed but cannot be imported (ImportError: libopenvino.so" in line for line in timings.not_timed)


RUNTIMES_EDITS = {
    "an unknown runtime": (lambda r: r["combinations"][0].update(runtime="tensorrt"), "combinations[0].runtime is 'tensorrt'"),
    "a latency in words": (lambda r: r["combinations"][0].update(p50_ms="fast"), "combinations[0].p50_ms is 'fast'"),
    "a negative latency": (lambda r: r["combinations"][0].update(p50_ms=-3.0), "combinations[0].p50_ms is -3.0"),
    "a NaN latency": (lambda r: r["combinations"][0].update(p50_ms=float("nan")), "combinations[0].p50_ms is nan"),
    "an extra key": (lambda r: r["combinations"][0].update(speed=1), "combinations[0] is {"),
    "rounds in words": (lambda r: r["combinations"][0].update(rounds_ms="fast"), "combinations[0].rounds_ms is 'fast'"),
    "combinations in words": (lambda r: r.update(combinations="none"), "runtimes.combinations is 'none'"),
    "passed as a string": (lambda r: r["combinations"][0].update(passed="false"), "combinations[0].passed is 'false'"),
    "a batch of zero": (lambda r: r.update(batch=0), "runtimes.batch is 0"),
    "not a record": (lambda r: r.clear() or r.update(x=1), "runtimes.batch is None"),
}


@pytest.mark.parametrize("edit", RUNTIMES_EDITS)
def test_an_edited_runtimes_section_is_one_line_naming_the_field(edit, small_export, tmp_path):
    folder = tmp_path / "edited"
    shutil.copytree(small_export, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["runtimes"] = {
        "batch": 1,
        "rounds": 3,
        "combinations": [{"file": ONNX_NAME, "runtime": "ort", "precision": "fp32", "passed": True, "p50_ms": 1.5}],
        "fastest": None,
        "not_timed": [],
    }
    change, expected = RUNTIMES_EDITS[edit]
    change(manifest["runtimes"])
    (folder / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("bench", folder, "--engine", "auto", "--runs", 2)
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "manifest.json: runtimes" in result.output and expected in result.output, result.output


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            pass
    return found


def _export_until_timing(tmp_path) -> tuple[subprocess.Popen, Path]:
    """`deploykit export` in a real process, returned once its timing child is running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "deploykit", "export", "cifar_resnet20", "--input-size", "16", "--out", str(tmp_path / "out")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        for work in tmp_path.glob("deploykit-timing-*"):
            if _processes_mentioning(str(work / "spec.json")):
                return process, work
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"no timing child was seen: {process.stderr.read()}")


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_the_timing_child_ends_with_the_export_and_leaves_nothing_behind(how, tmp_path, monkeypatch):
    process, work = _export_until_timing(tmp_path)
    process.send_signal(how)
    _, stderr = process.communicate(timeout=60)
    deadline = time.monotonic() + 20
    while _processes_mentioning(str(work)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_mentioning(str(work)), "the timing child outlived its export"
    assert process.returncode == (143 if how == signal.SIGTERM else -9)
    if how == signal.SIGTERM:  # a handled stop runs every clean-up itself
        assert stderr == "Error: stopped by SIGTERM; nothing half-written was published\n", stderr
        assert not work.exists() and not list((tmp_path / "out").glob(".*staging*"))
    else:  # a SIGKILL runs none: the next timing removes what it left
        assert work.exists()
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        export(ExportConfig("cifar_resnet20", out=tmp_path / "out", input_size=16))
        assert not work.exists() and not list(tmp_path.glob("deploykit-timing-*"))


def test_a_slower_fp16_file_is_called_out_on_each_runtime_it_is_slower_on(tmp_path):
    """FP16 as loudly as INT8, at export and at bench: the red line names exactly the runtimes where the manifest's own
    paired rounds have FP16 slower than FP32 beyond noise, and bench repeats it for the runtime it times."""
    result = invoke("export", "cifar_resnet20", "--input-size", 32, "--fp16", "--out", tmp_path, timing=True)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "cifar_resnet20"
    timings = RuntimeTimings.from_dict(json.loads((folder / "manifest.json").read_text())["runtimes"])
    slower = [runtime for runtime in CPU_RUNTIMES if timings.slower_than_fp32("model.fp16.onnx", runtime)]
    line = next((l for l in result.output.splitlines() if l.startswith("FP16 IS SLOWER THAN FP32")), None)
    assert (line is not None) == bool(slower), result.output
    assert line is None or [r for r, name in CPU_RUNTIMES.items() if f"{name} " in line] == slower, line
    for runtime in timings.speedups("fp16"):
        bench = invoke("bench", folder, "--engine", runtime, "--precision", "fp16", "--runs", 2, "--warmup", 1)
        assert bench.exit_code == 0, bench.output
        warned = "model.fp16.onnx ran slower than model.onnx on" in " ".join(bench.output.split())
        assert warned == (runtime in slower), (runtime, slower, bench.output)
