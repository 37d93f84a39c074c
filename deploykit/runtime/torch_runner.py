"""Runs a PyTorch nn.Module in eval mode."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deploykit.runtime.base import InputMetadata, Runner


class TorchRunner(Runner):
    def __init__(self, model: nn.Module, input_shape: tuple[int, int, int], device: str = "cpu", name: str = "torch") -> None:
        super().__init__(name)
        self.model = model
        self.input_shape = tuple(input_shape)
        self.device = torch.device(device)

    def load_impl(self) -> None:
        self.model.eval().to(self.device)

    def input_metadata(self) -> InputMetadata:
        return InputMetadata("input", (None, *self.input_shape), np.dtype(np.float32))

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()

    def close_impl(self) -> None:
        pass
