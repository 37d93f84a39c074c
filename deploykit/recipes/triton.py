"""``deploykit triton`` (and ``export --triton``): export folders written into a Triton model repository.

Each verified file of a folder becomes one model: ``NAME`` (FP32), ``NAME_fp16``, ``NAME_int8``, on the chosen backend;
each TensorRT engine built beside them becomes ``NAME_trt`` (``model.plan``, tensorrt backend, on the GPU).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.data.preprocess import Preprocess
from deploykit.errors import DeployKitError
from deploykit.manifest import FP16_NAME, INT8_NAME, ONNX_NAME, ExportFolder, Manifest
from deploykit.recipes.configs import TritonConfig
from deploykit.serve.batching import DEFAULT_BATCHING, batching_for, read_bench_rows
from deploykit.serve.repository import StagedModel, model_name, publish_repository
from deploykit.serve.triton_config import Batching, TritonModel, io_specs, preprocess_parameters, schema

_PRECISIONS = ((ONNX_NAME, "fp32"), (FP16_NAME, "fp16"), (INT8_NAME, "int8"))


@dataclass(frozen=True)
class TritonRepository:
    """What was written: the repository and each model's config."""

    repo: Path
    models: list[TritonModel]
    removed: list[str] = field(default_factory=list)  # models these exports no longer make (an INT8 or FP16 file gone)


def check_triton_config(config: TritonConfig) -> None:
    """The schema is importable and the options agree, checked before an export or anything is read."""
    schema()
    if config.backend == "openvino" and config.kind == "gpu":
        raise DeployKitError("Triton's OpenVINO backend runs on the CPU: use --triton-device cpu, or --triton-backend onnxruntime")
    for path in config.bench_results:
        if not Path(path).is_file():
            raise DeployKitError(f"bench result {path} does not exist; write one with `deploykit bench FOLDER --batch 1,8,32 --json FILE`")


def write_triton_repository(folders: list[Path], config: TritonConfig) -> TritonRepository:
    """Every verified file of ``folders`` as a model of ``config.repo``; all configs are validated before any is written."""
    check_triton_config(config)
    rows = read_bench_rows(list(config.bench_results))
    staged = [model for folder in folders for model in _folder_models(ExportFolder(folder), config, rows)]
    removed = publish_repository(config.repo, staged)
    return TritonRepository(config.repo, [model.spec for model in staged], removed)


def _folder_models(folder: ExportFolder, config: TritonConfig, rows: list[dict]) -> list[StagedModel]:
    manifest = folder.read()
    base = model_name(folder.path.resolve().name)
    fix = f"export it again with --dynamic-batch (deploykit export {manifest.model.name} --dynamic-batch ...)"
    models = []
    for file_name, precision in _PRECISIONS:
        if file_name not in manifest.files:
            continue
        path = folder.verified(file_name)
        model_input, output = io_specs(path, fix)
        name = base if precision == "fp32" else f"{base}_{precision}"
        spec = TritonModel(
            name,
            config.backend,
            config.kind,
            precision,
            model_input,
            output,
            batching_for(path, config.backend, rows),
            config.dynamic_batching,
            config.instances,
            _parameters(manifest, precision),
        )
        models.append(StagedModel(spec, path))
    return models + _engine_models(folder, manifest, base, config, fix)


def _engine_models(folder: ExportFolder, manifest: Manifest, base: str, config: TritonConfig, fix: str) -> list[StagedModel]:
    """TensorRT engines built from this folder's files (their ``.engine.json`` names the ONNX file by hash)."""
    by_hash = {entry["sha256"]: name for name, entry in manifest.files.items() if name.endswith(".onnx")}
    engines = sorted(folder.path.glob("model*.engine"))
    models = []
    for engine in engines:
        try:
            record = json.loads(engine.with_name(engine.name + ".json").read_text())
            onnx_name = by_hash[record["onnx_sha256"]]
            opt, largest = int(record["config"]["opt_batch"]), int(record["config"]["max_batch"])
            flags = record["precision"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DeployKitError(f"{engine} has no readable record of the ONNX file it was built from ({exc}); build it again with `deploykit build-engine`") from exc
        model_input, output = io_specs(folder.verified(onnx_name), fix)
        precision = "int8" if flags.get("int8_qdq") else "fp16" if flags.get("fp16") else "fp32"
        batching = Batching(largest, (opt,) if opt > 1 else (), DEFAULT_BATCHING.max_queue_delay_us, f"the engine's optimisation profile ({engine.name})")
        name = f"{base}_trt" if len(engines) == 1 else f"{base}_trt_{model_name(engine.stem)}"
        spec = TritonModel(name, "tensorrt", "gpu", precision, model_input, output, batching, config.dynamic_batching, config.instances, _parameters(manifest, precision))
        models.append(StagedModel(spec, engine))
    return models


def _parameters(manifest: Manifest, precision: str) -> dict[str, str]:
    """What a client needs to send: the preprocessing the manifest records, and what the model is."""
    if manifest.input is None:
        raise DeployKitError("the export's manifest records no input preprocessing; export it again")
    names = {"deploykit.class_names": json.dumps(manifest.model.classes)} if manifest.model.classes else {}
    return {
        "deploykit.model": manifest.model.name,
        "deploykit.precision": precision,
        "deploykit.classes": str(manifest.model.num_classes),
        **names,
        **preprocess_parameters(Preprocess.recorded(manifest.input)),
        "deploykit.layout": manifest.input.layout,
    }
