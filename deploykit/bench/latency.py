"""Latency measurement: warm-up, then timed runs; p50/p90/p99 and throughput."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per call; ``throughput`` is samples per second at the measured batch size."""

    batch: int
    runs: int
    warmup: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    throughput: float

    def as_dict(self) -> dict:
        return asdict(self)


def measure_latency(call: Callable[[], object], batch: int = 1, warmup: int = 5, runs: int = 50,
                    max_seconds: float | None = None, min_runs: int = 5, warmup_seconds: float | None = None,
                    clock: Callable[[], float] = time.perf_counter) -> LatencyStats:
    """Time ``call`` after ``warmup`` untimed calls (or untimed calls for ``warmup_seconds``), in seconds of ``clock``.

    Stops after ``runs`` timed calls, or earlier once ``max_seconds`` have passed and at least
    ``min_runs`` calls were timed (so slow models finish in bounded time).
    """
    warm_until = clock() + warmup_seconds if warmup_seconds else None
    done = 0
    while (warm_until is not None and clock() < warm_until) or (warm_until is None and done < warmup):
        call()
        done += 1
    warmup = done
    times = []
    started = clock()
    while len(times) < runs:
        begin = clock()
        call()
        times.append(clock() - begin)
        if max_seconds is not None and len(times) >= min_runs and clock() - started > max_seconds:
            break
    ms = np.asarray(times) * 1e3
    return LatencyStats(
        batch=batch, runs=len(ms), warmup=warmup, mean_ms=float(ms.mean()),
        p50_ms=float(np.percentile(ms, 50)), p90_ms=float(np.percentile(ms, 90)), p99_ms=float(np.percentile(ms, 99)),
        min_ms=float(ms.min()), throughput=float(batch * 1e3 / ms.mean()),
    )


@dataclass(frozen=True)
class LatencyComparison:
    """FP32 and INT8 batch latency on ONNX Runtime CPU, measured back to back in one run."""

    batch: int
    fp32_ms: float
    int8_ms: float

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.int8_ms

    def as_dict(self) -> dict:
        return {"batch": self.batch, "fp32_ms": round(self.fp32_ms, 3), "int8_ms": round(self.int8_ms, 3),
                "int8_speedup": round(self.speedup, 2)}



def compare_latency(fp32_path: Path, int8_path: Path, shape: tuple[int, ...], runs: int = 50) -> LatencyComparison:
    """Batch latency of the FP32 and INT8 files on ONNX Runtime CPU, measured back to back in this run."""
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    from deploykit.runtime.ort_runner import OrtRunner

    with OrtRunner(fp32_path) as fp32, OrtRunner(int8_path) as int8:
        fp32_ms = measure_latency(lambda: fp32.infer(x), batch=shape[0], runs=runs, max_seconds=5).p50_ms
        int8_ms = measure_latency(lambda: int8.infer(x), batch=shape[0], runs=runs, max_seconds=5).p50_ms
    return LatencyComparison(shape[0], fp32_ms, int8_ms)
