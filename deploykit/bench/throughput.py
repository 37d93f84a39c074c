"""Throughput with several inference streams: images per second when requests run in parallel, one stream per core.

OpenVINO compiles the model with its THROUGHPUT hint and that many streams and keeps them busy with
an asynchronous request queue; onnxruntime runs that many sessions side by side, each with its
share of the cores, from as many threads (it releases the GIL while it computes). Latency here is
per request, measured while the others run.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from deploykit.bench.latency import LatencyStats
from deploykit.errors import DeployKitError


def stream_throughput(path: Path, runtime: str, x: np.ndarray, streams: int, requests: int, warmup: int = 2) -> LatencyStats:
    """Run ``requests`` batches ``x`` through ``path`` on ``runtime`` (ort or openvino), ``streams`` at a time: per-request
    latency, and throughput in images per second of wall time."""
    if streams < 1 or requests < streams:
        raise DeployKitError(f"--streams {streams} needs at least one stream and as many timed runs (--runs) as streams")
    if runtime == "openvino":
        return _openvino(path, x, streams, requests, warmup)
    if runtime == "ort":
        return _onnxruntime(path, x, streams, requests, warmup)
    raise DeployKitError(f"--streams runs on ort or openvino, not {runtime}")


def _openvino(path: Path, x: np.ndarray, streams: int, requests: int, warmup: int) -> LatencyStats:
    from deploykit.runtime.openvino_runner import compiled_on, import_openvino

    ov = import_openvino()
    with compiled_on(path, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams, "INFERENCE_PRECISION_HINT": "f32"}) as compiled:
        queue = ov.AsyncInferQueue(compiled, streams)
        started: dict[int, float] = {}
        latencies: list[float] = []

        def done(request, index: int) -> None:
            latencies.append(time.perf_counter() - started[index])

        queue.set_callback(done)
        for index in range(warmup * streams):
            started[index] = time.perf_counter()
            queue.start_async({0: x}, index)
        queue.wait_all()
        latencies.clear()
        begin = time.perf_counter()
        for index in range(requests):
            started[index] = time.perf_counter()
            queue.start_async({0: x}, index)
        queue.wait_all()
        elapsed = time.perf_counter() - begin
        del queue
    return _stats(len(x), requests, warmup * streams, elapsed, latencies)


def _onnxruntime(path: Path, x: np.ndarray, streams: int, requests: int, warmup: int) -> LatencyStats:
    from deploykit.runtime.ort_runner import OrtRunner

    threads = max(1, (os.cpu_count() or 1) // streams)
    runners = [OrtRunner(path, threads=threads) for _ in range(streams)]
    for runner in runners:
        runner.load()
    shares = [requests // streams + (i < requests % streams) for i in range(streams)]

    def work(runner, count: int) -> list[float]:
        times = []
        for _ in range(count):
            start = time.perf_counter()
            runner.infer(x)
            times.append(time.perf_counter() - start)
        return times

    try:
        with ThreadPoolExecutor(streams) as pool:
            list(pool.map(work, runners, [warmup] * streams))
            begin = time.perf_counter()
            per_stream = list(pool.map(work, runners, shares))
            seconds = time.perf_counter() - begin
    finally:
        for runner in runners:
            runner.close()
    return _stats(len(x), requests, warmup * streams, seconds, [t for times in per_stream for t in times])


def _stats(batch: int, requests: int, warmup: int, seconds: float, latencies: list[float]) -> LatencyStats:
    ms = np.asarray(latencies) * 1e3
    return LatencyStats(batch=batch, runs=requests, warmup=warmup, mean_ms=float(ms.mean()), p50_ms=float(np.percentile(ms, 50)),
                        p90_ms=float(np.percentile(ms, 90)), p99_ms=float(np.percentile(ms, 99)), min_ms=float(ms.min()),
                        throughput=float(batch * requests / seconds))
