"""Runs a native TensorRT engine (TensorRT 10/11 tensor-address API), with buffers held by PyTorch on the GPU."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploykit.errors import DeployKitError
from deploykit.runtime.trt_engine import check_engine_compatible, import_tensorrt
from deploykit.runtime.base import InputMetadata, Runner


@dataclass(frozen=True)
class TransferTimings:
    """trtexec's split of one inference: host-to-device copy, GPU compute, device-to-host copy (CUDA events, ms)."""

    h2d_ms: float
    compute_ms: float
    d2h_ms: float


class TensorRTRunner(Runner):
    """``data_transfers=False`` (trtexec's --noDataTransfers) keeps the last input on the GPU and skips the output copy-back."""

    def __init__(self, engine_path: str | Path, name: str = "tensorrt", data_transfers: bool = True) -> None:
        super().__init__(name)
        self.engine_path = Path(engine_path)
        self.data_transfers = data_transfers
        self.engine = None
        self.context = None
        self.last_timings: TransferTimings | None = None
        self._device_input = None

    def load_impl(self) -> None:
        import torch

        trt = import_tensorrt()
        check_engine_compatible(self.engine_path)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise DeployKitError(f"TensorRT cannot deserialize {self.engine_path}; rebuild it with `deploykit build-engine`")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self.stream = torch.cuda.Stream()

    def input_metadata(self) -> InputMetadata:
        shape = tuple(None if d == -1 else d for d in self.engine.get_tensor_shape(self.input_name))
        return InputMetadata(self.input_name, shape, np.dtype(np.float32))

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        """Copy in, run and copy out all on the runner's stream, so the engine never reads a half-copied input."""
        import torch

        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        with torch.cuda.stream(self.stream):
            events[0].record(self.stream)
            if self.data_transfers or self._device_input is None or tuple(self._device_input.shape) != batch.shape:
                self._device_input = torch.from_numpy(batch).pin_memory().to("cuda", non_blocking=True)
            events[1].record(self.stream)
            self.context.set_input_shape(self.input_name, tuple(self._device_input.shape))
            output = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=torch.float32, device="cuda")
            self.context.set_tensor_address(self.input_name, self._device_input.data_ptr())
            self.context.set_tensor_address(self.output_name, output.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise DeployKitError(f"TensorRT failed to run {self.engine_path} on a batch of shape {list(batch.shape)}")
            events[2].record(self.stream)
            host = output.to("cpu", non_blocking=True) if self.data_transfers else None
            events[3].record(self.stream)
        self.stream.synchronize()
        self.last_timings = TransferTimings(events[0].elapsed_time(events[1]), events[1].elapsed_time(events[2]),
                                            events[2].elapsed_time(events[3]))
        return host.numpy() if host is not None else np.zeros(tuple(output.shape), np.float32)

    def close_impl(self) -> None:
        self.context = None
        self.engine = None
