"""Knowledge distillation (Hinton et al., 2015) and plain training, single-process or DDP under torchrun.

Loss: alpha * T^2 * KL(student/T || teacher/T) + (1 - alpha) * cross-entropy(student, labels).
Without a teacher it is ordinary supervised training. Batches stream through a DataLoader, so the
dataset's size does not change memory. A checkpoint is written after every epoch (atomically, by
rank 0) and a rerun of the same command resumes from it on every rank. Under ``torchrun`` every
process trains on its DistributedSampler shard with DistributedDataParallel (gloo on CPU, nccl on
GPU, one GPU per process; set up in compress/distributed.py); ``amp`` trains in bf16/fp16 autocast, and CUDA runs
channels_last. Checkpoints are written and resumed by compress/training_state.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deploykit.bench.accuracy import topk_accuracy
from deploykit.choices import AMP_TYPES
from deploykit.compress.configs import DistillConfig
from deploykit.compress.distributed import init_distributed, memory_format, sync_buffers
from deploykit.compress.training_state import resume_state, save_checkpoint, save_student
from deploykit.data.images import batches, loader
from deploykit.data.training import TrainingData, array_dataset
from deploykit.errors import DeployKitError
from deploykit.progress import stage
from deploykit.io import atomic_write_json

CHECKPOINT = "last.pth"
STUDENT = "student.pth"


def distill(student: nn.Module, teacher: nn.Module | None, data: TrainingData, config: DistillConfig, out: Path,
            student_source: dict, resume: bool = True, on_epoch: Callable[[dict], None] | None = None,
            workers: int | None = None) -> dict:
    """Train ``student`` (towards ``teacher`` when given); returns the history written to ``out``.

    Batches stream from ``data`` through a DataLoader with ``workers`` processes; under torchrun a
    DistributedSampler gives every rank its own shard of each epoch. ``on_epoch`` is called on
    rank 0 with each epoch's record as the epoch ends.
    """
    from torch.utils.data import DistributedSampler

    if config.epochs < 1 or not 0 <= config.alpha <= 1 or config.temperature <= 0:
        raise DeployKitError("--epochs must be >= 1, --alpha in [0, 1] and --temperature > 0")
    if config.amp not in AMP_TYPES:
        raise DeployKitError(f"--amp must be one of {', '.join(AMP_TYPES)}, got {config.amp!r}")
    rank, world, device = init_distributed()
    if config.amp == "fp16" and device.type != "cuda":
        raise DeployKitError("--amp fp16 needs a CUDA GPU; on the CPU use --amp bf16")
    torch.manual_seed(config.seed)
    out = Path(out)
    student.to(device, memory_format=memory_format(device))
    optimizer = torch.optim.SGD(student.parameters(), lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)
    # Every rank gets an equal shard of one shared permutation per epoch, so all run the same number of steps.
    sampler = DistributedSampler(data.train, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    train_loader = loader(data.train, config.batch_size, workers, sampler=sampler, pin_memory=device.type == "cuda")
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.epochs * len(train_loader))
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
    checkpoint_path = out / CHECKPOINT
    state = resume_state(checkpoint_path, config, student_source, rank, world) if resume else None
    history: list[dict] = []
    start_epoch = 0
    if state is not None:
        student.load_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        scaler.load_state_dict(state["scaler"])
        history, start_epoch = state["history"], state["epoch"] + 1
    model = nn.parallel.DistributedDataParallel(student) if world > 1 else student
    if teacher is not None:
        teacher.to(device, memory_format=memory_format(device)).eval()
    for epoch in range(start_epoch, config.epochs):
        model.train()
        sampler.set_epoch(epoch)
        total, seen, started = 0.0, 0, time.perf_counter()
        with _stage(f"epoch {epoch + 1}/{config.epochs}", len(train_loader), rank) as advance:
            for inputs, labels in batches(train_loader):
                inputs = inputs.to(device, non_blocking=True, memory_format=memory_format(device))
                labels = labels.to(device, non_blocking=True)
                with _autocast(device, config.amp):
                    logits = model(inputs)
                    loss = _loss(logits.float(), labels, teacher, inputs, config)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
                total, seen = total + loss.item() * len(labels), seen + len(labels)
                advance(1, f"loss {total / seen:.4f}")
        if world > 1:
            sync_buffers(student)
        seconds = time.perf_counter() - started
        record = {"epoch": epoch + 1, "train_loss": total / max(seen, 1), "seconds": round(seconds, 2),
                  "images_per_second": round(seen * world / seconds, 1), "val_top1": validation_top1(student, data.val, workers=workers)}
        history.append(record)
        if on_epoch is not None and rank == 0:
            on_epoch(record)
        if rank == 0:
            save_checkpoint(checkpoint_path, student, optimizer, schedule, scaler, epoch, history, config, student_source)
    student.to("cpu", memory_format=torch.contiguous_format)
    if rank == 0:
        save_student(out / STUDENT, student, student_source)
        atomic_write_json(out / "history.json", {"config": asdict(config), "source": student_source, "world_size": world,
                                                 "teacher": teacher is not None, "history": history})
    digest = weights_digest(student)
    if world > 1:
        # One write per line, so the ranks' lines do not interleave on a shared unbuffered pipe.
        print(f"rank {rank}/{world} weights sha256 {digest}\n", end="", flush=True)
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return {"history": history, "weights_sha256": digest, "world_size": world}


def _loss(logits: torch.Tensor, labels: torch.Tensor, teacher: nn.Module | None, inputs: torch.Tensor, config: DistillConfig) -> torch.Tensor:
    hard = F.cross_entropy(logits, labels)
    if teacher is None or config.alpha == 0:
        return hard
    with torch.no_grad():
        teacher_logits = teacher(inputs).float()
    return config.alpha * soft_loss(logits, teacher_logits, config.temperature) + (1 - config.alpha) * hard


def soft_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's distillation term: T^2 * KL(teacher/T || student/T), batch mean."""
    t = temperature
    return t * t * F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                            reduction="batchmean", log_target=True)


