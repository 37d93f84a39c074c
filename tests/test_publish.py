"""Export folders are published whole or not at all: real SIGKILLs, two processes at once, tampered files."""

import json
import signal
import subprocess
import sys
import time

import onnx
import pytest

from deploykit import DeployKitError
from deploykit.manifest import ExportFolder
from deploykit.recipes.ref import parse_model_ref
from tests.cli import run_cli

pytestmark = pytest.mark.xdist_group("publish")


def export_process(out, size):
    return subprocess.Popen(
        [sys.executable, "-m", "deploykit", "export", "cifar_resnet20", "--input-size", str(size), str(size), "--no-timing", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def consistent_size(folder) -> int:
    """The input size of a folder whose every file is the one its manifest hashed; fails on a mixed folder."""
    export = ExportFolder(folder)
    manifest = export.read()
    for name in manifest.files:
        export.verified(name)
    dims = [d.dim_value for d in onnx.load(str(folder / "model.onnx")).graph.input[0].type.tensor_type.shape.dim]
    assert dims[-1] == manifest.input.size
    return manifest.input.size


# Publishes a version of an export folder as `deploykit export` does (ExportFolder.publishing: a model.onnx of the given
# input size and its manifest written into the staging folder), with each publishing step wrapped (the real step still
# runs) so that the process stops itself (SIGSTOP) just before or after the step named in argv[1]; the test then kills it
# there with SIGKILL. No torch: a child starts in a fraction of a second.
PUBLISH_AND_STOP = """
import os, signal, sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper

import deploykit.manifest as manifest

stop_at, out, size = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])

def stopping(function, name):
    def step(*args, **kwargs):
        if stop_at == "before " + name:
            os.kill(os.getpid(), signal.SIGSTOP)
        result = function(*args, **kwargs)
        if stop_at == "after " + name:
            os.kill(os.getpid(), signal.SIGSTOP)
        return result
    return step

manifest.ExportFolder.write = stopping(manifest.ExportFolder.write, "manifest")
manifest._carry_over = stopping(manifest._carry_over, "carry-over")
manifest.exchange_paths = stopping(manifest.exchange_paths, "exchange")
shape = [1, 3, size, size]
graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "net",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)])
record = manifest.ModelRecord("net", "custom", 10, manifest.WeightsRecord(path="net.onnx", sha256="0" * 64))
inputs = manifest.InputRecord(shape=shape, mean=[0.5] * 3, std=[0.25] * 3, resize=size)
with manifest.ExportFolder(out / "net").publishing() as staging:
    onnx.save(helper.make_model(graph), str(staging / manifest.ONNX_NAME))
    manifest.ExportFolder(staging).write(manifest.Manifest(record, inputs), [manifest.ONNX_NAME])
"""


def publish(step: str, out, size: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PUBLISH_AND_STOP, step, str(out), str(size)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stopped(process, timeout=300) -> bool:
    """Whether the process stopped itself (state T) before it exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with open(f"/proc/{process.pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "T":
                return True
        time.sleep(0.05)
    return False


def test_sigkill_inside_the_publish_window_leaves_the_old_or_the_new_export(tmp_path):
    """Killed at each step of publishing, in turn: before the swap the old export is whole, after it the new one."""
    out = tmp_path / "out"
    assert publish("none", out, 32).wait(timeout=60) == 0
    folder = out / "net"
    (folder / "calib-cache").mkdir()  # a side file deploykit wrote, carried over into each new version
    (folder / "calib-cache" / "stats.npz").write_bytes(b"statistics")
    for step, live_size in [
        ("after manifest", 32),  # every new file staged, the manifest written: nothing published yet
        ("before carry-over", 32),
        ("after carry-over", 32),  # the side files copied into the staged version
        ("before exchange", 32),
        ("after exchange", 24),  # swapped in at once; the previous version not yet removed
    ]:
        process = publish(step, out, 24)
        assert stopped(process), f"the publishing never reached {step!r}: {process.stderr.read()[-1000:]}"
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert consistent_size(folder) == live_size, step
        assert (folder / "calib-cache" / "stats.npz").read_bytes() == b"statistics", step
    assert publish("none", out, 28).wait(timeout=60) == 0  # cleans up too
    assert consistent_size(folder) == 28
    assert not list(out.glob(".net.staging-*")) and not list(folder.glob(".export-*"))


def test_two_exports_into_one_folder_take_turns(tmp_path):
    first, second = export_process(tmp_path, 16), export_process(tmp_path, 24)
    assert first.wait(timeout=300) == 0 and second.wait(timeout=300) == 0, first.stderr.read() + second.stderr.read()
    assert consistent_size(tmp_path / "cifar_resnet20") in (16, 24)


def test_a_file_changed_after_export_is_refused(small_export):
    folder = small_export
    data = bytearray((folder / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(DeployKitError, match="sha256 differs from manifest.json.*re-export"):
        parse_model_ref(str(folder))
    result, text = run_cli("compare", "cifar_resnet20", folder)
    assert result.exit_code == 2 and "re-export" in text


def test_deploykits_files_beside_the_export_are_kept_and_a_users_file_is_never_replaced(small_export, tmp_path):
    folder = small_export
    (folder / "notes.txt").write_text("mine")
    (folder / "calib-cache").mkdir(exist_ok=True)
    (folder / "calib-cache" / "x.json").write_text("{}")
    result, text = run_cli("export", "cifar_resnet20", "--input-size", 24, 24, "--out", tmp_path)
    assert result.exit_code == 2 and "holds files deploykit did not write (notes.txt)" in text, text
    assert (folder / "notes.txt").read_text() == "mine"
    (folder / "notes.txt").unlink()
    assert run_cli("export", "cifar_resnet20", "--input-size", 24, 24, "--out", tmp_path)[0].exit_code == 0
    assert (folder / "calib-cache" / "x.json").is_file()
    assert json.loads((folder / "manifest.json").read_text())["input"]["shape"][-1] == 24
