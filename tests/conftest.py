"""Shared fixtures: a small classifier trained on the real digits data, so accuracy checks mean something."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from deploykit.compress.train import fit_classifier
from deploykit.data.digits import load_digits
from deploykit.models import get_model

DIGITS_SIZE = 16


# name -> (builder kwargs, input size, epochs, learning rate): small enough to train in seconds on 2 cores
RECIPES = {
    "cifar_resnet20": ({}, 16, 4, 0.1),
    "mobilenet_v1": ({"width_mult": 0.5, "num_classes": 10}, 32, 4, 0.05),
    "googlenet": ({"aux_logits": False, "dropout": 0.0, "num_classes": 10}, 32, 4, 0.02),
}


@dataclass(frozen=True)
class TrainedDigits:
    name: str
    model_kwargs: dict
    size: int
    weights: Path
    calib: Path
    holdout: Path
    test_images: np.ndarray
    test_labels: np.ndarray
    fp32_accuracy: float


@pytest.fixture(scope="session")
def train_on_digits(tmp_path_factory):
    """A function name -> TrainedDigits: the model trained for a few epochs on the digits (cached per session)."""
    cache: dict[str, TrainedDigits] = {}

    def train(name: str) -> TrainedDigits:
        if name not in cache:
            kwargs, size, epochs, lr = RECIPES[name]
            folder = tmp_path_factory.mktemp(f"digits_{name}")
            train_split, test = load_digits(size=size)
            model = fit_classifier(get_model(name, seed=0, **kwargs), train_split.images, train_split.labels, epochs=epochs, lr=lr)
            with torch.no_grad():
                accuracy = float((model(torch.from_numpy(test.images)).argmax(1).numpy() == test.labels).mean())
            torch.save(model.state_dict(), folder / "weights.pth")
            np.save(folder / "calib.npy", train_split.images[:128])
            np.save(folder / "holdout.npy", test.images)
            cache[name] = TrainedDigits(name, kwargs, size, folder / "weights.pth", folder / "calib.npy", folder / "holdout.npy",
                                        test.images, test.labels, accuracy)
        return cache[name]

    return train


@pytest.fixture(scope="session")
def trained_digits(train_on_digits) -> TrainedDigits:
    """cifar_resnet20 trained on the digits at 16x16 (about 97% test accuracy)."""
    return train_on_digits("cifar_resnet20")
