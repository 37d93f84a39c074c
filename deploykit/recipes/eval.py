"""`deploykit eval`: top-1/top-5 of a model on any runner, streamed over a labelled image folder.

Images are decoded and preprocessed in DataLoader worker processes and never held all at once,
so a folder of any size (ImageNet's 50,000 validation images) runs in bounded memory.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from deploykit.bench.accuracy import nonfinite_images, nonfinite_note, topk_hits
from deploykit.data import LabelledImages, evenly_spaced, load_labelled_folder
from deploykit.data.calibration import DIGITS
from deploykit.data.images import batches, loader
from deploykit.data.training import array_dataset, held_out_indices
from deploykit.errors import DeployKitError
from deploykit.choices import MAX_WORKERS
from deploykit.parity import run_all
from deploykit.progress import stage
from deploykit.recipes.configs import EvalConfig
from deploykit.recipes.bench import make_runner
from deploykit.recipes.subject import resolve_subject, subject_preprocess
from deploykit.recipes.configs import BenchConfig
from deploykit.runtime.availability import require_backend


@dataclass
class EvalResult:
    model: str
    engine: str
    precision: str
    images: int
    top1: float
    top5: float
    class_rule: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate(reference: str, config: EvalConfig) -> EvalResult:
    """Stream ``config.data`` through the runner and count top-1/top-5 hits."""
    from torch.utils.data import Subset

    if not 0 <= config.workers <= MAX_WORKERS or config.batch_size < 1:
        raise DeployKitError(f"--workers must be 0..{MAX_WORKERS} and --batch-size at least 1")
    require_backend(config.engine)
    subject = resolve_subject(reference, allow_bare_onnx=True)
    notes: list[str] = []
    size = subject.input_size(config.input_size)
    preprocess = subject_preprocess(subject, size, config.mean, config.std)
    if subject.foreign_onnx:
        notes.append(f"{reference} has no manifest: preprocessing from options (input {size}, mean {config.mean}, std {config.std}; ImageNet defaults unless given)")
        num_classes = subject.num_outputs()
    else:
        num_classes = subject.ref.manifest.model.num_classes if subject.ref.manifest else subject.spec.num_classes
    if str(config.data) == DIGITS:  # the digits' test split, in memory, as bench --data digits reads it
        if config.held_out:
            raise DeployKitError("--held-out picks a tenth of each class folder, and digits is already its test split: drop it")
        images, labels, mapping = load_labelled_folder(DIGITS, preprocess, num_classes, config.limit)
        dataset, indices, class_rule, workers = array_dataset(images, labels), range(len(labels)), mapping.describe(), 0
    else:
        dataset = LabelledImages(config.data, preprocess.transform, num_classes)
        if dataset.mapping.warning:
            notes.append(dataset.mapping.warning)
        indices = evenly_spaced(held_out_indices(dataset.labels).tolist() if config.held_out else range(len(dataset)), config.limit)
        class_rule, workers = dataset.mapping.describe(), config.workers
    bench = BenchConfig(engine=config.engine, precision=config.precision, out=config.out, batches=(config.batch_size,), input_size=config.input_size)
    started = time.perf_counter()
    with make_runner(subject, bench, size, doing="evaluating") as runner:
        hits = count_hits(runner, Subset(dataset, indices), config.batch_size, workers)
    if hits.nonfinite:
        notes.append(nonfinite_note(hits.nonfinite, hits.images))
    return EvalResult(
        subject.ref.text, config.engine, config.precision, hits.images, hits.top1 / hits.images, hits.top5 / hits.images, class_rule, round(time.perf_counter() - started, 2), notes
    )


@dataclass(frozen=True)
class Hits:
    images: int
    top1: int
    top5: int
    nonfinite: int


def count_hits(runner, dataset, batch_size: int = 32, workers: int | None = 2) -> Hits:
    """Top-1 and top-5 hits of a loaded runner over a labelled dataset, streamed: what ``eval`` counts."""
    top1 = top5 = seen = nonfinite = 0
    for images, labels in _progress(loader(dataset, batch_size, workers), len(dataset)):
        logits = run_all(runner, images.numpy())
        labels = labels.numpy()
        top1 += int(topk_hits(logits, labels, 1).sum())
        top5 += int(topk_hits(logits, labels, 5).sum())
        nonfinite += nonfinite_images(logits)
        seen += len(labels)
    return Hits(seen, top1, top5, nonfinite)


def _progress(data, total: int):
    with stage("evaluating", total=total, unit="images") as advance:
        for images, labels in batches(data):
            yield images, labels
            advance(len(labels))
