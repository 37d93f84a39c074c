"""Serving on this CPU, in one run: direct onnxruntime against Triton (the tritonserver nvidia-pytriton bundles, its
Python backend running the same file with onnxruntime), without and with dynamic batching, as client concurrency rises.

The real MobileNet-v2 (torchvision's ImageNet weights) exported with ``--dynamic-batch --triton``; requests of one photo
each (the bundled calibration photos); every level a 1 s warm-up then a measured window. Direct onnxruntime is one
session in this process called by as many threads as there are clients, each sending its next request when the last
returns, as the Triton clients do. Also top-1 through the server on the labelled photos against onnxruntime on the file.

    pip install -e ".[test]"
    python benchmarks/serve.py --weights mobilenet_v2-b0353104.pth
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CONCURRENCY = (1, 2, 4, 8, 16)
WINDOW_S = 8.0
WARMUP_S = 1.0
QUEUE_DELAYS_US = (-1, 100, 4000)  # no dynamic batching; the default deploykit writes; half the batch-1 latency


def direct_level(session, inputs: list[np.ndarray], concurrency: int) -> dict:
    """``concurrency`` threads calling one onnxruntime session, measured as ``bench --server`` measures Triton."""
    name = session.get_inputs()[0].name
    latencies, finished = [], []
    started = time.perf_counter()
    measured_from, end = started + WARMUP_S, started + WARMUP_S + WINDOW_S
    lock = threading.Lock()

    def client(index: int) -> None:
        while (sent := time.perf_counter()) < end:
            session.run(None, {name: inputs[index % len(inputs)]})
            now = time.perf_counter()
            with lock:
                finished.append(now)
                if sent >= measured_from:
                    latencies.append(now - sent)
            index += concurrency

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    p50, p90, p99 = np.percentile(np.array(latencies) * 1000, [50, 90, 99])
    done = sum(1 for t in finished if measured_from <= t <= end)
    return {
        "configuration": "direct onnxruntime",
        "concurrency": concurrency,
        "throughput": round(done / WINDOW_S, 2),
        "p50_ms": round(float(p50), 3),
        "p90_ms": round(float(p90), 3),
        "p99_ms": round(float(p99), 3),
    }


def to_markdown(payload: dict) -> str:
    machine = payload["machine"]
    lines = [
        "# Serving on the CPU: direct onnxruntime against Triton",
        "",
        f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, flags {', '.join(machine.get('cpu_flags', []))}; "
        f"{machine['date']}. Command: `python benchmarks/{machine['command']}`.",
        "",
        f"Real MobileNet-v2 FP32, one photo per request, {WARMUP_S:g} s warm-up then {WINDOW_S:g} s measured per level. "
        "Triton: the bundled tritonserver, Python backend running the file with onnxruntime "
        f"({payload['threads']} threads, 1 instance). Queue and compute times are the server's own (statistics endpoint).",
        "",
        "| configuration | clients | img/s | p50 ms | p90 ms | p99 ms | queue ms | compute ms | img/execution | img/s vs direct |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    direct = {row["concurrency"]: row["throughput"] for row in payload["results"] if row["configuration"] == "direct onnxruntime"}
    for row in payload["results"]:
        cells = [
            row["configuration"],
            row["concurrency"],
            row["throughput"],
            row["p50_ms"],
            row["p90_ms"],
            row["p99_ms"],
            row.get("queue_ms", "-"),
            row.get("compute_ms", "-"),
            row.get("images_per_execution", "-"),
            f"{row['throughput'] / direct[row['concurrency']]:.2f}",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    top1 = payload["top1"]
    lines += [
        "",
        f"Top-1 on {top1['images']} labelled photos ({top1['data']}): through Triton {top1['triton']:.1%}, onnxruntime on "
        f"the same file {top1['onnxruntime']:.1%}; logits max abs difference {top1['max_abs_difference']:.3g}.",
        "",
    ]
    return "\n".join(lines)


def draw(payload: dict, path: Path) -> None:
    """Throughput against p99, one curve per configuration, as ``deploykit report`` draws ``bench --server`` results."""
    from deploykit.bench.report import plot

    rows = [{"model": "mobilenet_v2", "engine": "triton", "precision": "fp32", "batch": 1, **row} for row in payload["results"]]
    plot(rows, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--labelled", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "imagenet-sample")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    import onnxruntime as ort

    from deploykit.bench.machine import machine_info
    from deploykit.data import load_labelled_folder
    from deploykit.recipes.configs import ServerBenchConfig
    from deploykit.recipes.serve import measure_server, request_batches, serving
    from deploykit.serve.server import Ports
    from deploykit.serve.client import RemoteModel

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "deploykit",
                "export",
                "mobilenet_v2",
                "--weights",
                str(args.weights.resolve()),
                "--dynamic-batch",
                "--no-timing",
                "--out",
                str(work / "out"),
                "--triton",
                str(work / "repo"),
                "--triton-device",
                "cpu",
            ],
            check=True,
        )
        onnx_path = work / "out" / "mobilenet_v2" / "model.onnx"
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        with serving(work / "repo", Ports.free()) as served:
            model = RemoteModel.fetch(served.url, "mobilenet_v2")
            inputs = request_batches(model, 1)
            results = [direct_level(session, inputs, c) for c in CONCURRENCY]
            run = measure_server(served.url, "mobilenet_v2", ServerBenchConfig(concurrency=CONCURRENCY, duration_s=WINDOW_S, warmup_s=WARMUP_S, queue_delays_us=QUEUE_DELAYS_US))
            results += [level.as_dict() for level in run.levels]
            images, labels, _ = load_labelled_folder(args.labelled, model.preprocess, 1000)
            served_logits = model.infer(images)
            threads = served.threads
        direct_logits = np.concatenate([session.run(None, {"input": images[i : i + 32]})[0] for i in range(0, len(images), 32)])
    top1 = {
        "data": str(args.labelled),
        "images": len(labels),
        "triton": float(np.mean(served_logits.argmax(1) == labels)),
        "onnxruntime": float(np.mean(direct_logits.argmax(1) == labels)),
        "max_abs_difference": float(np.abs(served_logits - direct_logits).max()),
    }
    payload = {"machine": machine_info().as_dict(), "threads": threads, "results": results, "top1": top1}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.out / "serve.md").write_text(to_markdown(payload))
    draw(payload, args.out / "serve.png")
    print((args.out / "serve.md").read_text())


if __name__ == "__main__":
    main()
