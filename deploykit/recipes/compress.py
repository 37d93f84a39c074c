"""The compression workflows: prune (and export), distil or train, and export after compressing.

Files in, files out: every step writes its checkpoint, and the export folder's manifest records
each stage.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from deploykit.bench.latency import measure_latency
from deploykit.compress.distill import STUDENT, distill, validation_top1
from deploykit.compress.configs import DistillConfig
from deploykit.compress.prune import prune_model
from deploykit.compress.configs import PruneConfig
from deploykit.data import Preprocess
from deploykit.data.labelled import DIGITS_CLASSES
from deploykit.data.training import load_training_data
from deploykit.errors import DeployKitError
from deploykit.io import atomic_save_torch, ensure_writable_dir
from deploykit.manifest import ONNX_NAME, PRUNED_NAME, ExportFolder
from deploykit.models.layers import classifier_outputs
from deploykit.models.pruned import pruned_state
from deploykit.models.sources import RandomInit
from deploykit.recipes.configs import Compression, ExportConfig
from deploykit.recipes.export import ExportResult, export, export_ref
from deploykit.recipes.ref import ModelRef, parse_model_ref
from deploykit.recipes.triton import check_triton_config, write_triton_repository


@dataclass(frozen=True)
class PruneReport:
    """Sizes and measured torch CPU latency (batch 1) before and after pruning."""

    config: PruneConfig
    input_size: int
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    torch_cpu_ms_before: float
    torch_cpu_ms_after: float

    @property
    def mac_reduction(self) -> float:
        return 1 - self.macs_after / self.macs_before

    @property
    def speedup(self) -> float:
        return self.torch_cpu_ms_before / self.torch_cpu_ms_after

    def slower_warning(self) -> str | None:
        """Said as loudly as an INT8 model that is slower: fewer MACs that cost more time."""
        if self.speedup >= 1.0:
            return None
        return (f"PRUNED MODEL IS SLOWER on this CPU ({self.torch_cpu_ms_after:.2f} ms vs {self.torch_cpu_ms_before:.2f} ms, with "
                f"{self.mac_reduction:.0%} fewer MACs): prune less, keep channel counts multiples of 8 (--round-to 8), or time "
                "it on the runtime you deploy with (deploykit bench) before shipping it")

    def as_dict(self) -> dict:
        config = self.config
        return {"method": config.method, "ratio": config.ratio, "target_macs": config.target_macs, "global": config.global_pruning,
                "round_to": config.round_to, **{k: v for k, v in asdict(self).items() if k != "config"},
                "mac_reduction": round(self.mac_reduction, 4), "speedup": round(self.speedup, 2)}


@dataclass(frozen=True)
class TrainingResult:
    """A distillation (or, without a teacher, training) run: the student written, and its history."""

    student: Path
    history: list[dict]
    student_start_top1: float
    teacher_top1: float | None
    world_size: int
    weights_sha256: str
    config: DistillConfig
    data: str
    teacher: str | None = None
    class_rule: str = DIGITS_CLASSES

    @property
    def reports(self) -> bool:
        """Whether this process reports the run: a single process, or rank 0 of a torchrun group."""
        return self.world_size == 1 or os.environ.get("RANK", "0") == "0"

    def stage_record(self) -> dict:
        return {"history": self.history, "student_start_top1": self.student_start_top1, "teacher_top1": self.teacher_top1,
                "config": asdict(self.config), "teacher": self.teacher, "classes": self.class_rule}


def run_prune(ref: ModelRef, config: PruneConfig, folder: Path, input_size: int | None = None) -> PruneReport:
    """Prune the model ``ref`` names, save ``folder/pruned.pth``; sizes and latency before and after."""
    spec = ref.spec
    size = input_size or spec.input_size
    ExportFolder(ensure_writable_dir(folder)).refuse_foreign_files()
    kwargs = {"aux_logits": False} if spec.has_aux_outputs else {}
    original = ref.build(**kwargs)
    model = ref.build(**kwargs)
    num_classes = classifier_outputs(model)
    result = prune_model(model, (1, 3, size, size), config)
    x = torch.randn(1, 3, size, size)
    with torch.inference_mode():
        before_ms = measure_latency(lambda: original(x), runs=30, max_seconds=10).p50_ms
        after_ms = measure_latency(lambda: model(x), runs=30, max_seconds=10).p50_ms
    source = {"name": spec.name, "kwargs": {**kwargs, "num_classes": num_classes}, "pruned": True, "weights": ref.weights.reference}
    atomic_save_torch(folder / PRUNED_NAME, pruned_state(model, source))
    return PruneReport(config, size, result.params_before, result.params_after, result.macs_before, result.macs_after,
                       round(before_ms, 3), round(after_ms, 3))


def prune_and_export(reference: str, weights: str | None, config: PruneConfig, out: Path,
                     input_size: int | None = None) -> tuple[PruneReport, ExportResult]:
    """``deploykit prune``: prune, then export the pruned model with parity into the same folder."""
    ref = parse_model_ref(reference).with_weights(weights)
    folder = Path(out) / ref.name
    report = run_prune(ref, config, folder, input_size)
    result = export(ExportConfig(out=out, input_size=report.input_size), ref.with_checkpoint(folder / PRUNED_NAME))
    ExportFolder(folder).update({"prune": report.as_dict()}, files=[ONNX_NAME, PRUNED_NAME])
    return report, result


def run_distill(student: ModelRef | str, teacher: ModelRef | str | None, data_source: str, config: DistillConfig, out: Path,
                input_size: int | None = None, resume: bool = True, on_epoch=None, workers: int | None = None) -> TrainingResult:
    """Distil (or, without a teacher, train) the ``student`` on ``data_source``; writes ``out/student.pth``.

    Images stream from the folder through ``workers`` DataLoader processes (a default for None)."""
    student_ref = student if isinstance(student, ModelRef) else parse_model_ref(student)
    teacher_ref = teacher if isinstance(teacher, ModelRef) or teacher is None else parse_model_ref(teacher)
    spec = student_ref.spec
    if spec is None:
        raise DeployKitError(f"the student {student_ref.text} is an ONNX file; give NAME, NAME:CHECKPOINT or a pruned folder")
    size = input_size or spec.input_size
    preprocess = Preprocess.for_model(spec, size)
    if not isinstance(student_ref.weights, RandomInit):  # trained classes: the folders map onto them as eval maps them
        kwargs, model = {}, student_ref.build()
        data = load_training_data(data_source, preprocess, seed=config.seed, num_classes=classifier_outputs(model))
    else:  # a new classifier: the folders define its classes
        data = load_training_data(data_source, preprocess, seed=config.seed)
        kwargs = {"num_classes": data.num_classes, **({"aux_logits": False} if spec.has_aux_outputs else {})}
        model = student_ref.build(**kwargs)
    _check_classes(model, data.num_classes, f"student {student_ref.text}")
    teacher_model = _teacher(teacher_ref, data.num_classes) if teacher_ref else None
    start_top1 = validation_top1(model, data.val, workers=workers)
    teacher_top1 = validation_top1(teacher_model, data.val, workers=workers) if teacher_model is not None else None
    ensure_writable_dir(Path(out))
    source = {"name": spec.name, "kwargs": kwargs, "pruned": student_ref.weights.pruned, "weights": student_ref.weights.reference}
    result = distill(model, teacher_model, data, config, Path(out), source, resume=resume, on_epoch=on_epoch, workers=workers)
    return TrainingResult(Path(out) / STUDENT, result["history"], start_top1, teacher_top1, result["world_size"],
                          result["weights_sha256"], config, data_source, teacher_ref.text if teacher_ref else None, data.class_rule)


def compress_and_export(config: ExportConfig, compression: Compression = Compression()) -> ExportResult:
    """``deploykit export``: the requested compression stages, then the export, each stage in the manifest."""
    if compression.teacher and not compression.data:
        raise DeployKitError("--distill-from needs --data (a labelled folder or 'digits')")
    ref = export_ref(config)
    if config.triton:
        check_triton_config(config.triton)
        if not config.dynamic_batch and ref.has_torch:  # a user's ONNX file is checked when it is read
            raise DeployKitError("--triton needs a dynamic batch, for Triton to batch requests: add --dynamic-batch")
    exported = _compress_then_export(config, ref, compression)
    if config.triton:
        exported.triton = write_triton_repository([exported.folder], config.triton)
    return exported


def _compress_then_export(config: ExportConfig, ref: ModelRef, compression: Compression) -> ExportResult:
    compression = compression.for_export(qat=config.qat is not None)
    if not compression.requested:
        return export(config, ref)
    if config.module:
        raise DeployKitError("--prune/--distill-from/--data work on registry models; export your --module as it is")
    stages_folder = Path(config.out) / ref.name / "stages"
    stages: dict = {}
    if compression.prune_ratio is not None:
        report = run_prune(ref, PruneConfig(ratio=compression.prune_ratio), stages_folder / "prune", config.input_size)
        stages["prune"] = report.as_dict()
        ref = ref.with_checkpoint(stages_folder / "prune" / PRUNED_NAME)
    if compression.data:
        training = DistillConfig(epochs=compression.epochs, alpha=0.9 if compression.teacher else 0.0)
        result = run_distill(ref, compression.teacher, compression.data, training, stages_folder / "distill", config.input_size)
        stages["distill" if compression.teacher else "train"] = result.stage_record()
        ref = ref.with_checkpoint(result.student)
    exported = export(config, ref)
    ExportFolder(exported.folder).update({"stages": stages})
    exported.stages = stages
    return exported


def _teacher(ref: ModelRef, num_classes: int) -> torch.nn.Module:
    if ref.spec is None or isinstance(ref.weights, RandomInit):
        raise DeployKitError(f"a teacher needs trained weights: --teacher NAME:CHECKPOINT or NAME:IMAGENET1K_V1, got {ref.text}")
    teacher = ref.build(num_classes=num_classes)
    _check_classes(teacher, num_classes, f"teacher {ref.text}")
    return teacher


def _check_classes(model: torch.nn.Module, num_classes: int, what: str) -> None:
    outputs = classifier_outputs(model)
    if outputs != num_classes:
        raise DeployKitError(f"{what} predicts {outputs} classes but the data has {num_classes}")
