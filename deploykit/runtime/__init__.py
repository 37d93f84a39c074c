"""Runners: one protocol (load, infer, close) over PyTorch, ONNX Runtime and the optional backends."""

from deploykit.choices import CPU_RUNTIMES
from deploykit.runtime.base import InputMetadata, Runner
from deploykit.runtime.ort_runner import OrtRunner

__all__ = ["CPU_RUNTIMES", "InputMetadata", "OrtRunner", "Runner", "TorchRunner", "cpu_runner"]


def cpu_runner(path, runtime: str = "ort", **options) -> Runner:
    """A runner for an ONNX file on the CPU with ``runtime`` (a key of CPU_RUNTIMES); OpenVINO is imported on load."""
    if runtime == "openvino":
        from deploykit.runtime.openvino_runner import OpenVinoRunner

        return OpenVinoRunner(path, **options)
    return OrtRunner(path, **options)


def __getattr__(name: str):
    """TorchRunner on first use, so that importing the ONNX side of deploykit does not import torch."""
    if name == "TorchRunner":
        from deploykit.runtime.torch_runner import TorchRunner

        return TorchRunner
    raise AttributeError(f"module 'deploykit.runtime' has no attribute {name!r}")
