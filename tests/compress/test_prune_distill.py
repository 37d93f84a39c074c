"""Pruning across the hard graph patterns, distillation on the real digits, DDP with two processes."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deploykit import DeployKitError
from deploykit.cli import cli
from deploykit.compress.distill import distill, validation_top1
from deploykit.compress.configs import DistillConfig
from deploykit.data.training import load_training_data
from deploykit.compress.prune import prune_model
from deploykit.compress.configs import PruneConfig
from deploykit.manifest import PRUNED_NAME
from deploykit.recipes.prune import run_prune
from deploykit.recipes.train import run_distill
from deploykit.data import Preprocess
from deploykit.models import get_spec
from deploykit.recipes.export import export
from deploykit.recipes.configs import ExportConfig
from deploykit.recipes.ref import build_model, parse_model_ref

pytestmark = pytest.mark.xdist_group("digits-train")


@pytest.mark.parametrize(
    "name, size, classes",
    [
        ("resnet18", 64, 1000),  # residual adds
        ("mobilenet_v2", 64, 1000),  # depthwise
        ("densenet121", 64, 1000),  # concatenation
        ("resnext50_32x4d", 64, 1000),  # grouped convolutions
        ("se_resnet50", 64, 1000),  # squeeze-and-excitation
        ("googlenet", 64, 1000),  # inception concatenation, aux heads dropped
    ],
)
def test_pruning_gives_a_smaller_model_that_exports_with_parity(name, size, classes, tmp_path):
    report = run_prune(parse_model_ref(name), PruneConfig(ratio=0.3, round_to=8), tmp_path / name, size)
    assert report.macs_after < report.macs_before and report.params_after < report.params_before
    model = build_model(name, str(tmp_path / name / PRUNED_NAME))
    assert model(torch.randn(2, 3, size, size)).shape == (2, classes)
    result = export(ExportConfig(name, time_runtimes=False, out=tmp_path, weights=str(tmp_path / name / PRUNED_NAME), input_size=size))
    assert result.parity.passed, result.parity.summary()


def test_pruned_checkpoint_reloads_exactly_and_safely(tmp_path):
    run_prune(parse_model_ref("cifar_resnet20"), PruneConfig(ratio=0.5), tmp_path, 32)
    original = build_model("cifar_resnet20")
    x = torch.randn(3, 3, 32, 32)
    a = build_model("cifar_resnet20", str(tmp_path / PRUNED_NAME))
    b = build_model("cifar_resnet20", str(tmp_path / PRUNED_NAME))
    assert torch.equal(a(x), b(x)) and not torch.allclose(a(x), original(x))
    checkpoint = torch.load(tmp_path / PRUNED_NAME, weights_only=True)  # plain tensors and numbers
    assert checkpoint["widths"]["layer1.0.conv1"]["out_channels"] == 8


def test_target_macs_reaches_half(tmp_path):
    model = build_model("cifar_resnet56")
    result = prune_model(model, (1, 3, 32, 32), PruneConfig(target_macs=0.5 * 125.75e6, method="taylor"))
    assert result.macs_after <= 0.5 * result.macs_before and result.macs_after > 0.3 * result.macs_before


def test_classifier_output_is_never_pruned():
    model = build_model("squeezenet1_1")
    prune_model(model, (1, 3, 64, 64), PruneConfig(ratio=0.5, method="l1"))
    assert model.classifier[1].out_channels == 1000


def test_layers_as_wide_as_the_class_count_are_still_pruned():
    """With 64 classes, a ResNet's 64-wide convolutions are ordinary layers; only the classifier is kept."""
    model = build_model("resnet18", num_classes=64)
    prune_model(model, (1, 3, 64, 64), PruneConfig(ratio=0.5))
    assert model.fc.out_features == 64 and model.conv1.out_channels == 32 and model.layer1[0].conv1.out_channels == 32


@pytest.mark.parametrize(
    "config, message",
    [
        (PruneConfig(ratio=1.0), "between 0 and 1"),
        (PruneConfig(ratio=0.0), "between 0 and 1"),
        (PruneConfig(), "exactly one of --ratio and --target-macs"),
        (PruneConfig(ratio=0.5, method="random"), "unknown pruning method"),
    ],
)
def test_bad_prune_options(config, message):
    with pytest.raises(DeployKitError, match=message):
        prune_model(build_model("cifar_resnet20"), (1, 3, 32, 32), config)


