"""Knowledge distillation (Hinton et al., 2015) and plain training, single-process or DDP under torchrun.

Loss: alpha * T^2 * KL(student/T || teacher/T) + (1 - alpha) * cross-entropy(student, labels).
Without a teacher it is ordinary supervised training. A checkpoint is written after every epoch
(atomically, by rank 0) and a rerun of the same command resumes from it. Under ``torchrun`` every
process trains on its shard with DistributedDataParallel (gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deploykit.bench.accuracy import topk_accuracy
from deploykit.data import load_labelled_folder
from deploykit.errors import DeployKitError, first_line
from deploykit.models.pruned import pruned_state
from deploykit.progress import stage
from deploykit.io import atomic_write_bytes, atomic_write_json

CHECKPOINT = "last.pth"
STUDENT = "student.pth"


@dataclass(frozen=True)
class DistillConfig:
    epochs: int = 10
    temperature: float = 4.0
    alpha: float = 0.9
    lr: float = 0.05
    batch_size: int = 64
    weight_decay: float = 5e-4
    seed: int = 0


@dataclass
class Dataset:
    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    num_classes: int


def load_dataset(source: str, preprocess, val_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """``digits`` (the built-in real dataset at the model's input size) or a folder of class subfolders,
    split into train and validation (``val_fraction``, stratified by a fixed seed)."""
    from deploykit.data.digits import NUM_CLASSES, load_digits

    if source == "digits":
        train, test = load_digits(size=preprocess.size, seed=seed)
        return Dataset(train.images, train.labels, test.images, test.labels, NUM_CLASSES)
    images, labels, classes = load_labelled_folder(source, preprocess)
    order = np.random.default_rng(seed).permutation(len(labels))
    val = order[: max(1, int(len(order) * val_fraction))]
    train = order[len(val):]
    if len(train) < 2:
        raise DeployKitError(f"{source} has too few images to train on ({len(labels)})")
    return Dataset(images[train], labels[train], images[val], labels[val], len(classes))


def distill(student: nn.Module, teacher: nn.Module | None, data: Dataset, config: DistillConfig, out: Path,
            student_source: dict, resume: bool = True, on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train ``student`` (towards ``teacher`` when given); returns the history written to ``out``.

    ``on_epoch`` is called on rank 0 with each epoch's record as the epoch ends.
    """
    if config.epochs < 1 or not 0 <= config.alpha <= 1 or config.temperature <= 0:
        raise DeployKitError("--epochs must be >= 1, --alpha in [0, 1] and --temperature > 0")
    rank, world = _init_distributed()
    torch.manual_seed(config.seed)
    out = Path(out)
    optimizer = torch.optim.SGD(student.parameters(), lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(data.train_images) // (config.batch_size * world))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch)
    history: list[dict] = []
    start_epoch = 0
    checkpoint_path = out / CHECKPOINT
    if resume and checkpoint_path.is_file():
        try:
            state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
            same_run = state["config"] == asdict(config) and state["source"] == student_source
        except Exception as exc:  # truncated by a kill or a full disk: torch raises many types
            raise DeployKitError(f"{checkpoint_path} is damaged ({first_line(exc)}); use --no-resume to start over") from exc
        if not same_run:
            raise DeployKitError(f"{checkpoint_path} was written by a different run (other options or student); "
                                 "use another --out, or --no-resume to start over")
        student.load_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history, start_epoch = state["history"], state["epoch"] + 1
    model = nn.parallel.DistributedDataParallel(student) if world > 1 else student
    if teacher is not None:
        teacher.eval()
    x, y = torch.from_numpy(data.train_images), torch.from_numpy(data.train_labels)
    for epoch in range(start_epoch, config.epochs):
        model.train()
        # Every rank takes an equal shard of one shared permutation, so all run the same number of steps.
        permutation = torch.randperm(len(x), generator=torch.Generator().manual_seed(config.seed + epoch))
        order = permutation[: len(x) - len(x) % world][rank::world]
        total, seen = 0.0, 0
        for begin in _progress(range(0, len(order), config.batch_size), f"epoch {epoch + 1}/{config.epochs}", rank):
            batch = order[begin : begin + config.batch_size]
            logits = model(x[batch])
            loss = _loss(logits, y[batch], teacher, x[batch], config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total, seen = total + loss.item() * len(batch), seen + len(batch)
        if world > 1:
            _sync_buffers(student)
        record = {"epoch": epoch + 1, "train_loss": total / max(seen, 1), "val_top1": evaluate(student, data.val_images, data.val_labels)}
        history.append(record)
        if on_epoch is not None and rank == 0:
            on_epoch(record)
        if rank == 0:
            _save_checkpoint(checkpoint_path, student, optimizer, schedule, epoch, history, config, student_source)
    if rank == 0:
        final = pruned_state(student, student_source) if student_source.get("pruned") else student.state_dict()
        buffer = io.BytesIO()
        torch.save(final, buffer)
        atomic_write_bytes(out / STUDENT, buffer.getvalue())
        atomic_write_json(out / "history.json", {"config": asdict(config), "source": student_source, "world_size": world,
                                                 "teacher": teacher is not None, "history": history})
    digest = weights_digest(student)
    if world > 1:
        print(f"rank {rank}/{world} weights sha256 {digest}", flush=True)
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return {"history": history, "weights_sha256": digest, "world_size": world}


def _loss(logits: torch.Tensor, labels: torch.Tensor, teacher: nn.Module | None, inputs: torch.Tensor, config: DistillConfig) -> torch.Tensor:
    hard = F.cross_entropy(logits, labels)
    if teacher is None or config.alpha == 0:
        return hard
    with torch.no_grad():
        teacher_logits = teacher(inputs)
    t = config.temperature
    soft = F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1), reduction="batchmean", log_target=True)
    return config.alpha * t * t * soft + (1 - config.alpha) * hard


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` in eval mode (the model is left in eval mode)."""
    model.eval()
    with torch.inference_mode():
        logits = [model(torch.from_numpy(images[begin : begin + batch_size])).numpy() for begin in range(0, len(images), batch_size)]
    return topk_accuracy(np.concatenate(logits), labels, 1)


def train_classifier(model: nn.Module, images: np.ndarray, labels: np.ndarray, epochs: int = 3, lr: float = 0.05,
                     batch_size: int = 64, seed: int = 0) -> nn.Module:
    """Supervised training on in-memory arrays, returned in eval mode: ``distill`` without a teacher or files to keep."""
    data = Dataset(images, labels, images[:batch_size], labels[:batch_size], int(labels.max()) + 1)
    config = DistillConfig(epochs=epochs, alpha=0.0, lr=lr, batch_size=batch_size, seed=seed)
    with tempfile.TemporaryDirectory(prefix="deploykit-train-") as out:
        distill(model, None, data, config, Path(out), {"in_memory": True}, resume=False)
    return model.eval()


def weights_digest(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _sync_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's BatchNorm statistics: DDP syncs gradients, but each rank's last
    forward pass updated its running statistics on its own shard."""
    for buffer in model.buffers():
        torch.distributed.broadcast(buffer, src=0)


def _save_checkpoint(path: Path, student, optimizer, schedule, epoch: int, history: list, config: DistillConfig, source: dict) -> None:
    buffer = io.BytesIO()
    torch.save({"student": student.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "epoch": epoch, "history": history, "config": asdict(config), "source": source}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _init_distributed() -> tuple[int, int]:
    """(rank, world size): from torchrun's environment, initialising the process group; (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return torch.distributed.get_rank(), world


def _progress(iterable, description: str, rank: int):
    if rank != 0:
        yield from iterable
        return
    items = list(iterable)
    with stage(description, total=len(items)) as advance:
        for item in items:
            yield item
            advance(1)
