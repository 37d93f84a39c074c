"""One parser for what a user names as a model: every command takes every form of reference."""

import os

import pytest
import torch

from deploykit import DeployKitError
from deploykit.recipes.ref import build_model, parse_model_ref
from tests.cli import run_cli

SIZE = "16"
pytestmark = pytest.mark.xdist_group("model-refs")


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """Each form of reference to one small model: name, NAME:CHECKPOINT, export folder, .onnx file, pruned folder."""
    root = tmp_path_factory.mktemp("refs")
    checkpoint = root / "trained.pth"
    torch.save(build_model("cifar_resnet20").state_dict(), checkpoint)
    assert run_cli("export", f"cifar_resnet20:{checkpoint}", "--input-size", SIZE, SIZE, "--out", root / "exported")[0].exit_code == 0
    assert run_cli("prune", "cifar_resnet20", "--ratio", "0.3", "--input-size", SIZE, "--no-timing", "--out", root / "pruned")[0].exit_code == 0
    return {
        "name": "cifar_resnet20",
        "checkpoint": f"cifar_resnet20:{checkpoint}",
        "export folder": str(root / "exported" / "cifar_resnet20"),
        "onnx file": str(root / "exported" / "cifar_resnet20" / "model.onnx"),
        "pruned folder": str(root / "pruned" / "cifar_resnet20"),
    }


FORMS = ["name", "checkpoint", "export folder", "onnx file", "pruned folder"]


@pytest.mark.parametrize("form", FORMS)
def test_compare_takes_every_form(refs, form):
    result, text = run_cli("compare", refs[form], refs[form], "--input-size", SIZE, "--no-images")
    assert result.exit_code == 0 and "PASS" in text, text


@pytest.mark.parametrize("form", FORMS)
def test_bench_takes_every_form(refs, form, tmp_path):
    result, text = run_cli("bench", refs[form], "--runs", 2, "--warmup", 0, "--out", tmp_path)
    assert result.exit_code == 0 and "cifar_resnet20" in text, text


@pytest.mark.parametrize("form", FORMS)
def test_export_takes_every_form(refs, form, tmp_path):
    result, text = run_cli("export", refs[form], "--input-size", SIZE, SIZE, "--out", tmp_path)
    assert result.exit_code == 0 and "PASS" in text, text


@pytest.mark.parametrize("form", FORMS)
def test_prune_takes_every_form(refs, form, tmp_path):
    result, text = run_cli("prune", refs[form], "--ratio", "0.2", "--input-size", SIZE, "--no-timing", "--out", tmp_path)
    assert result.exit_code == 0 and "MACs" in text, text


@pytest.mark.parametrize("form", FORMS)
def test_train_and_distill_take_every_form(refs, form, tmp_path):
    result, text = run_cli("train", refs[form], "--data", "digits", "--epochs", 1, "--input-size", SIZE, "--out", tmp_path / "train")
    assert result.exit_code == 0 and "val top-1" in text, text
    result, text = run_cli("distill", "--teacher", refs[form], "--student", "cifar_resnet20", "--data", "digits", "--epochs", 1, "--input-size", SIZE, "--out", tmp_path / "kd")
    if form == "name":  # seeded random weights are no teacher
        assert result.exit_code == 2 and "a teacher needs trained weights" in text, text
    else:  # a checkpoint, or a folder whose manifest names one
        assert result.exit_code == 0 and "teacher" in text, text


def test_a_name_that_is_also_a_folder_is_ambiguous(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cifar_resnet20").mkdir()
    with pytest.raises(DeployKitError, match="both a registry model and a file or folder here; write ./cifar_resnet20"):
        parse_model_ref("cifar_resnet20")
    with pytest.raises(DeployKitError, match="has no manifest.json"):  # with a separator it is the folder
        parse_model_ref(f".{os.sep}cifar_resnet20")


@pytest.mark.parametrize(
    "text, message",
    [
        ("nope/model.onnx", "does not exist"),
        ("weights.pth", "a checkpoint needs its architecture: write NAME:weights.pth"),
        ("resnet18:", "name the weights after the colon"),
        ("resnet18:missing.pth", "checkpoint missing.pth does not exist"),
        ("resnet1", "unknown model 'resnet1'; did you mean"),
    ],
)
def test_bad_references_say_what_to_write(text, message):
    with pytest.raises(DeployKitError, match=message):
        parse_model_ref(text)
