"""``deploykit prune``: prune, export the pruned model with parity, and judge it against the unpruned model where it will
run: top-1 on labelled photos (or top-1 agreement on unlabelled ones), both ONNX files on onnxruntime exactly as
``eval`` runs them, and latency on onnxruntime and OpenVINO at batch 1 and a larger batch, in interleaved rounds.
Parity of the pruned model with its own ONNX file proves the export, not the pruning.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from deploykit.bench.accuracy import topk_hits
from deploykit.bench.runtimes import time_runtimes_apart
from deploykit.compress.configs import PruneConfig
from deploykit.compress.prune import prune_model, check_request
from deploykit.data import DEFAULT_HOLDOUT_DIR, LabelledImages
from deploykit.data.images import batches, find_images, loader
from deploykit.data.training import UnlabelledImages, folder_classes, held_out_indices
from deploykit.errors import DeployKitError
from deploykit.io import atomic_save_torch, ensure_writable_dir
from deploykit.manifest import ONNX_NAME, PRUNED_NAME, ExportFolder
from deploykit.models.layers import classifier_outputs
from deploykit.models.pruned import pruned_state
from deploykit.parity import run_all
from deploykit.progress import stage
from deploykit.recipes.configs import ExportConfig, PruneCheck
from deploykit.recipes.export import ExportResult, export
from deploykit.recipes.ref import ModelRef, parse_model_ref
from deploykit.runtime import CPU_RUNTIMES, OrtRunner

ORIGINAL_NAME = "unpruned.onnx"
TIE = 0.05  # a latency ratio within 5% of 1 is this machine's noise, not a speed-up or a slowdown


@dataclass(frozen=True)
class PruneSizes:
    """What pruning removed: the pruned checkpoint written, and the sizes before and after."""

    config: PruneConfig
    input_size: int
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int

    @property
    def mac_reduction(self) -> float:
        return 1 - self.macs_after / self.macs_before


@dataclass(frozen=True)
class PruneAccuracy:
    """The pruned model against the unpruned one on the same images, each ONNX file run on onnxruntime."""

    images: int
    source: str  # which images, in words
    labelled: bool
    before: float | None  # top-1 of the unpruned model (labelled images only)
    after: float | None  # top-1 of the pruned model (labelled images only)
    agreement: float  # share of images where both models' top-1 classes agree

    @property
    def drop_points(self) -> float | None:
        return None if self.before is None or self.after is None else round(100 * (self.before - self.after), 2)

    def describe(self) -> str:
        if self.labelled:
            return f"top-1 {self.before:.2%} -> {self.after:.2%} ({self.drop_points:.2f} points lost) on {self.source}; agreement with the unpruned model {self.agreement:.2%}"
        return f"top-1 agreement with the unpruned model {self.agreement:.2%} on {self.source} (unlabelled: no top-1)"


@dataclass(frozen=True)
class PruneSpeed:
    runtime: str  # a key of CPU_RUNTIMES
    batch: int
    before_ms: float
    after_ms: float

    @property
    def speedup(self) -> float:
        return self.before_ms / self.after_ms

    def describe(self) -> str:
        return f"{CPU_RUNTIMES[self.runtime]} batch {self.batch}: {self.before_ms:.2f} -> {self.after_ms:.2f} ms ({self.speedup:.2f}x)"


@dataclass(frozen=True)
class PruneReport:
    """``deploykit prune``'s verdict: sizes, accuracy against the unpruned model, speed where it will run."""

    sizes: PruneSizes
    accuracy: PruneAccuracy
    speeds: tuple[PruneSpeed, ...]
    not_timed: tuple[str, ...]
    check: PruneCheck
    distill_command: str  # the command that recovers the accuracy

    def accuracy_warning(self) -> str | None:
        """Said as loudly as an INT8 file that is slower: a pruned model that lost its accuracy."""
        accuracy, check = self.accuracy, self.check
        lost = accuracy.drop_points > check.max_drop if accuracy.labelled else 100 * (1 - accuracy.agreement) > check.max_drop
        if not lost:
            return None
        what = f"lost {accuracy.drop_points:.1f} points of top-1" if accuracy.labelled else f"disagrees with the unpruned model on {1 - accuracy.agreement:.1%} of the images"
        return (
            f"PRUNED MODEL {what.upper()} (more than --max-drop {check.max_drop:g}): distil it from the unpruned model "
            f"before deploying it: {self.distill_command}; or prune less (a smaller --ratio or --target-macs further from the "
            "original)"
        )

    def speed_warnings(self) -> list[str]:
        """One line per runtime and batch where the pruned model is slower, or no faster, than the unpruned one."""
        lines = []
        for speed in self.speeds:
            if speed.speedup < 1 - TIE:
                lines.append(
                    f"PRUNED MODEL IS SLOWER on {speed.describe()}, with {self.sizes.mac_reduction:.0%} fewer MACs: "
                    "keep channel counts multiples of 8 (--round-to 8), or prune less, and measure again"
                )
            elif speed.speedup < 1 + TIE:
                lines.append(f"pruned model no faster on {speed.describe()}: within this machine's noise of the unpruned one; --round-to 8 or a larger --ratio may make it faster")
        return lines

    def as_dict(self) -> dict:
        sizes, config = self.sizes, self.sizes.config
        return {
            "method": config.method,
            "ratio": config.ratio,
            "target_macs": config.target_macs,
            "global": config.global_pruning,
            "round_to": config.round_to,
            "input_size": sizes.input_size,
            "params_before": sizes.params_before,
            "params_after": sizes.params_after,
            "macs_before": sizes.macs_before,
            "macs_after": sizes.macs_after,
            "mac_reduction": round(sizes.mac_reduction, 4),
            "accuracy": {**asdict(self.accuracy), "drop_points": self.accuracy.drop_points},
            "speeds": [{**asdict(s), "speedup": round(s.speedup, 3)} for s in self.speeds],
            "not_timed": list(self.not_timed),
            "max_drop": self.check.max_drop,
            "accuracy_warning": self.accuracy_warning(),
            "speed_warnings": self.speed_warnings(),
        }


