"""The prune and distill steps as the CLI and the export pipeline run them: files in, files out."""

from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from deploykit.bench.latency import measure_latency
from deploykit.compress.distill import STUDENT, DistillConfig, distill, evaluate, load_dataset
from deploykit.compress.prune import PruneConfig, prune_model
from deploykit.compress.pruned import pruned_state
from deploykit.data import Preprocess
from deploykit.errors import DeployKitError
from deploykit.io import atomic_write_bytes, ensure_writable_dir
from deploykit.manifest import read_manifest
from deploykit.models import get_spec
from deploykit.sources import build_model

PRUNED = "pruned.pth"


def run_prune(name: str, weights: str | None, config: PruneConfig, folder: Path, input_size: int | None = None) -> dict:
    """Prune a registry model, save ``folder/pruned.pth``; returns sizes and torch CPU latency before/after."""
    spec = get_spec(name)
    size = input_size or spec.input_size
    ensure_writable_dir(folder)
    kwargs = {"aux_logits": False} if spec.has_aux_outputs else {}
    original = build_model(spec.name, weights, **kwargs)
    model = build_model(spec.name, weights, **kwargs)
    num_classes = _classifier_outputs(model)
    result = prune_model(model, (1, 3, size, size), config, num_classes)
    x = torch.randn(1, 3, size, size)
    with torch.inference_mode():
        before_ms = measure_latency(lambda: original(x), runs=30, max_seconds=10).p50_ms
        after_ms = measure_latency(lambda: model(x), runs=30, max_seconds=10).p50_ms
    source = {"name": spec.name, "kwargs": {**kwargs, "num_classes": num_classes}, "pruned": True, "weights": weights}
    _save(folder / PRUNED, pruned_state(model, source))
    return {
        "method": config.method, "ratio": config.ratio, "target_macs": config.target_macs, "global": config.global_pruning,
        "round_to": config.round_to, "params_before": result.params_before, "params_after": result.params_after,
        "macs_before": result.macs_before, "macs_after": result.macs_after,
        "mac_reduction": round(1 - result.macs_after / result.macs_before, 4),
        "torch_cpu_ms_before": round(before_ms, 3), "torch_cpu_ms_after": round(after_ms, 3),
        "speedup": round(before_ms / after_ms, 2), "input_size": size,
    }


def resolve_student(text: str) -> tuple[str, str | None]:
    """(registry name, weights) for NAME, NAME:WEIGHTS or a folder written by `deploykit prune`."""
    path = Path(text)
    if path.is_dir():
        manifest = read_manifest(path)
        if not (path / PRUNED).is_file() or not manifest:
            raise DeployKitError(f"{path} is not a folder written by `deploykit prune` (no {PRUNED} and manifest.json)")
        return manifest["model"]["name"], str(path / PRUNED)
    name, _, weights = text.partition(":")
    return get_spec(name).name, weights or None


def run_distill(student_text: str, teacher_text: str | None, data_source: str, config: DistillConfig, out: Path,
                input_size: int | None = None, resume: bool = True) -> dict:
    """Distil (or, without a teacher, train) a student on ``data_source``; writes ``out/student.pth``."""
    name, weights = resolve_student(student_text)
    spec = get_spec(name)
    size = input_size or spec.input_size
    data = load_dataset(data_source, Preprocess.for_model(spec, size), seed=config.seed)
    if len(np.unique(data.train_labels)) < 2:
        raise DeployKitError(f"{data_source} has a single class; training needs at least two")
    kwargs = {} if weights else {"num_classes": data.num_classes, **({"aux_logits": False} if spec.has_aux_outputs else {})}
    student = build_model(name, weights, **kwargs)
    _check_classes(student, data.num_classes, f"student {student_text}")
    teacher = None
    if teacher_text:
        teacher_name, _, teacher_weights = teacher_text.partition(":")
        if not teacher_weights:
            raise DeployKitError(f"a teacher needs trained weights: --teacher {teacher_name}:CHECKPOINT")
        teacher = build_model(teacher_name, teacher_weights, num_classes=data.num_classes)
        _check_classes(teacher, data.num_classes, f"teacher {teacher_text}")
    start_top1 = evaluate(student, data.val_images, data.val_labels)
    teacher_top1 = evaluate(teacher, data.val_images, data.val_labels) if teacher is not None else None
    ensure_writable_dir(Path(out))
    source = {"name": name, "kwargs": kwargs, "pruned": bool(weights and _is_pruned(weights)), "weights": weights}
    result = distill(student, teacher, data, config, Path(out), source, resume=resume)
    return {**result, "student_start_top1": start_top1, "teacher_top1": teacher_top1, "config": asdict(config),
            "data": data_source, "student": str(Path(out) / STUDENT)}


def _check_classes(model: torch.nn.Module, num_classes: int, what: str) -> None:
    outputs = _classifier_outputs(model)
    if outputs != num_classes:
        raise DeployKitError(f"{what} predicts {outputs} classes but the data has {num_classes}")


def _classifier_outputs(model: torch.nn.Module) -> int:
    """Width of the last Linear/Conv layer: the class count of every registry classifier."""
    last = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))][-1]
    return last.out_features if isinstance(last, torch.nn.Linear) else last.out_channels


def _is_pruned(weights: str) -> bool:
    from deploykit.compress.pruned import is_pruned_checkpoint, load_pruned

    return Path(weights).is_file() and is_pruned_checkpoint(load_pruned(Path(weights)))  # a tag names published weights


def _save(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def prepare_weights(name: str, weights: str | None, prune_ratio: float | None, teacher: str | None, data: str | None,
                    epochs: int, folder: Path, input_size: int | None = None) -> tuple[str | None, dict]:
    """The export pipeline's compression stages: prune, then distil (or fine-tune) on ``data``.

    Returns the weights to export and a record of each stage for the manifest.
    """
    if teacher and not data:
        raise DeployKitError("--distill-from needs --data (a labelled folder or 'digits')")
    stages: dict = {}
    if prune_ratio is not None:
        stages["prune"] = run_prune(name, weights, PruneConfig(ratio=prune_ratio), folder / "prune", input_size)
        weights = str(folder / "prune" / PRUNED)
    if data:
        config = DistillConfig(epochs=epochs, alpha=0.9 if teacher else 0.0)
        result = run_distill(f"{get_spec(name).name}:{weights}" if weights else name, teacher, data, config, folder / "distill",
                             input_size)
        stages["distill" if teacher else "train"] = {k: result[k] for k in ("history", "student_start_top1", "teacher_top1", "config")}
        stages["distill" if teacher else "train"]["teacher"] = teacher
        weights = result["student"]
    return weights, stages
