"""Runners: one protocol (load, infer, close) over PyTorch, ONNX Runtime and the optional backends."""

from deploykit.runtime.base import InputMetadata, Runner
from deploykit.runtime.ort_runner import OrtRunner
from deploykit.runtime.torch_runner import TorchRunner

__all__ = ["InputMetadata", "OrtRunner", "Runner", "TorchRunner"]
