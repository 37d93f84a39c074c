"""The Runner protocol every backend implements: load, infer a numpy batch to logits, close.

Public methods check state and validate inputs once, then call the backend's ``*_impl``; every
runner is a context manager. Backends import their heavy libraries lazily, inside ``load_impl``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from deploykit.errors import DeployKitError


@dataclass(frozen=True)
class InputMetadata:
    """Name, shape (None for a dynamic dimension) and dtype of a runner's single input."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    def check(self, batch: np.ndarray, runner: str) -> None:
        if batch.dtype != self.dtype and not (batch.dtype == np.float32 and self.dtype == np.float16):
            raise DeployKitError(f"{runner} expects {self.dtype} input, got {batch.dtype}")
        if len(batch.shape) != len(self.shape) or any(want is not None and want != got for want, got in zip(self.shape, batch.shape)):
            wanted = "x".join("N" if d is None else str(d) for d in self.shape)
            raise DeployKitError(f"{runner} expects input of shape {wanted}, got {'x'.join(map(str, batch.shape))}")


class Runner(ABC):
    """Base class of every backend runner."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.is_loaded = False

    def load(self) -> Runner:
        if not self.is_loaded:
            self.load_impl()
            self.is_loaded = True
        return self

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one float32 NCHW batch and return the logits as a numpy array."""
        if not self.is_loaded:
            raise RuntimeError(f"runner {self.name} used before load()")
        metadata = self.input_metadata()
        metadata.check(batch, self.name)
        logits = self.infer_impl(batch.astype(metadata.dtype, copy=False))  # float16 models take a cast batch
        if logits.ndim != 2 or len(logits) != len(batch):
            raise DeployKitError(f"{self.name} outputs shape {list(logits.shape)} for a batch of {len(batch)}, not [N, classes] logits; deploykit runs image classifiers")
        return logits if logits.dtype == np.float32 else logits.astype(np.float32)

    def close(self) -> None:
        if self.is_loaded:
            self.close_impl()
            self.is_loaded = False

    def __enter__(self) -> Runner:
        return self.load()

    def __exit__(self, *exc_info) -> None:
        self.close()

    @abstractmethod
    def load_impl(self) -> None: ...

    @abstractmethod
    def infer_impl(self, batch: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def close_impl(self) -> None: ...

    @abstractmethod
    def input_metadata(self) -> InputMetadata: ...


def padded_batches(inputs: np.ndarray, size: int) -> Iterator[tuple[np.ndarray, int]]:
    """Yield (batch, real count): batches of exactly ``size``, the last padded with repeated inputs."""
    for start in range(0, len(inputs), size):
        chunk = inputs[start : start + size]
        yield (chunk[np.arange(size) % len(chunk)] if len(chunk) < size else chunk), len(chunk)
