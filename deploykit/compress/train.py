"""A plain supervised training loop (SGD with momentum, cosine schedule), seeded and CPU-friendly."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def fit_classifier(model: nn.Module, images: np.ndarray, labels: np.ndarray, epochs: int = 3, lr: float = 0.05,
                   batch_size: int = 64, weight_decay: float = 5e-4, seed: int = 0) -> nn.Module:
    """Train ``model`` on (images, labels) in place with cross-entropy and return it in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    steps = epochs * -(-len(x) // batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of (N, classes) logits."""
    return float((logits.argmax(axis=1) == labels).mean())
