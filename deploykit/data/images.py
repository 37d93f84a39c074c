"""Finding and loading image files: a flat folder or ImageNet-style class subfolders.

Images are read in DataLoader worker processes, one file at a time, never all at once.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from deploykit.choices import MAX_WORKERS
from deploykit.data.preprocess import Preprocess
from deploykit.errors import DeployKitError
from deploykit.progress import report

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
    # os.walk, not rglob: a folder that vanishes during the walk (another process's temporary files) is skipped
    # instead of ending the walk with FileNotFoundError
    paths = sorted(p for root, _, names in os.walk(folder) for p in (Path(root) / name for name in names) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise DeployKitError(f"no images (.jpg, .png, ...) in {folder}; point to a folder of images, flat or in class subfolders")
    return paths


def read_image(path: Path, transform: Callable[[Image.Image], Any]) -> Any:
    """One image file through ``transform``; a one-line error for a file that is no image."""
    try:
        with Image.open(path) as image:
            return transform(image)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise DeployKitError(f"cannot read image {path}: {exc}; remove it or replace it with a valid image") from exc


class ImageFiles:
    """Image files as a map-style dataset for torch's DataLoader: each is read and transformed on demand."""

    def __init__(self, paths: Sequence[Path], transform: Callable[[Image.Image], Any]) -> None:
        # A numpy array, not a list of Path objects: a worker reading a list touches every item's reference count
        # and so copies the pages it sits on, which makes memory grow with the dataset (pytorch/pytorch#13246).
        self.paths = np.array([str(path) for path in paths])
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Any:
        return read_image(Path(self.paths[index]), self.transform)


_WARNED_WORKERS: set[int] = set()


def default_workers(count: int) -> int:
    """DataLoader worker processes for ``count`` images: none for a handful, else up to 4 (and the cores there are)."""
    return 0 if count < 32 else min(4, os.cpu_count() or 1)


def loader(dataset: Any, batch_size: int, workers: int | None = None, **options: Any) -> Any:
    """A DataLoader over ``dataset`` with worker processes (bounded by MAX_WORKERS; by default none for tensors
    already in memory, which have nothing to decode)."""
    from torch.utils.data import DataLoader, TensorDataset

    if workers is None:
        workers = 0 if isinstance(dataset, TensorDataset) else default_workers(len(dataset))
    if not 0 <= workers <= MAX_WORKERS:
        raise DeployKitError(f"--workers must be 0..{MAX_WORKERS}, got {workers}")
    cores = len(os.sched_getaffinity(0))
    if workers > cores:  # said once, in deploykit's words, instead of PyTorch's warning at every loader and iteration
        warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
        if workers not in _WARNED_WORKERS:
            _WARNED_WORKERS.add(workers)
            report(f"note: {workers} DataLoader workers on {cores} cores compete for them; --workers {cores} decodes as fast")
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, worker_init_fn=_freeze_inherited_objects, **options)


def _freeze_inherited_objects(worker_id: int) -> None:
    """Keep a forked worker's garbage collector off the objects it inherited: a collection touches each object's
    header, copying the parent's pages into the worker, so its memory would grow the longer the epoch runs."""
    import gc

    gc.freeze()


def batches(data_loader: Iterable) -> Iterator:
    """Iterate a DataLoader; an error raised in a worker comes out as the worker's own one-line message."""
    try:
        yield from data_loader
    except DeployKitError as exc:
        raise DeployKitError(worker_message(str(exc))) from None


def worker_message(text: str) -> str:
    """The user's message inside DataLoader's "Caught X in DataLoader worker process N ... traceback" wrapping."""
    if not text.startswith("Caught "):
        return text
    last = text.strip().splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last


def load_images(paths: Sequence[Path], preprocess: Preprocess, workers: int | None = None) -> np.ndarray:
    """Load and preprocess images into one float32 (N, 3, H, W) batch."""
    if not paths:
        return np.zeros((0, 3, preprocess.size, preprocess.size), np.float32)
    chunks = [batch.numpy() for batch in batches(loader(ImageFiles(paths, preprocess.transform), 32, workers))]
    return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)
