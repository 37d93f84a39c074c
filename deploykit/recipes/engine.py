"""``deploykit build-engine``: a TensorRT engine from an ONNX file, recorded beside it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploykit.export.onnx import load_onnx
from deploykit.export.tensorrt import EngineConfig, build_engine


@dataclass(frozen=True)
class EngineResult:
    path: Path
    tensorrt: str
    gpu: str
    compute_capability: str


def build_engine_file(onnx_path: Path, engine_path: Path | None, config: EngineConfig) -> EngineResult:
    """Check the ONNX file, build its engine (beside it by default) and say what built it."""
    load_onnx(onnx_path)
    engine_path = engine_path or onnx_path.with_suffix(".engine")
    record = build_engine(onnx_path, engine_path, config)
    return EngineResult(engine_path, str(record["tensorrt"]), str(record["gpu"]), str(record["compute_capability"]))
