"""The export recipe: build -> ONNX -> check -> simplify -> verify parity -> write, with the manifest."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploykit.data import DEFAULT_CALIBRATION_DIR, Preprocess
from deploykit.errors import DeployKitError
from deploykit.export.onnx import DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME, check_onnx, simplify_onnx, torch_to_onnx
from deploykit.io import atomic_write_bytes, ensure_writable_dir, sha256_file
from deploykit.manifest import write_manifest
from deploykit.models import get_spec
from deploykit.parity import ParityReport, Tolerances, compare_logits, compare_runners, parity_inputs, run_all
from deploykit.runtime import OrtRunner, TorchRunner
from deploykit.sources import DEFAULT_SEED, build_model

ONNX_NAME = "model.onnx"


@dataclass(frozen=True)
class ExportConfig:
    """Options of ``deploykit export``; each maps to one command-line option."""

    name: str
    out: Path = Path("deploykit-out")
    weights: str | None = None
    opset: int = DEFAULT_OPSET
    batch: int = 1
    dynamic_batch: bool = False
    input_size: int | None = None
    simplify: bool = True
    tolerances: Tolerances = field(default_factory=Tolerances)
    parity_images: Path | None = DEFAULT_CALIBRATION_DIR


@dataclass
class ExportResult:
    folder: Path
    onnx_path: Path
    parity: ParityReport
    simplified: bool
    export_seconds: float
    notes: list[str]


def export(config: ExportConfig) -> ExportResult:
    """Export a registry model to ONNX and write it only if it matches PyTorch within tolerance."""
    spec = get_spec(config.name)
    size = config.input_size or spec.input_size
    if size < spec.min_input_size:
        raise DeployKitError(f"{spec.name} needs inputs of at least {spec.min_input_size}x{spec.min_input_size}, got {size}")
    if config.batch < 1:
        raise DeployKitError(f"--batch must be at least 1, got {config.batch}")
    folder = ensure_writable_dir(Path(config.out) / spec.name)
    model = build_model(spec.name, config.weights)
    started = time.perf_counter()
    proto = torch_to_onnx(model, (config.batch, 3, size, size), config.opset, config.dynamic_batch)
    export_seconds = time.perf_counter() - started
    raw = proto.SerializeToString()
    check_onnx(raw)

    inputs = parity_inputs(Preprocess.for_model(spec, size), image_dir=config.parity_images)
    reference = TorchRunner(model, (3, size, size))
    notes: list[str] = []
    candidates = [(simplify_onnx(proto).SerializeToString(), True)] if config.simplify else []
    for serialized, simplified in [*candidates, (raw, False)]:
        parity = compare_runners(reference, OrtRunner(serialized), inputs, config.tolerances)
        if parity.passed:
            break
        if simplified:
            notes.append(f"simplified graph rejected: {parity.summary()}")
    if not parity.passed:
        raise DeployKitError(f"the ONNX export of {spec.name} does not match PyTorch, so nothing was written: {parity.summary()}")
    if config.dynamic_batch:
        notes.append(_check_batch_consistency(serialized, inputs))

    onnx_path = folder / ONNX_NAME
    atomic_write_bytes(onnx_path, serialized)
    write_manifest(folder, {
        "model": {
            "name": spec.name, "family": spec.family, "num_classes": spec.num_classes,
            "weights": {"path": str(config.weights), "sha256": sha256_file(Path(config.weights))} if config.weights
            else {"path": None, "seed": DEFAULT_SEED},
        },
        "input": {
            "name": INPUT_NAME, "output": OUTPUT_NAME, "layout": "NCHW", "dtype": "float32",
            "shape": ["batch" if config.dynamic_batch else config.batch, 3, size, size],
            "mean": list(spec.mean), "std": list(spec.std), "resize": Preprocess.for_model(spec, size).resize,
        },
        "export": {"opset": config.opset, "exporter": "torch.onnx (dynamo)", "simplified": simplified,
                   "dynamic_batch": config.dynamic_batch, "seconds": round(export_seconds, 2), "notes": notes},
        "parity": {ONNX_NAME: {"reference": "pytorch", **parity.as_dict()}},
    }, files=[ONNX_NAME], fresh=True)
    return ExportResult(folder, onnx_path, parity, simplified, export_seconds, notes)


def _check_batch_consistency(serialized: bytes, inputs: np.ndarray) -> str:
    """A dynamic-batch graph must give the same logits run one image at a time and four at a time."""
    with OrtRunner(serialized) as runner:
        single = run_all(runner, inputs[:4], batch_size=1)
        batched = run_all(runner, inputs[:4], batch_size=4)
    report = compare_logits(single, batched, Tolerances(rel_error=1e-5))
    if not report.passed:
        raise DeployKitError(f"the dynamic-batch ONNX gives different outputs at batch 1 and 4: {report.summary()}")
    return f"dynamic batch verified: batch 1 vs 4 max abs error {report.max_abs_error:.3g}"
