"""The README is the spec: its examples that run in about a minute on CI are run here as written, in order, from a fresh
folder, through `python -m deploykit` in a subprocess; the longer ones with fewer epochs (the only change made to them)."""

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
    ("deploykit train cifar_resnet56 --data digits --epochs 15 --out runs/teacher", ("--epochs 15", "--epochs 1"), "."),
    ("deploykit prune cifar_resnet56 --weights runs/teacher/student.pth --target-macs 0.063 --method taylor --out runs/pruned",
     None, "."),
    ("deploykit distill --teacher cifar_resnet56:runs/teacher/student.pth --student runs/pruned/cifar_resnet56 --data digits "
     "--out runs/kd", ("--out runs/kd", "--out runs/kd --epochs 1"), "."),
    ("deploykit export cifar_resnet56 --weights runs/kd/student.pth --int8 --calib digits --holdout digits --val digits", None, "."),
    ("deploykit export cifar_resnet20 --prune 0.3 --distill-from cifar_resnet56:runs/teacher/student.pth --data digits --int8 "
     "--calib digits --holdout digits", ("--data digits", "--data digits --epochs 1"), "."),
]
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


def run_examples(examples, folder: Path, env: dict) -> None:
    written = readme_commands()
    for line, change, where in examples:
        assert line in written, f"the README no longer has: {line}"
        command = line.replace(*change) if change else line
        argv = shlex.split(command)
        argv = [sys.executable, "-m", "deploykit", *argv[1:]] if argv[0] == "deploykit" else [sys.executable, *argv[1:]]
        proc = subprocess.run(argv, cwd=folder / where, capture_output=True, text=True, env={**os.environ, **env}, timeout=600)
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, proc.stderr


def test_readme_pruning_and_distillation_examples(tmp_path):
    run_examples(PRUNE_AND_DISTILL, tmp_path, {})
    assert (tmp_path / "deploykit-out/cifar_resnet56/model.int8.onnx").is_file()
    assert (tmp_path / "deploykit-out/cifar_resnet20/model.int8.onnx").is_file()


@pytest.mark.xdist_group("mobilenet_int8")
def test_readme_model_and_file_examples(real_checkpoint, torch_home_with, tmp_path):
    (tmp_path / "mynets.py").write_text(MYNETS)
    examples = iter(MODELS_AND_FILES)
    env = {"TORCH_HOME": str(torch_home_with(real_checkpoint(MOBILENET)))}
    run_examples([next(examples) for _ in range(7)], tmp_path, env)
    (tmp_path / "foreign.onnx").write_bytes((tmp_path / "deploykit-out/mynets_build/model.onnx").read_bytes())
    run_examples(list(examples), tmp_path, env)
    assert (tmp_path / "deploykit-out/foreign/model.int8.onnx").is_file()
