"""Accuracy of logits against labels, the one top-k measure every training, check and benchmark uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class ImageSet:
    """The images a figure was measured on, as every command names them: how many, of how many, from where."""

    images: int
    source: str  # a folder, or "the bundled held-out photos"
    total: int  # images the source holds (more than ``images`` when a limit stopped early)

    def describe(self) -> str:
        taken = f"{self.images}" if self.images == self.total else f"{self.images} (spread over its {self.total})"
        return f"{taken} images of {self.source}"


@dataclass(frozen=True)
class LabelledLogits:
    """Each runner's logits over one image set, with the labels where the set has them."""

    logits: tuple[np.ndarray, ...]  # one per runner, in the order given
    labels: np.ndarray | None
    images: ImageSet
    class_rule: str | None = None


def stream_logits(runners: list, folder: Path | None, preprocess, num_classes: int, limit: int | None = None, batch_size: int = 32) -> LabelledLogits:
    """Every runner's logits over a labelled folder (``limit`` images spread over it, else all), streamed through a
    DataLoader so the images are never all in memory; without a folder, over the bundled held-out photos export's
    INT8 gate uses."""
    from deploykit.data import DEFAULT_HOLDOUT_DIR, LabelledImages, evenly_spaced
    from deploykit.data.calibration import HOLDOUT_LIMIT, load_samples
    from deploykit.parity import run_all

    if folder is None:  # read as the gate reads them
        images = load_samples(DEFAULT_HOLDOUT_DIR, preprocess, HOLDOUT_LIMIT, "held-out")
        return LabelledLogits(tuple(run_all(r, images) for r in runners), None, ImageSet(len(images), "the bundled held-out photos", len(images)))
    from deploykit.data.calibration import DIGITS

    if str(folder) == DIGITS:
        from deploykit.data import load_labelled_folder

        images, labels, mapping = load_labelled_folder(folder, preprocess, num_classes, limit)
        return LabelledLogits(tuple(run_all(r, images) for r in runners), labels, ImageSet(len(labels), "the digits' test split", len(labels)), mapping.describe())
    from torch.utils.data import Subset

    from deploykit.data.images import batches, loader
    from deploykit.progress import stage

    dataset = LabelledImages(folder, preprocess.transform, num_classes)
    indices = evenly_spaced(range(len(dataset)), limit)
    outputs: list[list[np.ndarray]] = [[] for _ in runners]
    labels = []
    with stage("running the labelled images", total=len(indices), unit="images") as advance:
        for chunk, chunk_labels in batches(loader(Subset(dataset, indices), batch_size)):
            for output, runner in zip(outputs, runners):
                output.append(run_all(runner, chunk.numpy()))
            labels.append(chunk_labels.numpy())
            advance(len(chunk_labels))
    return LabelledLogits(tuple(np.concatenate(o) for o in outputs), np.concatenate(labels), ImageSet(len(indices), str(folder), len(dataset)), dataset.mapping.describe())
