"""DDP with two real processes on gloo, fed by DataLoader workers through a DistributedSampler."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.xdist_group("digits-train")
SCRIPT = Path(__file__).with_name("ddp_shards.py")


def _torchrun(folder: Path, out: Path, epochs: int) -> list[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT), str(folder), str(out), str(epochs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = sorted(line for line in proc.stdout.splitlines() if "weights sha256" in line)
    assert len(digests) == 2
    return [line.split()[-1] for line in digests]


def _seen(out: Path) -> dict[str, list[set[int]]]:
    """Per rank, the indices each epoch's DataLoader worker read (one worker, so one log file, per epoch), in order."""
    ranks: dict[str, list[set[int]]] = {}
    for log in sorted((out / "seen").glob("rank*-pid*.txt"), key=lambda path: path.stat().st_mtime_ns):
        indices = [int(line) for line in log.read_text().split()]
        assert len(indices) == len(set(indices)) == 30  # half of the 60 training images, none twice
        ranks.setdefault(log.name.split("-")[0], []).append(set(indices))
    return ranks


def test_two_ranks_see_disjoint_halves_end_identical_and_resume_together(tmp_path):
    folder = tmp_path / "data"
    rng = np.random.default_rng(0)
    for label in range(2):
        (folder / f"class{label}").mkdir(parents=True)
        for i in range(34):  # 68 images: the last 4 of each class held out, 60 to train on, 30 per rank
            pixels = rng.integers(0, 128, (20, 20, 3), dtype=np.uint8) + np.uint8(120 * label)
            Image.fromarray(pixels).save(folder / f"class{label}" / f"{i}.png")
    out = tmp_path / "run"
    first = _torchrun(folder, out, epochs=2)
    assert first[0] == first[1], "the ranks ended with different weights"
    seen = _seen(out)
    assert set(seen) == {"rank0", "rank1"} and len(seen["rank0"]) == len(seen["rank1"]) == 2
    for rank0, rank1 in zip(seen["rank0"], seen["rank1"]):  # each epoch: two disjoint halves of the whole set
        assert not rank0 & rank1 and rank0 | rank1 == set(range(60))
    assert seen["rank0"][0] != seen["rank0"][1]  # set_epoch reshuffles the shards every epoch
    # Rerunning the finished job: rank 0 reads checkpoint.pth and sends it to rank 1, so both end where the first run did.
    (out / "seen").rename(out / "seen-first")
    assert _torchrun(folder, out, epochs=2) == first
    assert not _seen(out)  # nothing was trained again


def test_mixed_precision_training_on_the_cpu(tmp_path):
    """--amp bf16 trains on the CPU (autocast); fp16 needs CUDA and says so in one line."""
    from tests.cli import invoke

    args = ["train", "cifar_resnet20", "--data", "digits", "--epochs", "2", "--lr", "0.1", "--input-size", "16", "--workers", "0"]
    result = invoke(*args, "--amp", "bf16", "--out", tmp_path / "bf16")
    assert result.exit_code == 0, result.output
    import json

    history = json.loads((tmp_path / "bf16" / "history.json").read_text())
    assert history["config"]["amp"] == "bf16" and np.isfinite(history["history"][0]["train_loss"])
    assert history["history"][-1]["val_top1"] > 0.5  # it learnt in bf16
    import torch

    if not torch.cuda.is_available():
        result = invoke(*args, "--amp", "fp16", "--out", tmp_path / "fp16")
        assert result.exit_code == 2 and "--amp fp16 needs a CUDA GPU" in result.output
