"""``max_batch_size`` and the dynamic batcher's settings for a model: from what ``deploykit bench`` measured on its file
where a result is given, else Triton's usual starting point.

From a bench result: the largest batch is the smallest one whose throughput is within ``SATURATION`` of the best
(beyond it a bigger batch only adds latency), preferred alone; the queue delay is half the batch-1 latency, so that at low
load a request waits at most half of what it then costs. ``deploykit bench --server`` measures whether that was right.
"""

from __future__ import annotations

from pathlib import Path

from deploykit.errors import DeployKitError
from deploykit.serve.triton_config import MAX_BATCH_SIZE, Batching

DEFAULT_BATCHING = Batching(max_batch_size=32, preferred=(), max_queue_delay_us=100, source="defaults")
SATURATION = 0.95
MIN_DELAY_US, MAX_DELAY_US = 50, 20_000
_BENCH_ENGINES = {"onnxruntime": "ort", "openvino": "openvino", "tensorrt": "trt"}


def read_bench_rows(paths: list[Path]) -> list[dict]:
    """The rows of ``deploykit bench --json`` files, checked as ``deploykit report`` checks them."""
    from deploykit.bench.report import load_results

    return load_results(paths) if paths else []


def batching_for(file: Path, backend: str, rows: list[dict]) -> Batching:
    """Batching for ``file`` served by ``backend``: from the rows that timed this file on that runtime (one request at a
    time), else the defaults."""
    engine = _BENCH_ENGINES[backend]
    mine = {row["batch"]: row for row in rows
            if row.get("file") and Path(row["file"]).resolve() == file.resolve() and row["engine"] == engine
            and row.get("streams", 1) == 1}
    if len(mine) < 2 or 1 not in mine:
        return DEFAULT_BATCHING
    best = max(row["throughput"] for row in mine.values())
    largest = min(batch for batch, row in mine.items() if row["throughput"] >= SATURATION * best)
    if largest > MAX_BATCH_SIZE:
        raise DeployKitError(f"bench measured {file} best at batch {largest}, above Triton's limit here of {MAX_BATCH_SIZE}")
    delay = round(mine[1]["p50_ms"] * 1000 / 2)
    source = f"bench ({engine} on {mine[1].get('device', 'cpu')}, batches {','.join(map(str, sorted(mine)))})"
    preferred = (largest,) if largest > 1 else ()
    return Batching(largest, preferred, min(max(delay, MIN_DELAY_US), MAX_DELAY_US), source)

