"""``max_batch_size`` and the dynamic batcher's settings for a model: from what ``deploykit bench`` measured on its file
where a result is given, else Triton's usual starting point.

From a bench result, the largest batch is the smallest one whose throughput is within ``SATURATION`` of the best (beyond
it a bigger batch only adds latency), and it is preferred. The queue delay stays at 100 us: ``benchmarks/serve.py``
measured a delay of half the batch-1 latency (4 ms) slower than 100 us at every concurrency on a 2-core CPU, since
requests that arrive during an execution are merged anyway; ``deploykit bench --server --queue-delay`` measures it on
the real server.
"""

from __future__ import annotations

from pathlib import Path

from deploykit.errors import DeployKitError
from deploykit.serve.triton_config import MAX_BATCH_SIZE, Batching

DEFAULT_BATCHING = Batching(max_batch_size=32, preferred=(), max_queue_delay_us=100, source="defaults")
SATURATION = 0.95
_BENCH_ENGINES = {"onnxruntime": "ort", "openvino": "openvino", "tensorrt": "trt"}


def read_bench_rows(paths: list[Path]) -> list[dict]:
    """The rows of ``deploykit bench --json`` files, checked as ``deploykit report`` checks them."""
    from deploykit.bench.report import load_results

    return load_results(paths) if paths else []


def batching_for(file: Path, backend: str, rows: list[dict]) -> Batching:
    """Batching for ``file`` served by ``backend``: from the rows that timed this file on that runtime (one request at a
    time, at two batch sizes or more), else the defaults."""
    engine = _BENCH_ENGINES[backend]
    mine = {row["batch"]: row for row in rows if row.get("file") and Path(row["file"]).resolve() == file.resolve() and row["engine"] == engine and row.get("streams", 1) == 1}
    if len(mine) < 2:
        return DEFAULT_BATCHING
    best = max(row["throughput"] for row in mine.values())
    largest = min(batch for batch, row in mine.items() if row["throughput"] >= SATURATION * best)
    if largest > MAX_BATCH_SIZE:
        raise DeployKitError(f"bench measured {file} best at batch {largest}, above Triton's limit here of {MAX_BATCH_SIZE}")
    device = next(iter(mine.values())).get("device", "cpu")
    source = f"bench ({engine} on {device}, batches {','.join(map(str, sorted(mine)))})"
    return Batching(largest, (largest,) if largest > 1 else (), DEFAULT_BATCHING.max_queue_delay_us, source)
