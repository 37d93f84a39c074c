"""``train`` and ``distill``: fine-tune or train a model (from a teacher, for ``distill``) and write a folder that is itself
a model reference: best.pth, last.pth, history.json and a manifest with the architecture, the class names, the input
size and preprocessing and the weights' sha256.

A pretrained model whose classes are not the folder's gets a new classifier for the folder's classes (said in one
line); a folder whose classes are the model's (ImageNet synsets, class numbers, the class names it was trained on)
keeps them. A model with random weights takes the folder's classes.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from deploykit.compress.configs import DistillConfig
from deploykit.compress.distill import EpochRecord, best_epoch, distill, predictions, validation_top1
from deploykit.data.labelled import class_mapping
from deploykit.data.training import TrainingData, folder_classes, load_training_data
from deploykit.errors import DeployKitError
from deploykit.io import ensure_writable_dir
from deploykit.manifest import BEST_NAME, LAST_NAME, ExportFolder, InputRecord, Manifest, ModelRecord, WeightsRecord
from deploykit.models.layers import classifier_outputs, drop_aux_heads, replace_classifier
from deploykit.models.sources import Checkpoint, Published, RandomInit
from deploykit.progress import report
from deploykit.recipes.ref import ModelRef, parse_model_ref


@dataclass(frozen=True)
class HeadChange:
    """A pretrained classifier replaced by a new one for the folder's classes."""

    old_classes: int
    classes: tuple[str, ...]

    def describe(self) -> str:
        shown = ", ".join(self.classes[:12]) + (f" and {len(self.classes) - 12} more" if len(self.classes) > 12 else "")
        return f"classifier {self.old_classes} -> {len(self.classes)} classes: {shown}"


@dataclass(frozen=True)
class TrainingResult:
    """A training or distillation run: the folder written (a model reference), and its history."""

    folder: Path
    history: tuple[EpochRecord, ...]
    student_start_top1: float
    teacher_top1: float | None
    world_size: int
    weights_sha256: str
    config: DistillConfig
    data: str
    teacher: str | None
    class_rule: str
    val_rule: str
    labelled: bool
    head: HeadChange | None
    estimate_seconds: float | None

    @property
    def weights(self) -> Path:
        """The best epoch's weights: what the folder stands for as a model."""
        return self.folder / BEST_NAME

    @property
    def best(self) -> EpochRecord:
        return best_epoch(self.history)

    @property
    def metric(self) -> str:
        return "val top-1" if self.labelled else "agreement with the teacher's top-1"

    @property
    def reports(self) -> bool:
        """Whether this process reports the run: a single process, or rank 0 of a torchrun group."""
        return self.world_size == 1 or os.environ.get("RANK", "0") == "0"

    def stage_record(self) -> dict:
        return {
            "history": [asdict(r) for r in self.history],
            "best_epoch": self.best.epoch,
            "best_val_top1": self.best.val_top1,
            "metric": self.metric,
            "student_start_top1": self.student_start_top1,
            "teacher_top1": self.teacher_top1,
            "config": asdict(self.config),
            "data": self.data,
            "teacher": self.teacher,
            "classes": self.class_rule,
            "validation": self.val_rule,
            "new_head": self.head.describe() if self.head else None,
            "estimate_seconds": self.estimate_seconds,
        }


@dataclass(frozen=True)
class _Student:
    model: torch.nn.Module
    data: TrainingData
    kwargs: dict  # what rebuilds it: the builder's keyword arguments
    classes: tuple[str, ...] | None
    head: HeadChange | None
    new_layer: torch.nn.Module | None


