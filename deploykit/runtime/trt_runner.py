"""Runs a native TensorRT engine (TensorRT 10/11 tensor-address API), with buffers held by PyTorch on the GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploykit.errors import DeployKitError
from deploykit.runtime.trt_engine import check_engine_compatible, import_tensorrt
from deploykit.runtime.base import InputMetadata, Runner


class TensorRTRunner(Runner):
    def __init__(self, engine_path: str | Path, name: str = "tensorrt") -> None:
        super().__init__(name)
        self.engine_path = Path(engine_path)
        self.engine = None
        self.context = None

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
        import torch

        inputs = torch.from_numpy(batch).cuda()
        self.context.set_input_shape(self.input_name, tuple(inputs.shape))
        output = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(self.input_name, inputs.data_ptr())
        self.context.set_tensor_address(self.output_name, output.data_ptr())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise DeployKitError(f"TensorRT failed to run {self.engine_path} on a batch of shape {list(batch.shape)}")
        self.stream.synchronize()
        return output.cpu().numpy()

    def close_impl(self) -> None:
        self.context = None
        self.engine = None
