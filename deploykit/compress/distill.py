"""Knowledge distillation (Hinton et al., 2015) and plain training or fine-tuning, single-process or DDP under torchrun.

Loss: alpha * T^2 * KL(student/T || teacher/T) + (1 - alpha) * cross-entropy(student, labels), with label smoothing;
without a teacher it is ordinary supervised training, and on unlabelled photos the teacher's soft targets alone. The
rate warms up linearly and then follows a cosine to zero (``compress/schedule.py``); a new classifier trains at
``lr`` and the pretrained layers at ``lr * backbone_lr``. Batches stream through a DataLoader. Every epoch is
validated on held-out images, and the best epoch's weights are kept (``best.pth``) beside the last (``last.pth``);
an epoch that falls far below the best is marked as a collapse. ``checkpoint.pth`` (written atomically by rank 0
after every epoch) lets a rerun of the same command resume on every rank. Under ``torchrun`` every process trains on
its DistributedSampler shard with DistributedDataParallel (set up in compress/distributed.py); ``amp`` trains in
bf16/fp16 autocast, and CUDA runs channels_last.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deploykit.bench.accuracy import topk_accuracy
from deploykit.choices import AMP_TYPES
from deploykit.compress.configs import DistillConfig
from deploykit.compress.distributed import init_distributed, memory_format, sync_buffers
from deploykit.compress.schedule import estimate_seconds, optimizer_for, warmup_cosine
from deploykit.compress.training_state import resume_state, save_checkpoint, save_student
from deploykit.data.images import batches, loader
from deploykit.data.training import TrainingData, array_dataset
from deploykit.errors import DeployKitError
from deploykit.io import atomic_write_json
from deploykit.manifest import BEST_NAME, LAST_NAME
from deploykit.progress import report, stage

CHECKPOINT = "checkpoint.pth"  # everything a rerun resumes from
COLLAPSE_POINTS = 10.0  # an epoch this many points below the best one so far has collapsed


@dataclass(frozen=True)
class EpochRecord:
    """One epoch as it ended: its loss, time, the time the run still needs, and its validation top-1."""

    epoch: int
    train_loss: float
    seconds: float
    images_per_second: float
    val_top1: float  # top-1 on the held-out images; on unlabelled photos, agreement with the teacher's top-1
    seconds_left: float
    best: bool  # the best epoch so far (its weights are best.pth)
    collapsed: bool  # at least COLLAPSE_POINTS below the best epoch before it

    @classmethod
    def from_dict(cls, data: dict) -> EpochRecord:
        return cls(**data)


@dataclass(frozen=True)
class TrainingOutcome:
    history: tuple[EpochRecord, ...]
    weights_sha256: str  # of the final weights (every rank's agree)
    world_size: int
    estimate_seconds: float | None

    @property
    def best(self) -> EpochRecord:
        return best_epoch(self.history)


def best_epoch(history) -> EpochRecord:
    """The epoch whose weights are best.pth: the highest validation top-1, the earliest of equals."""
    return max(history, key=lambda r: (r.val_top1, -r.epoch))


def distill(
    student: nn.Module,
    teacher: nn.Module | None,
    data: TrainingData,
    config: DistillConfig,
    out: Path,
    student_source: dict,
    resume: bool = True,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    workers: int | None = None,
    head: nn.Module | None = None,
) -> TrainingOutcome:
    """Train ``student`` (towards ``teacher`` when given) and write best.pth, last.pth and history.json into ``out``.

    ``head``: a classifier layer the caller just replaced, which trains at the full rate while the rest of the
    (pretrained) model trains at ``config.backbone_lr`` times it. ``on_epoch`` is called on rank 0 as each epoch ends.
    """
    from torch.utils.data import DistributedSampler

    _check(config, teacher, data)
    rank, world, device = init_distributed()
    if config.amp == "fp16" and device.type != "cuda":
        raise DeployKitError("--amp fp16 needs a CUDA GPU; on the CPU use --amp bf16")
    torch.manual_seed(config.seed)
    out = Path(out)
    student.to(device, memory_format=memory_format(device))
    if teacher is not None:
        teacher.to(device, memory_format=memory_format(device)).eval()
    optimizer = optimizer_for(student, head, config)
    # Every rank gets an equal shard of one shared permutation per epoch, so all run the same number of steps.
    sampler = DistributedSampler(data.train, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    train_loader = loader(data.train, config.batch_size, workers, sampler=sampler, pin_memory=device.type == "cuda")
    schedule = warmup_cosine(optimizer, config.epochs * len(train_loader), round(config.warmup_epochs * len(train_loader)))
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
    state = resume_state(out / CHECKPOINT, config, student_source, rank, world) if resume else None
    history: list[EpochRecord] = []
    if state is not None:
        state.restore(student, optimizer, schedule, scaler)
        history = [EpochRecord.from_dict(r) for r in state.history]
    val_targets = None if data.labelled else predictions(teacher, data.val, workers)
    estimate = None
    if len(history) < config.epochs:
        size = data.val[0][0].shape  # the images' shape, read from a validation image
        estimate = estimate_seconds(
            lambda model, inputs, labels: _loss(model(inputs).float(), labels, teacher, inputs, config, data.labelled),
            student,
            (config.batch_size, *size),
            data.num_classes if data.labelled else 0,
            len(train_loader),
            len(data.val),
            config.epochs - len(history),
            device,
        )
        if rank == 0:
            report(
                f"estimated time: {_duration(estimate)} for {config.epochs - len(history)} epoch(s) of {len(train_loader)} batches of {config.batch_size} (measured on a few steps here)"
            )
    model = nn.parallel.DistributedDataParallel(student) if world > 1 else student
    for epoch in range(len(history), config.epochs):
        model.train()
        sampler.set_epoch(epoch)
        total, seen, started = 0.0, 0, time.perf_counter()
        with _stage(f"epoch {epoch + 1}/{config.epochs}", len(train_loader), rank) as advance:
            for inputs, labels in batches(train_loader):
                inputs = inputs.to(device, non_blocking=True, memory_format=memory_format(device))
                labels = labels.to(device, non_blocking=True)
                with _autocast(device, config.amp):
                    loss = _loss(model(inputs).float(), labels, teacher, inputs, config, data.labelled)
                if not torch.isfinite(loss):
                    raise DeployKitError(f"the training loss became {loss.item()} in epoch {epoch + 1}: lower --lr (now {config.lr}) or check the images")
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
        top1 = validation_top1(student, data.val, workers=workers, labels=val_targets)
        spent = sum(r.seconds for r in history) + seconds
        record = EpochRecord(
            epoch + 1,
            round(total / max(seen, 1), 5),
            round(seconds, 2),
            round(seen * world / seconds, 1),
            top1,
            round(spent / (epoch + 1) * (config.epochs - epoch - 1), 1),
            *epoch_verdict(history, top1),
        )
        history.append(record)
        if on_epoch is not None and rank == 0:  # reported before its checkpoint is written
            on_epoch(record)
        if rank == 0:
            if record.best:
                save_student(out / BEST_NAME, student, student_source)
            save_checkpoint(out / CHECKPOINT, student, optimizer, schedule, scaler, epoch, [asdict(r) for r in history], config, student_source)
    student.to("cpu", memory_format=torch.contiguous_format)
    if rank == 0:
        save_student(out / LAST_NAME, student, student_source)
        atomic_write_json(
            out / "history.json", {"config": asdict(config), "source": student_source, "world_size": world, "teacher": teacher is not None, "history": [asdict(r) for r in history]}
        )
    digest = weights_digest(student)
    if world > 1:
        # One write per line, so the ranks' lines do not interleave on a shared unbuffered pipe.
        print(f"rank {rank}/{world} weights sha256 {digest}\n", end="", flush=True)
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return TrainingOutcome(tuple(history), digest, world, estimate)


def epoch_verdict(history: list[EpochRecord], top1: float) -> tuple[bool, bool]:
    """(the best epoch so far, a collapse: at least COLLAPSE_POINTS below the best epoch before it)."""
    best_before = max((r.val_top1 for r in history), default=None)
    if best_before is None:
        return True, False
    return top1 > best_before, 100 * (best_before - top1) >= COLLAPSE_POINTS


def _check(config: DistillConfig, teacher: nn.Module | None, data: TrainingData) -> None:
    if config.epochs < 1 or not 0 <= config.alpha <= 1 or config.temperature <= 0:
        raise DeployKitError("--epochs must be >= 1, --alpha in [0, 1] and --temperature > 0")
    if not 0 <= config.warmup_epochs < config.epochs:
        raise DeployKitError(f"--warmup-epochs must be at least 0 and below --epochs ({config.epochs}), got {config.warmup_epochs}")
    if not 0 <= config.label_smoothing < 1 or not 0 < config.backbone_lr <= 1 or not 0 < config.min_crop_scale <= 1:
        raise DeployKitError("--label-smoothing must be in [0, 1), --backbone-lr and --min-crop-scale in (0, 1]")
    if config.amp not in AMP_TYPES:
        raise DeployKitError(f"--amp must be one of {', '.join(AMP_TYPES)}, got {config.amp!r}")
    if not data.labelled and teacher is None:
        raise DeployKitError("photos with no labels have nothing to train on without a teacher")


def _loss(logits: torch.Tensor, labels: torch.Tensor, teacher: nn.Module | None, inputs: torch.Tensor, config: DistillConfig, labelled: bool) -> torch.Tensor:
    if teacher is None or config.alpha == 0:
        return F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
    with torch.no_grad():
        teacher_logits = teacher(inputs).float()
    soft = soft_loss(logits, teacher_logits, config.temperature)
    if not labelled:  # label-free distillation: the teacher's soft targets are all there is
        return soft
    return config.alpha * soft + (1 - config.alpha) * F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)


def soft_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's distillation term: T^2 * KL(teacher/T || student/T), batch mean."""
    t = temperature
    return t * t * F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1), reduction="batchmean", log_target=True)


