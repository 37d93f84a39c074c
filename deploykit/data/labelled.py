"""Labelled image folders (ImageNet layout: one subfolder per class)."""

from __future__ import annotations

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
    paths, labels = [], []
    for index, name in enumerate(classes):
        for path in find_images(folder / name):
            paths.append(path)
            labels.append(int(name) if numeric else index)
    if limit:
        keep = evenly_spaced(range(len(paths)), limit)
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
    return load_images(paths, preprocess), np.asarray(labels), classes