def validation_top1(model: nn.Module, dataset, batch_size: int = 256, workers: int | None = None) -> float:
    """Top-1 accuracy of ``model`` in eval mode over a dataset of (image, label) (the model is left in eval mode)."""
    model.eval()
    device = next(model.parameters()).device
    logits, labels = [], []
    with torch.inference_mode():
        for images, targets in batches(loader(dataset, batch_size, workers)):
            logits.append(model(images.to(device, memory_format=memory_format(device))).float().cpu().numpy())
            labels.append(targets.numpy())
    return topk_accuracy(np.concatenate(logits), np.concatenate(labels), 1)


def train_classifier(model: nn.Module, images: np.ndarray, labels: np.ndarray, epochs: int = 3, lr: float = 0.05,
                     batch_size: int = 64, seed: int = 0) -> nn.Module:
    """Supervised training on in-memory arrays, returned in eval mode: ``distill`` without a teacher or files to keep."""
    data = TrainingData(array_dataset(images, labels), array_dataset(images[:batch_size], labels[:batch_size]), int(labels.max()) + 1)
    config = DistillConfig(epochs=epochs, alpha=0.0, lr=lr, batch_size=batch_size, seed=seed)
    with tempfile.TemporaryDirectory(prefix="deploykit-train-") as out:
        distill(model, None, data, config, Path(out), {"in_memory": True}, resume=False, workers=0)
    return model.eval()


def weights_digest(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _autocast(device: torch.device, amp: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp, torch.float32)
    return torch.autocast(device.type, dtype=dtype, enabled=amp != "off")


def _stage(description: str, steps: int, rank: int):
    """The progress of one epoch, shown by rank 0 alone."""
    return stage(description, total=steps, unit="batches") if rank == 0 else contextlib.nullcontext(lambda n=1, status=None: None)


