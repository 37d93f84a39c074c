"""Runs a native TensorRT engine (TensorRT 10/11 tensor-address API), with buffers held by PyTorch on the GPU."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deploykit.errors import DeployKitError
from deploykit.runtime.trt_engine import check_engine_compatible, dims, require_tensorrt
from deploykit.runtime.base import InputMetadata, Runner

if TYPE_CHECKING:  # imported for real only when a runner loads (both need a GPU machine)
    import tensorrt as trt
    import torch


@dataclass(frozen=True)
class TransferTimings:
    """trtexec's split of one inference: host-to-device copy, GPU compute, device-to-host copy (CUDA events, ms)."""

    h2d_ms: float
    compute_ms: float
    d2h_ms: float


@dataclass
class _Loaded:
    """What ``load`` creates: the engine, its context and I/O names, and the stream everything runs on."""

    engine: trt.ICudaEngine
    context: trt.IExecutionContext
    input_name: str
    output_name: str
    stream: torch.cuda.Stream


class TensorRTRunner(Runner):
    """``data_transfers=False`` (trtexec's --noDataTransfers) keeps the last input on the GPU and skips the output copy-back."""

    def __init__(self, engine_path: str | Path, name: str = "tensorrt", data_transfers: bool = True) -> None:
        super().__init__(name)
        self.engine_path = Path(engine_path)
        self.data_transfers = data_transfers
        self.last_timings: TransferTimings | None = None
        self._loaded: _Loaded | None = None
        self._device_input: torch.Tensor | None = None

    def load_impl(self) -> None:
        require_tensorrt()
        import tensorrt as trt
        import torch

        check_engine_compatible(self.engine_path)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if engine is None:
            raise DeployKitError(f"TensorRT cannot deserialize {self.engine_path}; rebuild it with `deploykit build-engine`")
        context = engine.create_execution_context()
        if context is None:
            raise DeployKitError(f"TensorRT cannot create an execution context for {self.engine_path} (GPU memory?)")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise DeployKitError(f"{self.engine_path} has {len(inputs)} inputs and {len(outputs)} outputs; a classifier has one of each")
        self._loaded = _Loaded(engine, context, inputs[0], outputs[0], torch.cuda.Stream())

    def _state(self) -> _Loaded:
        if self._loaded is None:
            raise RuntimeError(f"{self.name} runner used before load()")
        return self._loaded

    def input_metadata(self) -> InputMetadata:
        state = self._state()
        shape = tuple(None if d == -1 else d for d in dims(state.engine.get_tensor_shape(state.input_name)))
        return InputMetadata(state.input_name, shape, np.dtype(np.float32))

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        """Copy in, run and copy out all on the runner's stream, so the engine never reads a half-copied input."""
        import torch

        import tensorrt as trt

        state = self._state()
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        with torch.cuda.stream(state.stream):
            events[0].record(state.stream)
            device_input = self._device_input
            if self.data_transfers or device_input is None or tuple(device_input.shape) != batch.shape:
                device_input = torch.from_numpy(batch).pin_memory().to("cuda", non_blocking=True)
                self._device_input = device_input
            events[1].record(state.stream)
            state.context.set_input_shape(state.input_name, trt.Dims(list(device_input.shape)))
            output = torch.empty(dims(state.context.get_tensor_shape(state.output_name)), dtype=torch.float32, device="cuda")
            state.context.set_tensor_address(state.input_name, device_input.data_ptr())
            state.context.set_tensor_address(state.output_name, output.data_ptr())
            if not state.context.execute_async_v3(state.stream.cuda_stream):
                raise DeployKitError(f"TensorRT failed to run {self.engine_path} on a batch of shape {list(batch.shape)}")
            events[2].record(state.stream)
            host = output.to("cpu", non_blocking=True) if self.data_transfers else None
            events[3].record(state.stream)
        state.stream.synchronize()
        self.last_timings = TransferTimings(events[0].elapsed_time(events[1]), events[1].elapsed_time(events[2]), events[2].elapsed_time(events[3]))
        return host.numpy() if host is not None else np.zeros(tuple(output.shape), np.float32)

    def close_impl(self) -> None:
        self._loaded = None
        self._device_input = None
