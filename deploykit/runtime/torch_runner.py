"""Runs a PyTorch nn.Module in eval mode: CPU or CUDA, fp32 or fp16, optionally channels_last,
torch.compile, or a captured CUDA graph (static batch shape, replayed without launch overhead)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deploykit.errors import DeployKitError
from deploykit.runtime.availability import require_torch_cuda
from deploykit.runtime.base import InputMetadata, Runner

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}


class TorchRunner(Runner):
    def __init__(
        self,
        model: nn.Module,
        input_shape: tuple[int, int, int],
        device: str = "cpu",
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        cuda_graphs: bool = False,
        name: str = "torch",
    ) -> None:
        super().__init__(name)
        if precision not in PRECISIONS:
            raise DeployKitError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        if device == "cpu" and (precision == "fp16" or cuda_graphs):
            raise DeployKitError("fp16 and CUDA graphs need --device cuda")
        self.model = model
        self.input_shape = tuple(input_shape)
        self.device = torch.device(device)
        self.dtype = PRECISIONS[precision]
        self.channels_last = channels_last
        self.compile = compile
        self.cuda_graphs = cuda_graphs
        self.forward = None
        self.graphs: dict[tuple[int, ...], tuple] = {}

    def load_impl(self) -> None:
        if self.device.type == "cuda":
            require_torch_cuda()
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = self.model.eval().to(self.device, dtype=self.dtype, memory_format=memory_format)
        self.forward = torch.compile(self.model) if self.compile else self.model

    def input_metadata(self) -> InputMetadata:
        return InputMetadata("input", (None, *self.input_shape), np.dtype(np.float32))

    def _prepare(self, batch: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(batch).to(self.device, dtype=self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            if self.cuda_graphs:
                return self._replay(batch)
            out = self.forward(self._prepare(batch))
            if not isinstance(out, torch.Tensor):
                raise DeployKitError(f"{self.name} returned a {type(out).__name__}, not a logits tensor; make the model return its logits alone (for example out[0] or out['logits'])")
            return out.float().cpu().numpy()

    def _replay(self, batch: np.ndarray) -> np.ndarray:
        """Capture one CUDA graph per batch shape (after a warm-up on a side stream), then replay it."""
        if batch.shape not in self.graphs:
            static_input = self._prepare(batch)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self.forward(static_input)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_output = self.forward(static_input)
            self.graphs[batch.shape] = (graph, static_input, static_output)
        graph, static_input, static_output = self.graphs[batch.shape]
        static_input.copy_(self._prepare(batch))
        graph.replay()
        return static_output.float().cpu().numpy()

    def close_impl(self) -> None:
        self.graphs.clear()
        self.forward = None
