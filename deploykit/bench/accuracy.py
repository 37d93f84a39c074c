"""Accuracy of logits against labels, the one top-k measure every training, check and benchmark uses."""

from __future__ import annotations

import numpy as np


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1)[:, :k]
    return float(np.mean([label in row for label, row in zip(labels, top)]))
