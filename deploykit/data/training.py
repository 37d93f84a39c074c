"""Training data as datasets that DataLoader streams: the digits, or a labelled folder of any size."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.data.calibration import ARRAY_SUFFIXES, load_samples
from deploykit.data.images import ImageFiles, find_images
from deploykit.data.labelled import DIGITS_CLASSES, LabelledImages
from deploykit.data.preprocess import Preprocess
from deploykit.errors import DeployKitError


MAX_ARRAY_SAMPLES = 100_000


@dataclass(frozen=True)
class TrainingData:
    """Train and validation sets (map-style datasets of (image tensor, label)) and the number of classes."""

    train: Any
    val: Any
    num_classes: int
    class_rule: str = DIGITS_CLASSES  # how folders map to classes: ClassMapping.describe()


def load_training_data(source: str, preprocess: Preprocess, val_fraction: float = 0.1, seed: int = 0,
                       num_classes: int | None = None) -> TrainingData:
    """``digits`` (the built-in real dataset at the model's input size, in memory: it is 1,797 tiny images) or a
    labelled folder, read on demand: training images augmented (random resized crop, flip), validation images
    with the evaluation transform, split by a fixed seed. Folders map to the ``num_classes`` classes of a model
    that has them (pretrained weights) as ``eval`` maps them; without it the folders define the classes."""
    from torch.utils.data import Subset

    if source == "digits":
        return _digits(preprocess.size, seed)
    train = LabelledImages(source, preprocess.train_transform, num_classes)
    order = np.random.default_rng(seed).permutation(len(train))
    val_count = max(1, int(len(order) * val_fraction))
    if len(order) - val_count < 2:
        raise DeployKitError(f"{source} has too few images to train on ({len(order)})")
    val = copy.copy(train)
    val.transform = preprocess.transform
    return TrainingData(Subset(train, order[val_count:].tolist()), Subset(val, order[:val_count].tolist()),
                        num_classes or len(train.classes), train.mapping.describe())


def array_dataset(images: np.ndarray, labels: np.ndarray) -> Any:
    """In-memory (N, 3, H, W) images and their labels as a dataset."""
    import torch
    from torch.utils.data import TensorDataset

    return TensorDataset(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)), torch.from_numpy(labels.astype(np.int64)))


def _digits(size: int, seed: int) -> TrainingData:
    from deploykit.data.digits import NUM_CLASSES, load_digits

    train, test = load_digits(size=size, seed=seed)
    return TrainingData(array_dataset(train.images, train.labels), array_dataset(test.images, test.labels), NUM_CLASSES)


def finetune_images(folder: str | Path, preprocess: Preprocess, num_classes: int) -> tuple[Any, bool]:
    """(dataset of (image, label), labelled): a folder of class subfolders gives its labels, a flat folder gives -1,
    ``digits`` the digits' training split, ``.npy/.npz`` arrays their samples unlabelled. Images are augmented as for
    training."""
    if str(folder) == "digits":
        if num_classes < 10:
            raise DeployKitError(f"the digits have 10 classes and the model {num_classes}: its labels would be out of range; "
                                 "give --data a folder of your own images")
        return _digits(preprocess.size, 0).train, True
    folder = Path(folder)
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []  # .DS_Store and the like
    if folder.suffix in ARRAY_SUFFIXES or any(p.suffix in ARRAY_SUFFIXES for p in entries):
        samples = load_samples(folder, preprocess, MAX_ARRAY_SAMPLES, "QAT")  # preprocessed already: no augmentation
        return array_dataset(samples, np.full(len(samples), -1)), False
    if any(p.is_dir() for p in entries) and not any(p.is_file() for p in entries):
        labelled = LabelledImages(folder, preprocess.train_transform, num_classes)
        if labelled.mapping.warning:  # sorted folders that are not the model's classes: labels that mean nothing
            raise DeployKitError(f"{folder}: {labelled.mapping.warning}. QAT labels must name the model's classes (ImageNet "
                                 "synsets or class numbers); pass a flat folder of the images instead to fine-tune without labels")
        return labelled, True
    return UnlabelledImages(find_images(folder), preprocess.train_transform), False


class UnlabelledImages(ImageFiles):
    """Image files with no label (-1): enough for distillation from a teacher."""

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return super().__getitem__(index), -1
