"""Finding and loading image files: a flat folder or ImageNet-style class subfolders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from deploykit.data.preprocess import Preprocess
from deploykit.errors import DeployKitError

T = TypeVar("T")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# Package data (rebuilt by calibration/make_default_set.py), so an installed wheel has them too.
_SETS = Path(__file__).resolve().parent / "sets"
DEFAULT_CALIBRATION_DIR = _SETS / "calibration"
DEFAULT_HOLDOUT_DIR = _SETS / "holdout"


def evenly_spaced(items: Sequence[T], count: int | None) -> list[T]:
    """Up to ``count`` items spread evenly over ``items`` (first and last included); all of them for None."""
    if count is None or count >= len(items):
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, count)] if count > 0 else []


def find_images(folder: str | Path) -> list[Path]:
    """Every image file under ``folder`` (recursively), sorted; an error when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DeployKitError(f"image folder {folder} does not exist or is not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise DeployKitError(f"no images (.jpg, .png, ...) in {folder}; point to a folder of images, flat or in class subfolders")
    return paths


def load_images(paths: list[Path], preprocess: Preprocess) -> np.ndarray:
    """Load and preprocess images into one float32 (N, 3, H, W) batch."""
    arrays = []
    for path in paths:
        try:
            with Image.open(path) as image:
                arrays.append(preprocess(image))
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise DeployKitError(f"cannot read image {path}: {exc}; remove it or replace it with a valid image") from exc
    return np.stack(arrays)
