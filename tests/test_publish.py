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
    return subprocess.Popen([sys.executable, "-m", "deploykit", "export", "cifar_resnet20", "--input-size", str(size), str(size),
                             "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def consistent_size(folder) -> int:
    """The input size of a folder whose every file is the one its manifest hashed; fails on a mixed folder."""
    export = ExportFolder(folder)
    manifest = export.read()
    for name in manifest.files:
        export.verified(name)
    dims = [d.dim_value for d in onnx.load(str(folder / "model.onnx")).graph.input[0].type.tensor_type.shape.dim]
    assert dims[-1] == manifest.input.size
    return manifest.input.size


def test_sigkill_at_any_moment_leaves_the_old_or_the_new_export(tmp_path):
    assert run_cli("export", "cifar_resnet20", "--input-size", 32, 32, "--out", tmp_path)[0].exit_code == 0
    folder = tmp_path / "cifar_resnet20"
    seen = set()
    for delay in (0.5, 1.5, 2.5, 3.5, 4.5, 6.0):
        process = export_process(tmp_path, 24)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        seen.add(consistent_size(folder))
    assert seen <= {24, 32}
    assert run_cli("export", "cifar_resnet20", "--input-size", 28, 28, "--out", tmp_path)[0].exit_code == 0  # cleans up too
    assert consistent_size(folder) == 28
    assert not list(tmp_path.glob(".cifar_resnet20.staging-*")) and not list(folder.glob(".export-*"))


def test_two_exports_into_one_folder_take_turns(tmp_path):
    first, second = export_process(tmp_path, 16), export_process(tmp_path, 24)
    assert first.wait(timeout=300) == 0 and second.wait(timeout=300) == 0, first.stderr.read() + second.stderr.read()
    assert consistent_size(tmp_path / "cifar_resnet20") in (16, 24)


def test_a_file_changed_after_export_is_refused(tmp_path):
    assert run_cli("export", "cifar_resnet20", "--out", tmp_path)[0].exit_code == 0
    folder = tmp_path / "cifar_resnet20"
    data = bytearray((folder / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(DeployKitError, match="sha256 differs from manifest.json.*re-export"):
        parse_model_ref(str(folder))
    result, text = run_cli("compare", "cifar_resnet20", folder)
    assert result.exit_code == 2 and "re-export" in text


def test_deploykits_files_beside_the_export_are_kept_and_a_users_file_is_never_replaced(tmp_path):
    assert run_cli("export", "cifar_resnet20", "--out", tmp_path)[0].exit_code == 0
    folder = tmp_path / "cifar_resnet20"
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