def _logits_and_labels(model: nn.Module, dataset, batch_size: int, workers: int | None) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    device = next(model.parameters()).device
    logits, labels = [], []
    with torch.inference_mode():
        for images, targets in batches(loader(dataset, batch_size, workers)):
            logits.append(model(images.to(device, memory_format=memory_format(device))).float().cpu().numpy())
            labels.append(targets.numpy())
    return np.concatenate(logits), np.concatenate(labels)


def validation_top1(model: nn.Module, dataset, batch_size: int = 256, workers: int | None = None, labels: np.ndarray | None = None) -> float:
    """Top-1 accuracy of ``model`` in eval mode over a dataset of (image, label), or against ``labels`` (the model is
    left in eval mode)."""
    logits, own = _logits_and_labels(model, dataset, batch_size, workers)
    return topk_accuracy(logits, own if labels is None else labels, 1)


def predictions(model: nn.Module | None, dataset, workers: int | None = None) -> np.ndarray | None:
    """The model's top-1 class for each image of ``dataset`` (the targets label-free validation agrees with)."""
    return None if model is None else _logits_and_labels(model, dataset, 256, workers)[0].argmax(axis=1)


def train_classifier(model: nn.Module, images: np.ndarray, labels: np.ndarray, epochs: int = 3, lr: float = 0.05, batch_size: int = 64, seed: int = 0) -> nn.Module:
    """Supervised training on in-memory arrays, returned in eval mode: ``distill`` without a teacher or files to keep."""
    data = TrainingData(array_dataset(images, labels), array_dataset(images[:batch_size], labels[:batch_size]), int(labels.max()) + 1)
    config = DistillConfig(epochs=epochs, alpha=0.0, lr=lr, batch_size=batch_size, seed=seed, warmup_epochs=0.0, label_smoothing=0.0)
    with tempfile.TemporaryDirectory(prefix="deploykit-train-") as out:
        distill(model, None, data, config, Path(out), {"in_memory": True}, resume=False, workers=0)
    return model.eval()


def weights_digest(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _autocast(device: torch.device, amp: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp, torch.float32)
    return torch.autocast(device.type, dtype=dtype, enabled=amp != "off")


def _stage(description: str, steps: int, rank: int):
    """The progress of one epoch, shown by rank 0 alone."""
    return stage(description, total=steps, unit="batches") if rank == 0 else contextlib.nullcontext(lambda n=1, status=None: None)
