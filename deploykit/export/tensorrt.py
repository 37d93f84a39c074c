"""ONNX to a TensorRT engine, written against the TensorRT 10 and 11 Python APIs.

INT8 is explicit quantization only: the engine is built from deploykit's Q/DQ ONNX (TensorRT 10
deprecated and 11 removed implicit calibrators). TensorRT 11 networks are strongly typed, so FP16
there comes from an FP16 ONNX, not a builder flag. Engines are tied to the TensorRT version and
GPU that built them; ``engine.json`` beside the engine records both, and the runner refuses an
engine built elsewhere.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from deploykit.errors import DeployKitError
from deploykit.export.engine_config import EngineConfig
from deploykit.io import atomic_write_bytes, atomic_write_json, sha256_file
from deploykit.runtime.trt_engine import EngineBuild, dims, engine_info_path, gpu_identity, precision_flags, require_tensorrt

if TYPE_CHECKING:
    import tensorrt as trt


def build_engine(onnx_path: Path, engine_path: Path, config: EngineConfig) -> EngineBuild:
    """Build and write ``engine_path`` plus its ``.json`` record; returns that record."""
    version = require_tensorrt()
    import tensorrt as trt

    identity = gpu_identity()
    if not 1 <= config.min_batch <= config.opt_batch <= config.max_batch:
        raise DeployKitError(f"batch profile must satisfy 1 <= min <= opt <= max, got {config.min_batch}/{config.opt_batch}/{config.max_batch}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DeployKitError(f"TensorRT cannot parse {onnx_path}: {errors[:300]}")
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(config.workspace_gb * (1 << 30)))
    has_qdq = any(network.get_layer(i).type == trt.LayerType.QUANTIZE for i in range(network.num_layers))
    flags = precision_flags(version, config.fp16, has_qdq)  # TensorRT 11 has neither flag: never reached there
    if flags.fp16:
        builder_config.set_flag(trt.BuilderFlag.FP16)
    if flags.int8:
        builder_config.set_flag(trt.BuilderFlag.INT8)
    profiles = _add_profile(builder, network, builder_config, config)
    cache = _load_timing_cache(builder_config, config.timing_cache)
    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise DeployKitError(f"TensorRT could not build an engine from {onnx_path}; see the TensorRT log above")
    atomic_write_bytes(engine_path, bytes(serialized))
    if config.timing_cache is not None:
        atomic_write_bytes(config.timing_cache, bytes(cache.serialize()))
    built = EngineBuild(
        Path(engine_path),
        version,
        identity,
        str(onnx_path),
        sha256_file(Path(onnx_path)),
        sha256_file(engine_path),
        config.fp16,
        has_qdq,
        profiles,
        {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
    )
    atomic_write_json(engine_info_path(engine_path), built.as_dict())
    return built


def _add_profile(builder: trt.Builder, network: trt.INetworkDefinition, builder_config: trt.IBuilderConfig, config: EngineConfig) -> dict[str, dict[str, list[int]]]:
    import tensorrt as trt

    profiles = {}
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        shape = dims(tensor.shape)
        if shape[0] != -1:
            continue
        rest = shape[1:]
        shapes = [[batch, *rest] for batch in (config.min_batch, config.opt_batch, config.max_batch)]
        profile.set_shape(tensor.name, *(trt.Dims(list(s)) for s in shapes))
        profiles[tensor.name] = {"min": shapes[0], "opt": shapes[1], "max": shapes[2]}
    if profiles:
        builder_config.add_optimization_profile(profile)
    return profiles


def _load_timing_cache(builder_config: trt.IBuilderConfig, path: Path | None) -> trt.ITimingCache:
    data = Path(path).read_bytes() if path is not None and Path(path).is_file() else b""
    cache = builder_config.create_timing_cache(data)
    builder_config.set_timing_cache(cache, ignore_mismatch=False)
    return cache
