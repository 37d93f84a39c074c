"""Export every registered model to ONNX at its default input size and measure it.

For each model: export seconds, ONNX size, parity vs PyTorch (max abs error over the logit range,
top-1 agreement), and batch-1 latency of PyTorch eager vs ONNX Runtime CPU, measured one after the
other in the same run, so their ratio is meaningful on a noisy shared machine.

    python benchmarks/export_parity.py [--models 'resnet*'] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from deploykit.bench.latency import measure_latency
from deploykit.bench.machine import machine_info
from deploykit.errors import DeployKitError
from deploykit.models import get_spec, list_models
from deploykit.recipes.export import export
from deploykit.recipes.configs import ExportConfig
from deploykit.runtime import OrtRunner, TorchRunner
from deploykit.recipes.ref import build_model


def bench_model(name: str, workdir: Path, max_seconds: float) -> dict:
    spec = get_spec(name)
    result = export(ExportConfig(name, out=workdir))
    x = np.random.default_rng(0).standard_normal((1, *spec.input_shape), dtype=np.float32)
    with TorchRunner(build_model(name), spec.input_shape) as torch_runner, OrtRunner(result.onnx_path) as ort_runner:
        torch_ms = measure_latency(lambda: torch_runner.infer(x), runs=30, max_seconds=max_seconds).p50_ms
        ort_ms = measure_latency(lambda: ort_runner.infer(x), runs=30, max_seconds=max_seconds).p50_ms
    row = {
        "model": name,
        "input": spec.input_size,
        "export_s": round(result.export_seconds, 2),
        "onnx_mb": round(result.onnx_path.stat().st_size / 1e6, 2),
        "simplified": result.simplified,
        "rel_error": result.parity.rel_error,
        "max_abs_error": result.parity.max_abs_error,
        "top1_agreement": result.parity.top1_agreement,
        "parity": "pass" if result.parity.passed else "FAIL",
        "torch_p50_ms": round(torch_ms, 2),
        "ort_p50_ms": round(ort_ms, 2),
        "ort_speedup": round(torch_ms / ort_ms, 2),
    }
    for path in result.folder.iterdir():
        path.unlink()
    return row


def to_markdown(machine: dict, rows: list[dict]) -> str:
    lines = [
        "# Export and parity, every registered model",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; {machine['platform']}",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()),
        "",
        f"Command: `{machine['command']}` ({machine['date']})",
        "",
        "Batch 1, default input size, p50 latency; PyTorch eager and ONNX Runtime CPU measured back to back in one run. "
        "Random (seeded) weights: parity and latency do not depend on trained values.",
        "",
        "| model | input | export s | ONNX MB | parity | rel error | top-1 agree | torch ms | ORT ms | ORT speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | | | | FAIL: {r['error']} | | | | | |")
            continue
        lines.append(
            f"| {r['model']} | {r['input']} | {r['export_s']} | {r['onnx_mb']} | {r['parity']} | {r['rel_error']:.2e} | "
            f"{r['top1_agreement']:.0%} | {r['torch_p50_ms']} | {r['ort_p50_ms']} | {r['ort_speedup']}x |"
        )
    speedups = [r["ort_speedup"] for r in rows if "ort_speedup" in r]
    lines += [
        "",
        f"{sum(r['parity'] == 'pass' for r in rows)}/{len(rows)} models pass parity; "
        f"ORT speed-up over PyTorch eager: median {np.median(speedups):.2f}x, range {min(speedups)}x-{max(speedups)}x.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="*", help="shell-style pattern over the registry")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--max-seconds", type=float, default=3.0, help="time budget per latency measurement")
    args = parser.parse_args()
    machine = machine_info().as_dict()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in list_models(args.models):
            try:
                rows.append(bench_model(name, Path(workdir), args.max_seconds))
            except DeployKitError as exc:
                rows.append({"model": name, "parity": "FAIL", "error": str(exc)})
            print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "export_parity.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    (args.out / "export_parity.md").write_text(to_markdown(machine, rows))
    print(f"wrote {args.out / 'export_parity.md'}")


if __name__ == "__main__":
    main()