def run_distill(
    student: ModelRef | str,
    teacher: ModelRef | str | None,
    data_source: str,
    config: DistillConfig,
    out: Path,
    input_size: int | None = None,
    resume: bool = True,
    on_epoch=None,
    workers: int | None = None,
    val_source: str | None = None,
    new_head: bool = False,
    limit: int | None = None,
) -> TrainingResult:
    """Distil (or, without a teacher, train) ``student`` on ``data_source`` into the folder ``out``.

    ``val_source``: a labelled folder of held-out photos to validate on (else the last tenth of each class folder);
    ``new_head``: replace the classifier even where the folder's classes could map onto the model's; ``limit``: train on
    at most this many photos."""
    student_ref = student if isinstance(student, ModelRef) else parse_model_ref(student)
    teacher_ref = teacher if isinstance(teacher, ModelRef) or teacher is None else parse_model_ref(teacher)
    if student_ref.spec is None or student_ref.factory is not None:
        raise DeployKitError(f"the student {student_ref.text} is an ONNX file; give NAME, NAME:CHECKPOINT or a folder of deploykit's")
    out = Path(out)
    ExportFolder(ensure_writable_dir(out)).refuse_foreign_files()
    teacher_model = _teacher(teacher_ref) if teacher_ref else None
    size = student_ref.spec.checked_input_size(student_ref.input_size(input_size))
    preprocess = student_ref.preprocess(size)
    teacher_classes = classifier_outputs(teacher_model) if teacher_model is not None else None
    teacher_names = tuple(teacher_ref.classes) if teacher_ref and teacher_ref.classes else None
    built = _student(student_ref, _Data(data_source, preprocess, config, val_source, teacher_classes, limit, teacher_names), new_head)
    if built.head is not None:
        report(built.head.describe())
    if teacher_model is not None:
        _check_teacher(teacher_model, teacher_ref, built)
        teacher_model = _fed_as_trained(teacher_model, teacher_ref, preprocess)
    val_targets = None if built.data.labelled else predictions(teacher_model, built.data.val, workers)
    start_top1 = validation_top1(built.model, built.data.val, workers=workers, labels=val_targets)
    teacher_top1 = validation_top1(teacher_model, built.data.val, workers=workers) if teacher_model is not None and built.data.labelled else None
    source = {
        "name": student_ref.name,
        "kwargs": built.kwargs,
        "pruned": student_ref.weights.pruned,
        "weights": student_ref.weights.reference,
        "data": {"source": data_source, "val": val_source, "limit": limit},
    }
    outcome = distill(built.model, teacher_model, built.data, config, out, source, resume=resume, on_epoch=on_epoch, workers=workers, head=built.new_layer)
    result = TrainingResult(
        out,
        outcome.history,
        start_top1,
        teacher_top1,
        outcome.world_size,
        outcome.weights_sha256,
        config,
        data_source,
        teacher_ref.text if teacher_ref else None,
        built.data.class_rule,
        built.data.val_rule,
        built.data.labelled,
        built.head,
        outcome.estimate_seconds,
    )
    if result.reports:
        record = ModelRecord(
            student_ref.name,
            student_ref.spec.family,
            classifier_outputs(built.model),
            WeightsRecord.of(Checkpoint(out / BEST_NAME)),
            built.kwargs,
            list(built.classes) if built.classes else None,
        )
        inputs = InputRecord([1, 3, size, size], list(preprocess.mean), list(preprocess.std), preprocess.resize, preprocess.interpolation)
        ExportFolder(out).write(Manifest(record, inputs, sections={"training": result.stage_record()}), [BEST_NAME, LAST_NAME])
    return result


@dataclass(frozen=True)
class _Data:
    """What training data to load, once the classes it maps onto are known."""

    source: str
    preprocess: object
    config: DistillConfig
    val_source: str | None
    teacher_classes: int | None
    limit: int | None
    teacher_names: tuple[str, ...] | None = None

    def load(self, num_classes: int | None) -> TrainingData:
        data = load_training_data(self.source, self.preprocess, num_classes, self.val_source, self.config.min_crop_scale, self.limit)
        if not data.labelled and self.teacher_classes is None:
            raise DeployKitError(f"{self.source} holds photos with no class folders: there is nothing to train on without a teacher; give class subfolders, or distil with --teacher")
        return data


