"""``deploykit build-engine``'s options, light (no TensorRT import), so that the command line reads their defaults here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EngineConfig:
    """Options of ``deploykit build-engine``; batch sizes form the optimization profile of a dynamic input."""

    fp16: bool = False
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 8
    workspace_gb: float = 4.0
    timing_cache: Path | None = None