def test_prune_cli_reports_sizes_agreement_and_deployed_latency(tmp_path):
    """Without labelled photos: agreement with the unpruned model on the bundled held-out photos, and both models timed
    on onnxruntime and OpenVINO at batch 1 and the larger batch."""
    result = CliRunner().invoke(cli, ["prune", "cifar_resnet20", "--ratio", "0.5", "--batch", "8", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "MACs" in text and "PASS" in text and "top-1 agreement with the unpruned model" in text
    for timed in ("onnxruntime batch 1:", "OpenVINO batch 1:", "onnxruntime batch 8:", "OpenVINO batch 8:"):
        assert timed in text
    manifest = json.loads((tmp_path / "cifar_resnet20" / "manifest.json").read_text())
    prune = manifest["prune"]
    assert prune["mac_reduction"] > 0.5 and set(manifest["files"]) == {"model.onnx", PRUNED_NAME}
    assert {(s["runtime"], s["batch"]) for s in prune["speeds"]} == {("ort", 1), ("openvino", 1), ("ort", 8), ("openvino", 8)}
    assert prune["accuracy"]["labelled"] is False and 0 <= prune["accuracy"]["agreement"] <= 1
    assert manifest["input"]["shape"][0] == "batch"  # exported with a dynamic batch, so the larger batch runs the same file


def test_distillation_improves_the_student(train_on_digits, tmp_path):
    teacher = train_on_digits("cifar_resnet20")
    preprocess = Preprocess.for_model(get_spec("cifar_resnet20"), teacher.size)
    data = load_training_data("digits", preprocess)
    student = build_model("cifar_resnet20", width=8)
    start = validation_top1(student, data.val)
    result = distill(student, build_model("cifar_resnet20", str(teacher.weights)), data, DistillConfig(epochs=2, lr=0.1), tmp_path, {"name": "cifar_resnet20", "kwargs": {"width": 8}})
    assert start < 0.3 and result.history[-1].val_top1 > start + 0.3
    assert (tmp_path / "best.pth").is_file() and (tmp_path / "last.pth").is_file() and (tmp_path / "checkpoint.pth").is_file()


def test_interrupted_run_resumes_where_it_stopped(train_on_digits, tmp_path):
    teacher = train_on_digits("cifar_resnet20")
    args = ("cifar_resnet20", f"cifar_resnet20:{teacher.weights}", "digits")
    first = run_distill(*args, DistillConfig(epochs=1, lr=0.1), tmp_path, input_size=16)
    assert [r.epoch for r in first.history] == [1]
    # Same run asked for 2 epochs: the checkpoint belongs to a different config, so it is refused...
    with pytest.raises(DeployKitError, match="different run"):
        run_distill(*args, DistillConfig(epochs=2, lr=0.1), tmp_path, input_size=16)
    # ...while rerunning the same config after completion picks the finished state up instead of restarting.
    again = run_distill(*args, DistillConfig(epochs=1, lr=0.1), tmp_path, input_size=16)
    assert again.history == first.history and again.weights_sha256 == first.weights_sha256


@pytest.mark.parametrize(
    "setup, message",
    [("one_class", "at least 2 classes"), ("empty", "no images"), ("mismatch", "predicts 1000 classes but the data has 10"), ("no_teacher_weights", "a teacher needs trained weights")],
)
def test_bad_training_input(setup, message, tmp_path):
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    teacher = "cifar_resnet20:" + str(_save(tmp_path, "cifar_resnet20"))  # a valid teacher: the data is what is wrong
    student = "cifar_resnet20"
    if setup == "one_class":
        (data / "cat").mkdir()
        Image.new("RGB", (32, 32)).save(data / "cat" / "a.png")
    elif setup == "mismatch":
        data, student = "digits", "resnet18:" + str(_save(tmp_path, "resnet18"))
    elif setup == "no_teacher_weights":
        data, teacher = "digits", "cifar_resnet20"
    with pytest.raises(DeployKitError, match=message):
        run_distill(student, teacher, str(data), DistillConfig(epochs=1), tmp_path / "out", input_size=32 if setup == "mismatch" else 16)


def _save(tmp_path, name):
    path = tmp_path / f"{name}.pth"
    torch.save(build_model(name).state_dict(), path)
    return path


def test_two_process_ddp_run_agrees_on_weights(train_on_digits, tmp_path):
    teacher = train_on_digits("cifar_resnet20")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "deploykit",
            "distill",
            "--teacher",
            f"cifar_resnet20:{teacher.weights}",
            "--student",
            "cifar_resnet20",
            "--data",
            "digits",
            "--epochs",
            "1",
            "--input-size",
            "16",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The two ranks share one pipe, so their lines may interleave: read the pairs, not the lines.
    reports = dict(re.findall(r"rank (\d)/2 weights sha256 ([0-9a-f]{64})", proc.stdout))
    assert sorted(reports) == ["0", "1"] and len(set(reports.values())) == 1, proc.stdout[-2000:]
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["world_size"] == 2 and np.isfinite(history["history"][0]["train_loss"])


def test_a_validation_collapse_is_marked_and_told_in_red():
    """93% -> 75% -> 30%, as the digits run went: the fall of 18 points and more below the best epoch is a collapse."""
    from deploykit import cli_render
    from deploykit.compress.distill import EpochRecord, epoch_verdict

    history = []
    for epoch, top1 in enumerate([0.93, 0.75, 0.30, 0.95], start=1):
        history.append(EpochRecord(epoch, 1.0, 1.0, 1.0, top1, 0.0, *epoch_verdict(history, top1)))
    assert [(r.best, r.collapsed) for r in history] == [(True, False), (False, True), (False, True), (True, False)]
    with cli_render.console.capture() as captured:
        cli_render.epoch(history[2])
    assert "VALIDATION COLLAPSED in epoch 3: top-1 30.00%" in captured.get() and "best.pth keeps the best one" in captured.get()
