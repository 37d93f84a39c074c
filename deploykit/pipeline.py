"""The export recipe: build -> ONNX -> check -> simplify -> verify -> [INT8] -> write, with the manifest.

Everything is staged in a temporary folder inside the output folder and moved into place only when
every requested stage succeeded, so a failed export leaves the previous good one untouched.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploykit.bench.latency import measure_latency
from deploykit.compress.quantize import Int8GateError, QuantizeConfig, load_quantization_data, quantize_int8
from deploykit.data import DEFAULT_CALIBRATION_DIR, Preprocess
from deploykit.errors import DeployKitError
from deploykit.choices import DEFAULT_OPSET
from deploykit.export.onnx import INPUT_NAME, OUTPUT_NAME, check_onnx, simplify_onnx, torch_to_onnx
from deploykit.io import ensure_writable_dir, sha256_file
from deploykit.manifest import write_manifest
from deploykit.models import get_spec
from deploykit.models.pretrained import PublishedWeights, find_weights, is_weights_tag, weights_file
from deploykit.parity import ParityReport, Tolerances, compare_logits, compare_runners, parity_inputs, run_all
from deploykit.runtime import OrtRunner, TorchRunner
from deploykit.sources import DEFAULT_SEED, build_model

ONNX_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
CALIBRATION_CACHE = "calib-cache"


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
    int8: QuantizeConfig | None = None
    model_kwargs: dict = field(default_factory=dict)


@dataclass
class ExportResult:
    folder: Path
    onnx_path: Path
    parity: ParityReport
    simplified: bool
    export_seconds: float
    notes: list[str]
    int8: dict | None = None
    random_weights: bool = False


def export(config: ExportConfig) -> ExportResult:
    """Export a registry model to ONNX and write it only if it matches PyTorch within tolerance."""
    spec = get_spec(config.name)
    size = config.input_size or spec.input_size
    if size < spec.min_input_size:
        raise DeployKitError(f"{spec.name} needs inputs of at least {spec.min_input_size}x{spec.min_input_size}, got {size}")
    if config.batch < 1:
        raise DeployKitError(f"--batch must be at least 1, got {config.batch}")
    published = find_weights(spec.name, config.weights) if is_weights_tag(config.weights) else None
    preprocess = Preprocess.for_model(spec, size, published)
    quantization_data = load_quantization_data(config.int8, preprocess) if config.int8 else None
    folder = ensure_writable_dir(Path(config.out) / spec.name)
    checkpoint = weights_file(spec.name, config.weights)  # published weights are fetched here, once
    model = build_model(spec.name, config.weights, **config.model_kwargs)
    started = time.perf_counter()
    proto = torch_to_onnx(model, (config.batch, 3, size, size), config.opset, config.dynamic_batch)
    export_seconds = time.perf_counter() - started
    raw = proto.SerializeToString()
    check_onnx(raw)

    inputs = parity_inputs(preprocess, image_dir=config.parity_images)
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

    gate_failure: Int8GateError | None = None
    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as staging:
        staged = Path(staging) / ONNX_NAME
        staged.write_bytes(serialized)
        int8_entry = None
        if quantization_data is not None:
            try:
                quantized = quantize_int8(staged, Path(staging) / INT8_NAME, quantization_data, config.int8,
                                          folder / CALIBRATION_CACHE, enforce_gate=checkpoint is not None)
            except Int8GateError as exc:  # the FP32 export passed parity: it is still published
                gate_failure = exc
            else:
                latency = compare_latency(staged, quantized.path, (1 if config.dynamic_batch else config.batch, 3, size, size))
                if latency["int8_speedup"] < 1.0:
                    quantized.notes.append(f"INT8 IS SLOWER THAN FP32 on this CPU ({latency['int8_ms']:.2f} ms vs "
                                           f"{latency['fp32_ms']:.2f} ms): deploy the FP32 model or another runtime")
                int8_entry = {**quantized.manifest_entry(), "latency_ort_cpu": latency}
                notes += quantized.notes
        os.replace(staged, folder / ONNX_NAME)
        if int8_entry is not None:
            os.replace(Path(staging) / INT8_NAME, folder / INT8_NAME)
        elif (folder / INT8_NAME).exists():
            (folder / INT8_NAME).unlink()  # quantized from an older FP32 export: stale
            notes.append(f"removed the stale {INT8_NAME} of the previous export")
    files = [ONNX_NAME] + ([INT8_NAME] if int8_entry else [])
    updates = {
        "model": {
            "name": spec.name, "family": spec.family, "num_classes": config.model_kwargs.get("num_classes", spec.num_classes),
            "builder_kwargs": config.model_kwargs,
            "weights": _weights_record(checkpoint, published),
        },
        "input": {
            "name": INPUT_NAME, "output": OUTPUT_NAME, "layout": "NCHW", "dtype": "float32",
            "shape": ["batch" if config.dynamic_batch else config.batch, 3, size, size],
            "mean": list(preprocess.mean), "std": list(preprocess.std), "resize": preprocess.resize,
            "interpolation": preprocess.interpolation,
        },
        "export": {"opset": config.opset, "exporter": "torch.onnx (dynamo)", "simplified": simplified,
                   "dynamic_batch": config.dynamic_batch, "seconds": round(export_seconds, 2), "notes": notes},
        "parity": {ONNX_NAME: {"reference": "pytorch", **parity.as_dict()}},
    }
    if int8_entry:
        updates["int8"] = int8_entry
    elif gate_failure is not None:
        updates["int8"] = {"failed": str(gate_failure), "check_vs_fp32": gate_failure.check.as_dict()}
    write_manifest(folder, updates, files=files, fresh=True)
    if gate_failure is not None:
        raise DeployKitError(f"{gate_failure} The FP32 export passed parity and was written to {folder / ONNX_NAME}; "
                             f"no {INT8_NAME} was written")
    return ExportResult(folder, folder / ONNX_NAME, parity, simplified, export_seconds, notes, int8_entry, checkpoint is None)


def _weights_record(checkpoint: Path | None, published: PublishedWeights | None) -> dict:
    if checkpoint is None:
        return {"path": None, "seed": DEFAULT_SEED, "random": True}
    record = {"path": str(checkpoint), "sha256": sha256_file(checkpoint), "random": False}
    if published:
        record |= {"tag": published.tag, "source": published.source, "url": published.url,
                   "published_top1": published.top1, "published_top5": published.top5}
    return record


def compare_latency(fp32_path: Path, int8_path: Path, shape: tuple[int, ...], runs: int = 50) -> dict:
    """Batch latency of the FP32 and INT8 files on ONNX Runtime CPU, measured back to back in this run."""
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    with OrtRunner(fp32_path) as fp32, OrtRunner(int8_path) as int8:
        fp32_ms = measure_latency(lambda: fp32.infer(x), batch=shape[0], runs=runs, max_seconds=5).p50_ms
        int8_ms = measure_latency(lambda: int8.infer(x), batch=shape[0], runs=runs, max_seconds=5).p50_ms
    return {"batch": shape[0], "fp32_ms": round(fp32_ms, 3), "int8_ms": round(int8_ms, 3), "int8_speedup": round(fp32_ms / int8_ms, 2)}


def _check_batch_consistency(serialized: bytes, inputs: np.ndarray) -> str:
    """A dynamic-batch graph must give the same logits run one image at a time and four at a time."""
    with OrtRunner(serialized) as runner:
        single = run_all(runner, inputs[:4], batch_size=1)
        batched = run_all(runner, inputs[:4], batch_size=4)
    report = compare_logits(single, batched, Tolerances(rel_error=1e-5))
    if not report.passed:
        raise DeployKitError(f"the dynamic-batch ONNX gives different outputs at batch 1 and 4: {report.summary()}")
    return f"dynamic batch verified: batch 1 vs 4 max abs error {report.max_abs_error:.3g}"
