"""Bad input to export and compare: one clear line, non-zero exit, nothing half-written."""

import subprocess
import sys

import pytest
import torch

from deploykit import DeployKitError
from deploykit.io import sha256_file
from deploykit.models import get_model
from deploykit.parity import Tolerances
from deploykit.recipes.export import export
from deploykit.recipes.configs import ExportConfig
from tests.cli import invoke as run


def test_unknown_model_suggests_names(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "deploykit", "export", "resnet5O", "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "did you mean" in proc.stderr and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())


def test_unreadable_weights_write_nothing(tmp_path):
    weights = tmp_path / "broken.pth"
    weights.write_bytes(b"\x00garbage" * 100)
    result = run("export", "resnet18", "--weights", str(weights), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "cannot read checkpoint" in result.output
    assert not (tmp_path / "out" / "resnet18" / "model.onnx").exists()


def test_output_folder_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run("export", "cifar_resnet20", "--out", str(blocker / "sub"))
    assert result.exit_code == 2 and "cannot create output folder" in result.output


def test_failed_export_keeps_the_previous_good_one(small_export, tmp_path):
    before = sha256_file(small_export / "model.onnx")
    manifest_before = (small_export / "manifest.json").read_text()
    with pytest.raises(DeployKitError, match="does not match PyTorch, so nothing was written"):
        export(ExportConfig("cifar_resnet20", time_runtimes=False, out=tmp_path, tolerances=Tolerances(rel_error=0.0, min_cosine=1.0 + 1e-9)))
    assert sha256_file(small_export / "model.onnx") == before
    assert (small_export / "manifest.json").read_text() == manifest_before
    assert sorted(p.name for p in small_export.iterdir()) == ["manifest.json", "model.onnx"]


def test_export_with_real_weights_records_their_hash(tmp_path):
    weights = tmp_path / "w.pth"
    torch.save(get_model("cifar_resnet20", seed=3).state_dict(), weights)
    result = run("export", "cifar_resnet20", "--weights", str(weights), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert sha256_file(weights) in (tmp_path / "out" / "cifar_resnet20" / "manifest.json").read_text()


def test_input_below_minimum_and_non_square_are_rejected(tmp_path):
    assert "at least 75x75" in run("export", "inception_v3", "--input-size", "32", "32", "--out", str(tmp_path)).output
    result = run("export", "resnet18", "--input-size", "64", "32", "--out", str(tmp_path))
    assert result.exit_code == 2 and "square inputs only" in result.output


def test_batch_and_dynamic_batch_exclude_each_other(tmp_path):
    result = run("export", "resnet18", "--batch", "4", "--dynamic-batch", "--out", str(tmp_path))
    assert result.exit_code == 2 and "exclude each other" in result.output


def test_corrupt_onnx_in_compare(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 50)
    result = run("compare", "resnet18", str(bad))
    assert result.exit_code == 2 and "not a readable ONNX file" in result.output


def test_missing_onnx_and_bare_checkpoint_in_compare(tmp_path):
    assert "does not exist" in run("compare", "resnet18", str(tmp_path / "nope.onnx")).output
    result = run("compare", "resnet18", str(tmp_path / "weights.pth"))
    assert result.exit_code == 2 and "write NAME:" in result.output


@pytest.mark.parametrize("option", ["--calib", "--val", "--holdout"])
def test_bad_int8_data_is_refused_before_the_onnx_export(option, tmp_path):
    """Audited by what ran: the refusal is the only line, with no export or parity line before it, and nothing is written."""
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("export", "cifar_resnet20", "--int8", option, str(empty), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and result.output.count("\n") == 1 and result.output.startswith("Error: "), result.output
    assert "parity" not in result.output and not (tmp_path / "out").exists()


def test_a_usage_error_is_one_line_with_where_to_look(tmp_path):
    result = run("export", "cifar_resnet20", "--calib-size", "0", "--out", str(tmp_path))
    assert result.exit_code == 2 and result.output == ("Error: Invalid value for '--calib-size': 0 is not in the range x>=1 (see 'deploykit export --help')\n"), result.output
