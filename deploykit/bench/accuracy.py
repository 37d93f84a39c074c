"""Accuracy of logits against labels, the one top-k measure every training, check and benchmark uses."""

from __future__ import annotations

import numpy as np


def topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per image: is its label among the k highest logits. An image whose logits hold NaN or inf is a miss: a ranking
    of non-finite values is no prediction."""
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1)[:, :k]
    return (top == labels[:, None]).any(axis=1) & np.isfinite(logits).all(axis=1)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    return float(np.mean(topk_hits(logits, labels, k)))


def nonfinite_images(logits: np.ndarray) -> int:
    """How many images got NaN or inf among their logits."""
    return int((~np.isfinite(logits).all(axis=1)).sum())


def nonfinite_note(count: int, images: int) -> str:
    return f"{count} of {images} images gave NaN or inf logits: counted as wrong, so the model's top-1 is not to be trusted"
