"""The README is the spec: its examples that run in about a minute on CI are run here as written, in order, from a fresh
folder, through `python -m deploykit` in a subprocess; the longer ones with fewer epochs (the only change made to them)."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
MOBILENET = "mobilenet_v2-b0353104.pth"

# (the README's line, without its comment; the change the test makes to it, if any; the folder it runs in)
PRUNE_AND_DISTILL = [
    ("deploykit train mobilenet_v2:IMAGENET1K_V1 --data ../shared/cifar10/train --limit 5000 --input-size 64 --epochs 2 --out runs/teacher", ("--epochs 2", "--epochs 1"), "project"),
    ("deploykit prune runs/teacher --ratio 0.3 --round-to 8 --data ../shared/cifar10/train --held-out --out runs/pruned", None, "project"),
    (
        "deploykit distill --teacher runs/teacher --student runs/pruned/mobilenet_v2 --data ../shared/cifar10/train --limit 5000 --epochs 2 --out runs/student",
        ("--epochs 2", "--epochs 1"),
        "project",
    ),
    ("deploykit export runs/student --int8 --calib ../shared/cifar10/train --dynamic-batch", None, "project"),
]
# The chain exits 1 when its verdict fails, which one epoch on 500 photos may well do: the verdict is what is checked.
CHAIN = (
    "deploykit export runs/teacher --prune 0.3 --distill-from runs/teacher --data ../shared/cifar10/train --limit 5000 "
    "--epochs 2 --int8 --calib ../shared/cifar10/train --out runs/chain",
    ("--epochs 2", "--epochs 1"),
    "project",
)
MODELS_AND_FILES = [
    ("deploykit list 'resnet*'", None, "."),
    ("deploykit info googlenet", None, "."),
    ("python -m deploykit info mobilenet", None, "."),
    ("deploykit info mobilenet_v2", None, "."),
    ("deploykit export mobilenet --weights IMAGENET1K_V1 --int8", None, "."),
    ("deploykit compare model.onnx model.int8.onnx --per-layer", None, "deploykit-out/mobilenet_v2"),
    ("deploykit export --module mynets.py:build --input-size 224", None, "."),
    ("deploykit bench foreign.onnx --engine ort --input-size 224", None, "."),
    ("deploykit export foreign.onnx --int8 --fp16", None, "."),
]
MYNETS = """import torch


def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=2), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                               torch.nn.Conv2d(16, 32, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(32, 10))
"""


def readme_commands() -> set[str]:
    """Every command line of the README's bash blocks, without its comment."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    return {re.sub(r"\s+#.*$", "", line).strip() for block in blocks for line in block.splitlines() if line.strip()}


def run_examples(examples, folder: Path, env: dict, exit_codes: tuple[int, ...] = (0,)) -> None:
    written = readme_commands()
    for line, change, where in examples:
        assert line in written, f"the README no longer has: {line}"
        command = line.replace(*change) if change else line
        argv = shlex.split(command)
        argv = [sys.executable, "-m", "deploykit", *argv[1:]] if argv[0] == "deploykit" else [sys.executable, *argv[1:]]
        proc = subprocess.run(argv, cwd=folder / where, capture_output=True, text=True, env={**os.environ, **env}, timeout=600)
        assert proc.returncode in exit_codes, f"{command}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, proc.stderr


CIFAR = Path(__file__).resolve().parents[2] / "shared" / "cifar10" / "train"


@pytest.mark.skipif(not CIFAR.is_dir(), reason=f"the CIFAR-10 photos are not at {CIFAR}")
def test_readme_fine_tuning_pruning_and_distillation_examples(real_checkpoint, torch_home_with, tmp_path):
    """As written, from a project folder beside a shared/ whose CIFAR-10 holds 60 photos of each class (links to the real
    ones), so that one epoch of each runs in a minute or two."""
    for label in sorted(p.name for p in CIFAR.iterdir() if p.is_dir()):
        (tmp_path / "shared/cifar10/train" / label).mkdir(parents=True)
        for photo in sorted((CIFAR / label).iterdir())[:60]:
            (tmp_path / "shared/cifar10/train" / label / photo.name).symlink_to(photo)
    (tmp_path / "project").mkdir()
    env = {"TORCH_HOME": str(torch_home_with(real_checkpoint(MOBILENET)))}
    run_examples(PRUNE_AND_DISTILL, tmp_path, env)
    project = tmp_path / "project"
    assert json.loads((project / "runs/teacher/manifest.json").read_text())["model"]["classes"][0] == "airplane"
    assert (project / "deploykit-out/mobilenet_v2/model.int8.onnx").is_file()
    run_examples([CHAIN], tmp_path, env, exit_codes=(0, 1))
    chain = json.loads((project / "runs/chain/mobilenet_v2/manifest.json").read_text())["stages"]["chain"]
    assert set(chain["top1"]) == {"original", "pruned", "distill", chain["shipped"]} and isinstance(chain["passed"], bool)


@pytest.mark.xdist_group("mobilenet_int8")
def test_readme_model_and_file_examples(real_checkpoint, torch_home_with, tmp_path):
    (tmp_path / "mynets.py").write_text(MYNETS)
    examples = iter(MODELS_AND_FILES)
    env = {"TORCH_HOME": str(torch_home_with(real_checkpoint(MOBILENET)))}
    run_examples([next(examples) for _ in range(7)], tmp_path, env)
    (tmp_path / "foreign.onnx").write_bytes((tmp_path / "deploykit-out/mynets_build/model.onnx").read_bytes())
    run_examples(list(examples), tmp_path, env)
    assert (tmp_path / "deploykit-out/foreign/model.int8.onnx").is_file()
