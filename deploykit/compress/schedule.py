"""The fine-tuning recipe's pieces: parameter groups at their rates, the warm-up + cosine schedule, and the time a run
will take, measured on a few steps before it starts."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import torch
from torch import nn

from deploykit.compress.configs import DistillConfig

ESTIMATE_STEPS = 3  # timed after one untimed step (the first pays for allocations)


def optimizer_for(model: nn.Module, head: nn.Module | None, config: DistillConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum; a new ``head`` at ``lr``, every other (pretrained) parameter at ``lr * backbone_lr``.
    Without a new head every parameter trains at ``lr``. Norms and biases get no weight decay."""
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    groups: dict[tuple[bool, bool], list] = {}
    for parameter in model.parameters():
        if parameter.requires_grad:
            groups.setdefault((id(parameter) in head_ids or head is None, parameter.ndim <= 1), []).append(parameter)
    return torch.optim.SGD(
        [
            {"params": params, "lr": config.lr * (1.0 if full_rate else config.backbone_lr), "weight_decay": 0.0 if no_decay else config.weight_decay}
            for (full_rate, no_decay), params in sorted(groups.items())
        ],
        lr=config.lr,
        momentum=0.9,
        nesterov=True,
    )


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Each group's rate rises linearly over ``warmup_steps``, then falls along a cosine to zero at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def estimate_seconds(
    loss_of: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    model: nn.Module,
    batch_shape: tuple[int, ...],
    num_classes: int,
    steps_per_epoch: int,
    val_images: int,
    epochs: int,
    device: torch.device,
) -> float:
    """Seconds ``epochs`` epochs will take here: a few training steps of a copy of ``model`` on batches of this shape
    (the model and the data are untouched), times the steps to come, plus validation at about a third of a training
    step's cost per image. Reading the images is left out: DataLoader's workers read them while the model trains."""
    trial = copy.deepcopy(model).train()
    optimizer = torch.optim.SGD(trial.parameters(), lr=0.0)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch_shape, generator=generator).to(device)
    labels = (torch.randint(0, num_classes, (batch_shape[0],), generator=generator) if num_classes else torch.full((batch_shape[0],), -1)).to(device)
    times = []
    for _ in range(ESTIMATE_STEPS + 1):
        started = time.perf_counter()
        loss = loss_of(trial, inputs, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    del trial
    step_seconds = sorted(times[1:])[len(times[1:]) // 2]
    return epochs * step_seconds * (steps_per_epoch + val_images / batch_shape[0] / 3)
