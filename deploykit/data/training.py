"""Training data as datasets that DataLoader streams: the digits, a labelled folder of any size, or unlabelled photos."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.data.calibration import ARRAY_SUFFIXES, load_samples
from deploykit.data.images import ImageFiles, evenly_spaced, find_images
from deploykit.data.labelled import DIGITS_CLASSES, LabelledImages
from deploykit.data.preprocess import Preprocess
from deploykit.errors import DeployKitError


MAX_ARRAY_SAMPLES = 100_000
VAL_FRACTION = 0.1
UNLABELLED = "unlabelled photos (label-free: the teacher's predictions are the targets)"


@dataclass(frozen=True)
class TrainingData:
    """Train and validation sets (map-style datasets of (image tensor, label); label -1 where there is none)."""

    train: Any
    val: Any
    num_classes: int
    class_rule: str = DIGITS_CLASSES  # how folders map to classes: ClassMapping.describe()
    classes: tuple[str, ...] = ()  # the folders' names, in class order, when they define the classes
    val_rule: str = "the digits' test split"  # which images validation holds, in words
    labelled: bool = True


def folder_classes(source: str) -> list[str]:
    """The class subfolders of a labelled folder, sorted; [] for ``digits``, a flat folder or arrays."""
    folder = Path(source)
    if source == "digits" or not folder.is_dir():
        return []
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return sorted(p.name for p in entries if p.is_dir()) if entries and all(p.is_dir() for p in entries) else []


def load_training_data(
    source: str, preprocess: Preprocess, num_classes: int | None = None, val_source: str | None = None, min_crop_scale: float = 0.08, limit: int | None = None
) -> TrainingData:
    """``digits`` (in memory: 1,797 tiny images), a labelled folder, or a flat folder of unlabelled photos, read on demand.

    Training images are augmented (random resized crop keeping at least ``min_crop_scale`` of the image, flip), validation
    images get the evaluation transform. Validation is ``val_source`` (a labelled folder) when given, else the last tenth
    of each class folder in file-name order (the same images on every run and in every command). Folders map to the
    ``num_classes`` classes of a model that has them as ``eval`` maps them; without it the folders define the classes.
    ``limit``: train on at most this many of the training images, spread evenly over them (so over every class)."""
    from torch.utils.data import Subset

    data = _load(source, preprocess, num_classes, val_source, min_crop_scale)
    if limit is None or limit >= len(data.train):
        return data
    return replace(data, train=Subset(data.train, evenly_spaced(range(len(data.train)), limit)))


def _load(source: str, preprocess: Preprocess, num_classes: int | None, val_source: str | None, min_crop_scale: float) -> TrainingData:
    from torch.utils.data import Subset

    if source == "digits":
        return _digits(preprocess.size)
    transform = preprocess.training_transform(min_crop_scale)
    if not folder_classes(source) and Path(source).is_dir() and not any(Path(source).glob("*.np[yz]")):
        return _unlabelled(source, preprocess, transform, val_source)
    train = LabelledImages(source, transform, num_classes)
    classes = tuple(train.classes) if num_classes is None else ()
    if val_source is not None:
        val = LabelledImages(val_source, preprocess.transform, num_classes or len(train.classes))
        if val.classes != train.classes:
            raise DeployKitError(
                f"--val {val_source} has classes {', '.join(val.classes[:5])}... but {source} has {', '.join(train.classes[:5])}...; give a held-out folder with the same class folders"
            )
        return TrainingData(train, val, num_classes or len(train.classes), train.mapping.describe(), classes, f"{len(val)} images of {val_source}")
    held_out = held_out_indices(train.labels)
    keep = np.setdiff1d(np.arange(len(train)), held_out)
    if len(keep) < 2:
        raise DeployKitError(f"{source} has too few images to train on ({len(train)})")
    val = copy.copy(train)
    val.transform = preprocess.transform
    return TrainingData(
        Subset(train, keep.tolist()),
        Subset(val, held_out.tolist()),
        num_classes or len(train.classes),
        train.mapping.describe(),
        classes,
        f"{len(held_out)} held-out images: the last tenth of each class folder",
    )


def held_out_indices(labels: np.ndarray, fraction: float = VAL_FRACTION) -> np.ndarray:
    """The last ``fraction`` of each class's images (at least one per class), in the dataset's (sorted) order."""
    held = [np.flatnonzero(labels == label)[-max(1, math.ceil(fraction * int((labels == label).sum()))) :] for label in np.unique(labels)]
    return np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)


def _unlabelled(source: str, preprocess: Preprocess, transform: Any, val_source: str | None) -> TrainingData:
    """A flat folder: photos with no label (-1), for distillation, whose targets are the teacher's predictions."""
    if val_source is not None:
        raise DeployKitError(
            f"{source} holds no class folders, so there are no labels to validate with --val; drop --val (the held-out photos are judged by agreement with the teacher)"
        )
    paths = find_images(source)
    count = max(1, math.ceil(VAL_FRACTION * len(paths)))
    if len(paths) - count < 2:
        raise DeployKitError(f"{source} has too few images to train on ({len(paths)})")
    return TrainingData(
        UnlabelledImages(paths[:-count], transform),
        UnlabelledImages(paths[-count:], preprocess.transform),
        0,
        UNLABELLED,
        val_rule=f"{count} held-out photos: the last tenth in file-name order",
        labelled=False,
    )


def array_dataset(images: np.ndarray, labels: np.ndarray) -> Any:
    """In-memory (N, 3, H, W) images and their labels as a dataset."""
    import torch
    from torch.utils.data import TensorDataset

    return TensorDataset(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)), torch.from_numpy(labels.astype(np.int64)))


def _digits(size: int) -> TrainingData:
    from deploykit.data.digits import NUM_CLASSES, load_digits

    train, test = load_digits(size=size, seed=0)
    return TrainingData(array_dataset(train.images, train.labels), array_dataset(test.images, test.labels), NUM_CLASSES)


def finetune_images(folder: str | Path, preprocess: Preprocess, num_classes: int) -> tuple[Any, bool]:
    """(dataset of (image, label), labelled): a folder of class subfolders gives its labels, a flat folder gives -1,
    ``digits`` the digits' training split, ``.npy/.npz`` arrays their samples unlabelled. Images are augmented as for
    training."""
    if str(folder) == "digits":
        if num_classes < 10:
            raise DeployKitError(f"the digits have 10 classes and the model {num_classes}: its labels would be out of range; give --data a folder of your own images")
        return _digits(preprocess.size).train, True
    folder = Path(folder)
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []  # .DS_Store and the like
    if folder.suffix in ARRAY_SUFFIXES or any(p.suffix in ARRAY_SUFFIXES for p in entries):
        samples = load_samples(folder, preprocess, MAX_ARRAY_SAMPLES, "QAT")  # preprocessed already: no augmentation
        return array_dataset(samples, np.full(len(samples), -1)), False
    if any(p.is_dir() for p in entries) and not any(p.is_file() for p in entries):
        labelled = LabelledImages(folder, preprocess.train_transform, num_classes)
        if labelled.mapping.warning:  # sorted folders that are not the model's classes: labels that mean nothing
            raise DeployKitError(
                f"{folder}: {labelled.mapping.warning}. QAT labels must name the model's classes (ImageNet "
                "synsets or class numbers); pass a flat folder of the images instead to fine-tune without labels"
            )
        return labelled, True
    return UnlabelledImages(find_images(folder), preprocess.train_transform), False


class UnlabelledImages(ImageFiles):
    """Image files with no label (-1): enough for distillation from a teacher."""

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return super().__getitem__(index), -1