def run_prune(ref: ModelRef, config: PruneConfig, folder: Path, input_size: int | None = None, images: np.ndarray | None = None) -> PruneSizes:
    """Prune the model ``ref`` names and save ``folder/pruned.pth``; ``images`` (real ones) drive Taylor importance."""
    import torch

    spec = ref.spec
    size = spec.checked_input_size(ref.input_size(input_size))
    kwargs = {"aux_logits": False} if spec.has_aux_outputs else {}
    model = ref.build(**kwargs)
    check_request(model, (1, 3, size, size), config)  # before the folder is made
    ExportFolder(ensure_writable_dir(folder)).refuse_foreign_files()
    num_classes = classifier_outputs(model)
    data = torch.from_numpy(images[:32]) if images is not None and len(images) else None
    result = prune_model(model, (1, 3, size, size), config, data)
    source = {"name": spec.name, "kwargs": {**(ref.builder_kwargs or {}), **kwargs, "num_classes": num_classes}, "pruned": True, "weights": ref.weights.reference}
    atomic_save_torch(folder / PRUNED_NAME, pruned_state(model, source))
    return PruneSizes(config, size, result.params_before, result.params_after, result.macs_before, result.macs_after)


def prune_and_export(
    reference: str, weights: str | None, config: PruneConfig, out: Path, input_size: int | None = None, check: PruneCheck = PruneCheck()
) -> tuple[PruneReport, ExportResult]:
    """``deploykit prune``: prune, export the pruned model (dynamic batch) with parity into one folder, and judge it against
    the unpruned model on ``check.data`` and on every CPU runtime."""
    ref = parse_model_ref(reference).with_weights(weights)
    if ref.spec is None or ref.factory is not None:
        raise DeployKitError(f"{reference} is an ONNX file; prune takes NAME, NAME:CHECKPOINT or a folder of deploykit's")
    folder = Path(out) / ref.name
    size = ref.spec.checked_input_size(ref.input_size(input_size))
    preprocess = ref.preprocess(size)
    dataset, source, labelled = _judging_images(check, preprocess, ref)
    with stage("reading images for Taylor importance"):
        taylor = _first_images(dataset, 32) if config.method == "taylor" else None
    sizes = run_prune(ref, config, folder, size, taylor)
    exporting = ExportConfig(out=out, input_size=size, dynamic_batch=True, time_runtimes=False)
    result = export(exporting, ref.with_checkpoint(folder / PRUNED_NAME))
    with tempfile.TemporaryDirectory(prefix="deploykit-prune-") as work:
        timing = beside_the_original(ref, size, True, Path(work), {ONNX_NAME: result.onnx_path})
        with stage(f"top-1 of both models on {source}", total=len(dataset), unit="images") as advance:
            accuracy = _accuracy(timing / ORIGINAL_NAME, timing / ONNX_NAME, dataset, source, labelled, advance)
        speeds, not_timed = _speeds(timing, size, check) if check.timing else ((), ("--no-timing",))
    report = PruneReport(sizes, accuracy, speeds, not_timed, check, _distill_command(ref, folder, check))
    ExportFolder(folder).update({"prune": report.as_dict()}, files=[ONNX_NAME, PRUNED_NAME])
    return report, result


