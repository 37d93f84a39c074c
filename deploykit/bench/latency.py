"""Latency measurement: warm-up, then timed runs; p50/p90/p99 and throughput."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from collections.abc import Callable

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

    @classmethod
    def of(cls, seconds: list[float], batch: int, warmup: int, runs: int, throughput: float) -> LatencyStats:
        """The statistics of per-call ``seconds``: ``runs`` calls, ``throughput`` samples per second."""
        ms = np.asarray(seconds) * 1e3
        return cls(
            batch=batch,
            runs=runs,
            warmup=warmup,
            mean_ms=float(ms.mean()),
            p50_ms=float(np.percentile(ms, 50)),
            p90_ms=float(np.percentile(ms, 90)),
            p99_ms=float(np.percentile(ms, 99)),
            min_ms=float(ms.min()),
            throughput=throughput,
        )

    def as_dict(self) -> dict:
        return asdict(self)


def measure_latency(
    call: Callable[[], object],
    batch: int = 1,
    warmup: int = 5,
    runs: int = 50,
    max_seconds: float | None = None,
    min_runs: int = 5,
    warmup_seconds: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> LatencyStats:
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
    return LatencyStats.of(times, batch, warmup, len(times), float(batch * 1e3 / ms.mean()))
