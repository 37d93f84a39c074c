"""FP32 and INT8 of a few models on every runner available here, batch 1 and 8, in one run.

Writes benchmarks/results/backends_<device>.{json,md,png} in `deploykit report`'s format. CPU rows
always; CUDA rows (torch fp32/fp16, channels_last, CUDA graphs, torch.compile) when a GPU is
visible; TensorRT rows when TensorRT is installed.

    python benchmarks/backends.py [--models resnet18,resnet50,mobilenet_v2] [--batches 1,8] [--runs 30]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
from pathlib import Path

from deploykit.bench.machine import machine_info
from deploykit.bench.report import plot, to_markdown
from deploykit.recipes.bench import run_benchmark
from deploykit.recipes.configs import BenchConfig
from deploykit.errors import DeployKitError


def variants(cuda: bool) -> list[dict]:
    """(engine, device, precision, extras) combinations to run on this machine."""
    rows = [{"engine": "torch", "device": "cpu", "precision": "fp32"}, {"engine": "ort", "device": "cpu", "precision": "fp32"}, {"engine": "ort", "device": "cpu", "precision": "int8"}]
    if importlib.util.find_spec("openvino"):
        rows += [{"engine": "openvino", "device": "cpu", "precision": "fp32"}, {"engine": "openvino", "device": "cpu", "precision": "int8"}]
    if cuda:
        rows += [
            {"engine": "torch", "device": "cuda", "precision": "fp32"},
            {"engine": "torch", "device": "cuda", "precision": "fp16"},
            {"engine": "torch", "device": "cuda", "precision": "fp16", "channels_last": True},
            {"engine": "torch", "device": "cuda", "precision": "fp16", "channels_last": True, "cuda_graphs": True},
            {"engine": "torch", "device": "cuda", "precision": "fp16", "channels_last": True, "compile": True},
        ]
        if importlib.util.find_spec("tensorrt"):
            rows += [{"engine": "trt", "device": "cuda", "precision": "fp16"}, {"engine": "trt", "device": "cuda", "precision": "int8"}]
    return rows


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet18,resnet50,mobilenet_v2")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    batches = tuple(int(b) for b in args.batches.split(","))
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for model in args.models.split(","):
            for variant in variants(cuda):
                extras = {k: v for k, v in variant.items() if k not in ("engine", "device", "precision")}
                config = BenchConfig(**variant, batches=batches, runs=args.runs, warmup=5, out=Path(workdir))
                try:
                    results = run_benchmark(model, config)
                except DeployKitError as exc:
                    skipped.append({"model": model, **variant, "reason": str(exc)})
                    continue
                for row in results:
                    row["variant"] = "+".join(f"{k}" for k in extras) or "default"
                    rows.append(row)
                    print(json.dumps({k: row[k] for k in ("model", "engine", "device", "precision", "variant", "batch", "p50_ms")}), flush=True)
    device = "cuda" if cuda else "cpu"
    machine = machine_info().as_dict()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"backends_{device}.json").write_text(json.dumps({"machine": machine, "results": rows, "skipped": skipped}, indent=2) + "\n")
    header = [
        f"# Backends on {device}",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores" + (f", {machine['gpu']}" if "gpu" in machine else "") + f"; {machine['platform']}",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()),
        "",
        f"Command: `{machine['command']}` ({machine['date']})",
        "",
        f"{args.runs} timed runs after 5 warm-up runs per row; p50/p90/p99 per batch; agreement is top-1 vs the FP32 PyTorch model on 32 held-out photos; seeded random weights.",
        "",
    ]
    notes = [f"- skipped {s['model']} {s['engine']} {s['precision']}: {s['reason']}" for s in skipped]
    (args.out / f"backends_{device}.md").write_text("\n".join(header) + "\n" + to_markdown(rows) + ("\n" + "\n".join(notes) + "\n" if notes else ""))
    plot(rows, args.out / f"backends_{device}.png")
    print(f"wrote {args.out / f'backends_{device}.md'}")


if __name__ == "__main__":
    main()