def _student(ref: ModelRef, data: _Data, new_head: bool) -> _Student:
    """The model to train with its data: random weights take the teacher's classes where the folders map onto them
    (ImageNet synsets onto an ImageNet teacher), else the folder's (unlabelled photos: the teacher's); trained weights keep
    their classes when the folder's map onto them, and get a new classifier for them otherwise."""
    base_kwargs = {**_published_kwargs(ref), **(ref.builder_kwargs or {})}
    if ref.spec.has_aux_outputs:
        base_kwargs["aux_logits"] = False
    if isinstance(ref.weights, RandomInit):
        if new_head:
            raise DeployKitError(
                f"--new-head replaces a pretrained classifier; {ref.text} has random weights, so its classifier is made for the folder's classes anyway: drop --new-head"
            )
        folders = folder_classes(data.source)
        if data.teacher_classes and folders and _classes_fit(folders, data.teacher_classes, data.teacher_names):
            loaded = data.load(data.teacher_classes)
            kwargs = {**base_kwargs, "num_classes": data.teacher_classes}
            return _Student(ref.build(**kwargs), loaded, kwargs, data.teacher_names, None, None)
        loaded = data.load(None)
        kwargs = {**base_kwargs, "num_classes": loaded.num_classes if loaded.labelled else data.teacher_classes}
        return _Student(ref.build(**kwargs), loaded, kwargs, loaded.classes or None, None, None)
    model = ref.build()
    drop_aux_heads(model)
    outputs = classifier_outputs(model)
    folders = folder_classes(data.source)
    if new_head and not folders:
        raise DeployKitError(f"--new-head makes a classifier for the folder's classes, and {data.source} has no class folders")
    if folders and (new_head or not _classes_fit(folders, outputs, ref.classes)):
        loaded = data.load(None)
        layer = replace_classifier(model, loaded.num_classes)
        kwargs = {} if ref.weights.pruned else {**base_kwargs, "num_classes": loaded.num_classes}
        return _Student(model, loaded, kwargs, loaded.classes, HeadChange(outputs, loaded.classes), layer)
    loaded = data.load(outputs)
    if loaded.labelled and loaded.num_classes != outputs:
        raise DeployKitError(f"student {ref.text} predicts {outputs} classes but the data has {loaded.num_classes}")
    return _Student(model, loaded, {} if ref.weights.pruned else base_kwargs, ref.classes, None, None)


def _classes_fit(folders: list[str], outputs: int, names: tuple[str, ...] | None) -> bool:
    """Whether class folders label a model's existing classes: its own class names, ImageNet synsets or class numbers,
    or (for a model with no names recorded) as many folders as it has classes, in sorted order."""
    if names:
        return list(names) == folders
    try:
        mapping = class_mapping(folders, outputs)
    except DeployKitError:
        return False
    return mapping.rule in ("synsets", "integers") or mapping.warning is None


def _published_kwargs(ref: ModelRef) -> dict:
    return dict(ref.weights.entry.build_kwargs) if isinstance(ref.weights, Published) else {}


def _teacher(ref: ModelRef) -> torch.nn.Module:
    if ref.spec is None or ref.random_weights:
        raise DeployKitError(f"a teacher needs trained weights: --teacher NAME:CHECKPOINT, NAME:IMAGENET1K_V1 or a folder written by train, got {ref.text}")
    teacher = ref.build()
    drop_aux_heads(teacher)
    return teacher


class _Renormalized(torch.nn.Module):
    """The teacher behind a per-channel affine map: images normalized for the student, as the teacher was trained."""

    def __init__(self, teacher: torch.nn.Module, scale: list[float], shift: list[float]) -> None:
        super().__init__()
        self.teacher = teacher
        self.register_buffer("scale", torch.tensor(scale).view(1, 3, 1, 1))
        self.register_buffer("shift", torch.tensor(shift).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.teacher(images * self.scale + self.shift)


def _fed_as_trained(teacher: torch.nn.Module, ref: ModelRef, student) -> torch.nn.Module:
    """The teacher sees the student's batches: where its own mean and std differ, undo the student's and apply its own;
    a different resize or crop cannot be undone, and is refused."""
    own = ref.preprocess(student.size)
    if (own.resize, own.interpolation) != (student.resize, student.interpolation):
        raise DeployKitError(
            f"teacher {ref.text} takes images resized to {own.resize} ({own.interpolation}) for {own.size}x{own.size}, "
            f"the student {student.resize} ({student.interpolation}): distil between models fed the same way"
        )
    if (own.mean, own.std) == (student.mean, student.std):
        return teacher
    scale = [s / t for s, t in zip(student.std, own.std)]
    shift = [(m - tm) / t for m, tm, t in zip(student.mean, own.mean, own.std)]
    return _Renormalized(teacher, scale, shift).eval()


def _check_teacher(teacher: torch.nn.Module, ref: ModelRef, student: _Student) -> None:
    outputs, wanted = classifier_outputs(teacher), classifier_outputs(student.model)
    if outputs != wanted:
        raise DeployKitError(
            f"teacher {ref.text} predicts {outputs} classes but the student (and the data) {wanted}: fine-tune "
            f"the teacher on these classes first (deploykit train {ref.text} --data DIR --out TEACHER), then "
            "distil from that folder"
        )
    if ref.classes and student.classes and tuple(ref.classes) != tuple(student.classes):
        raise DeployKitError(
            f"teacher {ref.text} was trained on classes {', '.join(ref.classes[:4])}... but the student's are {', '.join(student.classes[:4])}...; distil onto the teacher's classes"
        )