def beside_the_original(ref: ModelRef, size: int, dynamic_batch: bool, work: Path, files: dict[str, Path]) -> Path:
    """A folder in ``work`` holding the model ``ref`` exported as it is (``unpruned.onnx``) and links to ``files`` (name ->
    path): what a compressed model is judged and timed against, side by side."""
    with stage("exporting the original model to judge against"):
        original = export(ExportConfig(out=work, input_size=size, dynamic_batch=dynamic_batch, time_runtimes=False), ref)
    folder = work / "timing"
    folder.mkdir()
    os.link(original.onnx_path, folder / ORIGINAL_NAME)
    for name, path in files.items():
        os.link(path, folder / name)
    return folder


def _judging_images(check: PruneCheck, preprocess, ref: ModelRef):
    """(dataset of (image, label or -1), the images in words, labelled): a labelled folder (or its held-out tenth), a flat
    folder, or the bundled held-out photos."""
    from torch.utils.data import Subset

    data = check.data
    if check.held_out and not (data and folder_classes(data)):
        raise DeployKitError("--held-out takes the last tenth of each class folder of --data: give --data a folder of class subfolders")
    if data is not None and folder_classes(data):
        dataset = LabelledImages(data, preprocess.transform, ref.build_classes())
        rule = dataset.mapping.describe()
        if check.held_out:
            dataset = Subset(dataset, held_out_indices(dataset.labels).tolist())
            return dataset, f"{len(dataset)} held-out labelled images of {data} (the last tenth of each class; {rule})", True
        return dataset, f"{len(dataset)} labelled images of {data} ({rule})", True
    folder = data or DEFAULT_HOLDOUT_DIR
    if data is not None and not Path(data).is_dir():
        raise DeployKitError(f"--data {data} does not exist or is not a folder; give a folder of photos (class subfolders for top-1, a flat folder for agreement)")
    dataset = UnlabelledImages(find_images(folder), preprocess.transform)
    where = data if data is not None else "the bundled held-out photos (give --data DIR, class subfolders, for top-1)"
    return dataset, f"{len(dataset)} photos of {where}", False


def _first_images(dataset, count: int) -> np.ndarray:
    from torch.utils.data import Subset

    from deploykit.data import evenly_spaced

    chosen = evenly_spaced(range(len(dataset)), count)
    return np.concatenate([images.numpy() for images, _ in batches(loader(Subset(dataset, chosen), count, 0))])


def _accuracy(original: Path, pruned: Path, dataset, source: str, labelled: bool, advance) -> PruneAccuracy:
    before = after = agree = seen = 0
    with OrtRunner(original) as a, OrtRunner(pruned) as b:
        for images, labels in batches(loader(dataset, 32)):
            x, labels = images.numpy(), labels.numpy()
            logits_a, logits_b = run_all(a, x), run_all(b, x)
            if labelled:
                before += int(topk_hits(logits_a, labels, 1).sum())
                after += int(topk_hits(logits_b, labels, 1).sum())
            agree += int((logits_a.argmax(1) == logits_b.argmax(1)).sum())
            seen += len(labels)
            advance(len(labels))
    return PruneAccuracy(seen, source, labelled, before / seen if labelled else None, after / seen if labelled else None, agree / seen)


def _speeds(folder: Path, size: int, check: PruneCheck) -> tuple[tuple[PruneSpeed, ...], tuple[str, ...]]:
    """Both files on every CPU runtime, at batch 1 and ``check.batch``, each batch in interleaved rounds of one run."""
    files = {ORIGINAL_NAME: ("fp32", True), ONNX_NAME: ("fp32", True)}
    speeds, not_timed = [], []
    for batch in sorted({1, check.batch}):
        with stage(f"timing both models on every CPU runtime at batch {batch}, interleaved"):
            timings = time_runtimes_apart(folder, files, (batch, 3, size, size))
        not_timed += [note for note in timings.not_timed if note not in not_timed]
        for runtime in CPU_RUNTIMES:
            pair = [next((c for c in timings.combinations if c.file == name and c.runtime == runtime), None) for name in files]
            if all(pair):
                speeds.append(PruneSpeed(runtime, batch, pair[0].p50_ms, pair[1].p50_ms))
    return tuple(speeds), tuple(not_timed)


def _distill_command(ref: ModelRef, folder: Path, check: PruneCheck) -> str:
    teacher = ref.text if ref.manifest is not None or ":" in ref.text or ref.weights.reference is None else f"{ref.name}:{ref.weights.reference}"
    if check.data and folder_classes(check.data):
        training = check.data if check.held_out else f"TRAIN_DIR --val {check.data}"
    else:
        training = "TRAIN_DIR"
    return f"deploykit distill --teacher {teacher} --student {folder} --data {training} --out runs/student"
