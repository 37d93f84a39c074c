"""Labelled image folders (ImageNet layout: one subfolder per class)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploykit.data.images import evenly_spaced, find_images, load_images
from deploykit.data.preprocess import Preprocess
from deploykit.errors import DeployKitError


def load_labelled_folder(folder: str | Path, preprocess: Preprocess, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images, labels, class names). Classes are the sorted subfolder names, so label i is the i-th
    folder, as torchvision's ImageFolder numbers them; folders named by integers use those integers."""
    folder = Path(folder)
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if len(classes) < 2:
        raise DeployKitError(f"{folder} must hold one subfolder of images per class, at least 2 classes (ImageNet layout)")
    numeric = all(name.isdigit() for name in classes)
    if numeric and max(int(name) for name in classes) >= len(classes):
        raise DeployKitError(f"class folders named by number must be 0..{len(classes) - 1} for {len(classes)} classes, "
                             f"found {max(classes, key=int)}; renumber them or name them")
    paths, labels = [], []
    for index, name in enumerate(classes):
        for path in find_images(folder / name):
            paths.append(path)
            labels.append(int(name) if numeric else index)
    if limit:
        keep = evenly_spaced(range(len(paths)), limit)
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
    return load_images(paths, preprocess), np.asarray(labels), classes


SYNSET = re.compile(r"^n\d{8}$")
IMAGENET_CLASSES = Path(__file__).with_name("imagenet_classes.tsv")  # wnid and names, in class-index order


def imagenet_synsets() -> list[str]:
    """ImageNet-1k synset ids (``n01440764``...) in class-index order (package data, from imagenet-classes, MIT)."""
    return [line.split("\t", 1)[0] for line in IMAGENET_CLASSES.read_text().splitlines() if line]


@dataclass(frozen=True)
class ClassMapping:
    """Which class index each subfolder of a labelled folder holds, and how that was decided."""

    index: dict[str, int]
    rule: str  # "synsets", "integers" or "sorted"
    warning: str | None = None


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
    warning = None if len(folders) == num_classes else (
        f"{len(folders)} class folders but the model has {num_classes} classes: folders are numbered in sorted order, "
        "so labels only mean something if they are the model's first classes in its order")
    return ClassMapping({name: i for i, name in enumerate(sorted(folders))}, "sorted", warning)


class LabelledImages:
    """A labelled folder as a map-style dataset for torch's DataLoader: images are read and preprocessed on demand."""

    def __init__(self, folder: str | Path, preprocess: Preprocess, num_classes: int) -> None:
        folder = Path(folder)
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        if not classes:
            raise DeployKitError(f"{folder} must hold one subfolder of images per class (ImageNet layout)")
        self.mapping = class_mapping(classes, num_classes)
        self.samples = [(path, self.mapping.index[name]) for name in classes for path in find_images(folder / name)]
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        path, label = self.samples[index]
        return load_images([path], self.preprocess)[0], label
