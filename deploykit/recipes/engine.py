"""``deploykit build-engine``: a TensorRT engine from an ONNX file, recorded beside it."""

from __future__ import annotations

from pathlib import Path

from deploykit.export.onnx import load_onnx
from deploykit.export.tensorrt import EngineConfig, build_engine
from deploykit.runtime.trt_engine import EngineBuild


def build_engine_file(onnx_path: Path, engine_path: Path | None, config: EngineConfig) -> EngineBuild:
    """Check the ONNX file, build its engine (beside it by default) and say what built it."""
    load_onnx(onnx_path)
    return build_engine(onnx_path, engine_path or onnx_path.with_suffix(".engine"), config)
