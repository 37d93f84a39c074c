"""Throughput with several inference streams: images per second when requests run in parallel, one stream per core.

OpenVINO compiles the model with its THROUGHPUT hint and that many streams and keeps them busy with
one infer request per stream; onnxruntime runs that many sessions side by side, each with its share
of the cores; both from as many threads (each runtime releases the GIL while it computes). Latency here is
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
    """One compiled model with that many streams, and one infer request per stream, each run from its own thread.

    Synchronous requests from threads rather than an AsyncInferQueue with a Python callback: OpenVINO's executor
    threads then never wait for the GIL, so releasing the compiled model cannot deadlock on joining one of them."""
    from deploykit.runtime.openvino_runner import compiled_on

    config = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams, "INFERENCE_PRECISION_HINT": "f32"}
    with compiled_on(path, "CPU", config) as compiled:
        requests_ = [compiled.create_infer_request() for _ in range(streams)]
        try:
            seconds, latencies = _in_parallel([lambda r=r: r.infer({0: x}) for r in requests_], requests, warmup)
        finally:
            del requests_
        del compiled
    return _stats(len(x), requests, warmup * streams, seconds, latencies)


def _onnxruntime(path: Path, x: np.ndarray, streams: int, requests: int, warmup: int) -> LatencyStats:
    from deploykit.runtime.ort_runner import OrtRunner

    threads = max(1, (os.cpu_count() or 1) // streams)
    runners = [OrtRunner(path, threads=threads) for _ in range(streams)]
    try:
        for runner in runners:
            runner.load()
        seconds, latencies = _in_parallel([lambda r=runner: r.infer(x) for runner in runners], requests, warmup)
    finally:
        for runner in runners:
            runner.close()
    return _stats(len(x), requests, warmup * streams, seconds, latencies)


def _in_parallel(calls: list, requests: int, warmup: int) -> tuple[float, list[float]]:
    """Each call run from a thread of its own (both runtimes release the GIL while they compute): ``warmup`` runs each,
    then ``requests`` shared among them; the wall time of those and each one's latency."""
    shares = [requests // len(calls) + (i < requests % len(calls)) for i in range(len(calls))]

    def work(call, count: int) -> list[float]:
        times = []
        for _ in range(count):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return times

    with ThreadPoolExecutor(len(calls)) as pool:
        list(pool.map(work, calls, [warmup] * len(calls)))
        begin = time.perf_counter()
        per_call = list(pool.map(work, calls, shares))
        seconds = time.perf_counter() - begin
    return seconds, [t for times in per_call for t in times]


def _stats(batch: int, requests: int, warmup: int, seconds: float, latencies: list[float]) -> LatencyStats:
    return LatencyStats.of(latencies, batch, warmup, requests, float(batch * requests / seconds))
