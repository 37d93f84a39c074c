"""Runs an ONNX file (FP32 or Q/DQ INT8) with OpenVINO on the CPU: what Intel CPU and edge users deploy with."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploykit.errors import DeployKitError, first_line
from deploykit.runtime.base import InputMetadata, Runner


def import_openvino():
    try:
        import openvino
    except ImportError as exc:
        raise DeployKitError("OpenVINO is not installed; install it with: pip install 'deploykit[openvino]'") from exc
    return openvino


class OpenVinoRunner(Runner):
    """``hint`` is OpenVINO's PERFORMANCE_HINT: LATENCY (batch 1 serving) or THROUGHPUT.

    ``precision`` is the INFERENCE_PRECISION_HINT for float layers: f32 by default, since OpenVINO
    otherwise runs them in bf16 on CPUs that have it and FP32 parity would be lost silently.
    """

    def __init__(self, path: str | Path, device: str = "CPU", threads: int | None = None, hint: str = "LATENCY",
                 precision: str = "f32", name: str = "openvino") -> None:
        super().__init__(name)
        self.precision = precision
        self.path = Path(path)
        self.device = device
        self.threads = threads
        self.hint = hint
        self.compiled = None
        self.request = None

    def load_impl(self) -> None:
        ov = import_openvino()
        if not self.path.is_file():
            raise DeployKitError(f"model file {self.path} does not exist")
        core = ov.Core()
        config = {"PERFORMANCE_HINT": self.hint, "INFERENCE_PRECISION_HINT": self.precision}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            self.compiled = core.compile_model(core.read_model(str(self.path)), self.device, config)
        except RuntimeError as exc:
            raise DeployKitError(f"OpenVINO cannot load {self.path} on {self.device}: {first_line(exc)}") from exc
        self.request = self.compiled.create_infer_request()

    def input_metadata(self) -> InputMetadata:
        port = self.compiled.input(0)
        shape = tuple(None if dim.is_dynamic else dim.get_length() for dim in port.get_partial_shape())
        return InputMetadata(port.get_any_name(), shape, np.dtype(np.float32))

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        return self.request.infer({0: batch})[self.compiled.output(0)].copy()

    def close_impl(self) -> None:
        self.request = None
        self.compiled = None
