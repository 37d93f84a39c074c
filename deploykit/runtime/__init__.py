"""Runners: one protocol (load, infer, close) over PyTorch, ONNX Runtime and the optional backends."""

from deploykit.runtime.base import InputMetadata, Runner
from deploykit.runtime.ort_runner import OrtRunner

__all__ = ["InputMetadata", "OrtRunner", "Runner", "TorchRunner"]


def __getattr__(name: str):
    """TorchRunner on first use, so that importing the ONNX side of deploykit does not import torch."""
    if name == "TorchRunner":
        from deploykit.runtime.torch_runner import TorchRunner

        return TorchRunner
    raise AttributeError(f"module 'deploykit.runtime' has no attribute {name!r}")
