"""A real labelled dataset that works offline: scikit-learn's bundled handwritten digits (UCI).

1,797 grayscale 8x8 digits, upsampled to RGB (bilinear) at the CIFAR ResNets' 32x32 and normalised
with their mean/std, split 75/25 (stratified, fixed seed) into train and test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from deploykit.errors import DeployKitError
from deploykit.models.cifar_resnet import CIFAR_MEAN, CIFAR_STD

NUM_CLASSES = 10


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # float32 (N, 3, size, size), normalised
    labels: np.ndarray  # int64 (N,)


def load_digits(size: int = 32, seed: int = 0) -> tuple[Split, Split]:
    """(train, test) splits of the digits, as model-ready arrays."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise DeployKitError("the digits dataset comes with scikit-learn: pip install scikit-learn") from exc
    digits = sklearn_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    images = ((images - mean) / std).numpy()
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(images, labels, test_size=0.25, random_state=seed, stratify=labels)
    return Split(np.ascontiguousarray(x_train), y_train), Split(np.ascontiguousarray(x_test), y_test)
