"""Labelled image folders (ImageNet layout: one subfolder per class)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deploykit.data.calibration import DIGITS
from deploykit.data.images import ImageFiles, evenly_spaced, find_images, load_images
from deploykit.data.preprocess import Preprocess
from deploykit.errors import DeployKitError


def load_labelled_folder(folder: str | Path, preprocess: Preprocess, num_classes: int, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, ClassMapping]:
    """(images, labels, class mapping) in memory, for small folders (``limit`` images spread over it). Subfolders map to
    the model's ``num_classes`` classes as ``eval`` maps them (class_mapping: ImageNet synsets, integers, or sorted);
    ``digits`` is the digits' test split with its own labels."""
    if str(folder) == DIGITS:
        from deploykit.data.digits import load_digits

        test = load_digits(size=preprocess.size)[1]
        keep = evenly_spaced(range(len(test.labels)), limit)
        return test.images[keep], test.labels[keep], ClassMapping({}, "digits")
    dataset = LabelledImages(folder, preprocess.transform, num_classes)
    keep = evenly_spaced(range(len(dataset)), limit)
    labels = dataset.labels[keep]
    images = load_images([Path(dataset.paths[i]) for i in keep], preprocess)
    return images, labels, dataset.mapping


DIGITS_CLASSES = "the digits' own labels 0-9"
SYNSET = re.compile(r"^n\d{8}$")
IMAGENET_CLASSES = Path(__file__).with_name("imagenet_classes.tsv")  # wnid and names, in class-index order


def imagenet_synsets() -> list[str]:
    """ImageNet-1k synset ids (``n01440764``...) in class-index order (package data, from imagenet-classes, MIT)."""
    return [line.split("\t", 1)[0] for line in IMAGENET_CLASSES.read_text().splitlines() if line]


@dataclass(frozen=True)
class ClassMapping:
    """Which class index each subfolder of a labelled folder holds, and how that was decided."""

    index: dict[str, int]
    rule: str  # "synsets", "integers", "sorted", or "digits" (the built-in dataset)
    warning: str | None = None

    def describe(self) -> str:
        """The rule in words, as every command that reads a labelled folder prints it."""
        return {
            "synsets": "classes by ImageNet synset (folder n01440764 is class 0)",
            "integers": "classes by folder number (folder 7 is class 7)",
            "sorted": "classes in sorted folder order (the first folder is class 0)",
            "digits": DIGITS_CLASSES,
        }[self.rule]


def class_mapping(folders: list[str], num_classes: int) -> ClassMapping:
    """ImageNet synset folders map through the ImageNet class list, integer folders to that index, others in sorted order."""
    if num_classes == 1000 and folders and all(SYNSET.match(name) for name in folders):
        synsets = {wnid: i for i, wnid in enumerate(imagenet_synsets())}
        unknown = [name for name in folders if name not in synsets]
        if unknown:
            raise DeployKitError(f"folders {', '.join(unknown[:5])} are not ImageNet-1k synsets; rename them or use class indices")
        return ClassMapping({name: synsets[name] for name in folders}, "synsets")
    if folders and all(name.isdigit() for name in folders):
        too_big = [name for name in folders if int(name) >= num_classes]
        if too_big:
            raise DeployKitError(f"class folders {', '.join(too_big[:5])} are beyond the model's {num_classes} classes")
        return ClassMapping({name: int(name) for name in folders}, "integers")
    warning = (
        None
        if len(folders) == num_classes
        else (
            f"{len(folders)} class folders but the model has {num_classes} classes: folders are numbered in sorted order, "
            "so labels only mean something if they are the model's first classes in its order"
        )
    )
    return ClassMapping({name: i for i, name in enumerate(sorted(folders))}, "sorted", warning)


class LabelledImages(ImageFiles):
    """A labelled folder (one subfolder per class) as a map-style dataset for torch's DataLoader, like torchvision's
    ImageFolder: images are read and transformed on demand. Without ``num_classes`` the folders define the classes."""

    def __init__(self, folder: str | Path, transform: Callable[[Image.Image], Any], num_classes: int | None = None) -> None:
        folder = Path(folder)
        if not folder.exists():
            raise DeployKitError(f"{folder} does not exist; give a folder of class subfolders of photos (ImageNet layout)")
        if not folder.is_dir():
            raise DeployKitError(f"{folder} is a file, not a folder; give a folder of class subfolders of photos (ImageNet layout)")
        self.classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if len(self.classes) < (1 if num_classes else 2):
            raise DeployKitError(f"{folder} must hold one subfolder of images per class, at least 2 classes (ImageNet layout)")
        numbers = [int(name) for name in self.classes if name.isdigit()]
        if num_classes is None and len(numbers) == len(self.classes) and max(numbers) >= len(numbers):
            raise DeployKitError(f"class folders named by number must be 0..{len(numbers) - 1} for {len(numbers)} classes, found {max(numbers)}; renumber them or name them")
        self.mapping = class_mapping(self.classes, num_classes or len(self.classes))
        found = [(path, self.mapping.index[name]) for name in self.classes for path in find_images(folder / name)]
        super().__init__([path for path, _ in found], transform)
        self.labels = np.array([label for _, label in found], dtype=np.int64)  # an array, as ImageFiles keeps paths

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return super().__getitem__(index), int(self.labels[index])
