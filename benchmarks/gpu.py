"""The GPU run: TensorRT engines checked against onnxruntime CPU, and every GPU backend timed, in one run.

On a machine with an NVIDIA GPU, for MobileNet-v2 (real ImageNet weights when `--mobilenet-weights`
is given, so parity means something) and ResNet-50 (random weights: throughput does not depend on
trained values):

1. export FP32, FP16 and the `--int8-layout trt` INT8 Q/DQ file with deploykit (dynamic batch);
2. build TensorRT engines: FP16 from the FP16 ONNX, INT8 from the Q/DQ file;
3. check each engine against onnxruntime CPU FP32 on the held-out photos (max error / logit range,
   min cosine, top-1 agreement, FP32 top-1 in the engine's top-5);
4. time at batch 1/32/256: the TensorRT engines (with trtexec's h2d / compute / d2h split from CUDA
   events), onnxruntime's CUDA and TensorRT execution providers, and torch CUDA (fp16,
   channels_last, eager and CUDA graphs); throughput = batch / p50;
5. put ResNet-50's best throughput next to the MLPerf per-GPU figure given with
   `--mlperf-samples-per-gpu` (and `--mlperf-source`, the round and system it comes from).

Without a GPU it says so in one line and exits 0. Results: benchmarks/results/gpu.{json,md}.

    pip install -e ".[test,tensorrt,gpu]"
    python benchmarks/gpu.py --mobilenet-weights mobilenet_v2-b0353104.pth \
        [--mlperf-samples-per-gpu N --mlperf-source "MLPerf Inference vX.Y, system, Offline"]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).with_name("results")
BATCHES = (1, 32, 256)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mobilenet-weights", type=Path, help="torchvision's mobilenet_v2-b0353104.pth (real weights)")
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--mlperf-samples-per-gpu", type=float, help="MLPerf ResNet-50 Offline samples/s for one GPU")
    parser.add_argument("--mlperf-source", default="", help="Which MLPerf round and system that figure is from")
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing to measure")
        return 0
    from deploykit.bench.machine import machine_info

    result: dict = {"machine": machine_info().as_dict(), "gpu": torch.cuda.get_device_name(0), "command": "python benchmarks/gpu.py " + " ".join(sys.argv[1:]), "models": {}}
    result["machine"]["versions"] |= _gpu_versions()
    with tempfile.TemporaryDirectory(prefix="deploykit-gpu-") as work:
        models = [("mobilenet_v2", f"mobilenet_v2:{args.mobilenet_weights}" if args.mobilenet_weights else "mobilenet_v2"), ("resnet50", "resnet50")]
        for name, reference in models:
            result["models"][name] = run_model(name, reference, Path(work), args.batches, args.runs)
            print(json.dumps({name: result["models"][name]["checks"]}), flush=True)
    best = max((row["images_per_s"] for row in result["models"]["resnet50"]["timings"]), default=0.0)
    result["resnet50_vs_mlperf"] = {
        "best_images_per_s": round(best, 1),
        "mlperf_samples_per_gpu": args.mlperf_samples_per_gpu,
        "mlperf_source": args.mlperf_source,
        "ratio": round(best / args.mlperf_samples_per_gpu, 3) if args.mlperf_samples_per_gpu else None,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "gpu.md").write_text(markdown(result) + "\n")
    print(markdown(result))
    return 0


def run_model(name: str, reference: str, work: Path, batches: list[int], runs: int) -> dict:
    from deploykit.compress.configs import QuantizeConfig
    from deploykit.data import DEFAULT_HOLDOUT_DIR, Preprocess, find_images, load_images
    from deploykit.export.tensorrt import EngineConfig, build_engine
    from deploykit.parity import run_all
    from deploykit.recipes.export import export
    from deploykit.recipes.configs import ExportConfig
    from deploykit.runtime import OrtRunner

    random_weights = ":" not in reference
    int8 = QuantizeConfig(layout="trt", min_cosine=-1.0, min_top5=0.0) if random_weights else QuantizeConfig(layout="trt", min_cosine=0.9)
    exported = export(ExportConfig(reference, out=work, dynamic_batch=True, fp16=True, quantize=int8))
    manifest = json.loads((exported.folder / "manifest.json").read_text())
    preprocess = Preprocess(224, manifest["input"]["resize"], tuple(manifest["input"]["mean"]), tuple(manifest["input"]["std"]), manifest["input"]["interpolation"])
    holdout = load_images(find_images(DEFAULT_HOLDOUT_DIR), preprocess)
    with OrtRunner(exported.onnx_path) as cpu:
        fp32 = run_all(cpu, holdout)
    engines = {}
    for precision, onnx_file in (("fp16", exported.folder / "model.fp16.onnx"), ("int8", exported.int8_path)):
        engine = work / f"{name}.{precision}.engine"
        started = time.perf_counter()
        build_engine(onnx_file, engine, EngineConfig(fp16=precision == "fp16" and _tensorrt_major() == 10, min_batch=1, opt_batch=max(batches), max_batch=max(batches)))
        engines[precision] = (engine, round(time.perf_counter() - started, 1))
    checks = {precision: {"build_s": seconds, **_check(engine, holdout, fp32)} for precision, (engine, seconds) in engines.items()}
    timings = []
    for batch in batches:
        x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224)).astype(np.float32)
        for precision, (engine, _) in engines.items():
            timings.append(_time_engine(engine, precision, x, runs))
        for provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
            timings.append(_time_ort(exported.onnx_path, provider, x, runs))
        timings += _time_torch(reference, x, runs)
    return {"weights": "random" if random_weights else "real", "checks": checks, "timings": [t for t in timings if t]}


def _check(engine: Path, holdout: np.ndarray, fp32: np.ndarray) -> dict:
    from deploykit.parity import compare_logits, run_all
    from deploykit.runtime.trt_runner import TensorRTRunner

    with TensorRTRunner(engine) as runner:
        logits = run_all(runner, holdout)
    report = compare_logits(fp32, logits)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    return {**report.as_dict(), "fp32_top1_in_top5": float(np.mean([t in row for t, row in zip(fp32.argmax(1), top5)]))}


def _row(backend: str, precision: str, batch: int, stats, extra: dict | None = None) -> dict:
    return {
        "backend": backend,
        "precision": precision,
        "batch": batch,
        "p50_ms": round(stats.p50_ms, 3),
        "p99_ms": round(stats.p99_ms, 3),
        "images_per_s": round(batch / stats.p50_ms * 1000, 1),
        **(extra or {}),
    }


def _time_engine(engine: Path, precision: str, x: np.ndarray, runs: int) -> dict:
    from deploykit.bench.latency import measure_latency
    from deploykit.runtime.trt_runner import TensorRTRunner

    with TensorRTRunner(engine) as runner:
        splits = []

        def call() -> None:
            runner.infer(x)
            splits.append(runner.last_timings)

        stats = measure_latency(call, batch=len(x), warmup=10, runs=runs, max_seconds=60)
    timed = splits[-stats.runs :]
    split = {key: round(float(np.median([getattr(t, key) for t in timed])), 3) for key in ("h2d_ms", "compute_ms", "d2h_ms")}
    return _row("tensorrt", precision, len(x), stats, split)


def _time_ort(path: Path, provider: str, x: np.ndarray, runs: int) -> dict | None:
    import onnxruntime

    from deploykit.bench.latency import measure_latency
    from deploykit.runtime import OrtRunner

    if provider not in onnxruntime.get_available_providers():
        return None
    with OrtRunner(path, providers=[provider, "CPUExecutionProvider"]) as runner:
        stats = measure_latency(lambda: runner.infer(x), batch=len(x), warmup=10, runs=runs, max_seconds=60)
    return _row(f"ort {provider.removesuffix('ExecutionProvider')}", "fp32", len(x), stats)


def _time_torch(reference: str, x: np.ndarray, runs: int) -> list[dict]:
    """torch CUDA fp16 channels_last, eager and replayed as a CUDA graph (input copied in each time)."""
    import torch

    from deploykit.bench.latency import measure_latency
    from deploykit.recipes.ref import build_model

    model = build_model(reference).eval().cuda().half().to(memory_format=torch.channels_last)
    host = torch.from_numpy(x).pin_memory()
    static = host.cuda().half().to(memory_format=torch.channels_last)
    rows = []
    with torch.inference_mode():

        def eager() -> None:
            model(host.cuda(non_blocking=True).half().to(memory_format=torch.channels_last)).float().cpu()

        rows.append(_row("torch cuda", "fp16 channels_last", len(x), measure_latency(eager, batch=len(x), warmup=10, runs=runs, max_seconds=60)))
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            for _ in range(3):
                model(static)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = model(static)

        def replay() -> None:
            static.copy_(host.cuda(non_blocking=True).half().to(memory_format=torch.channels_last))
            graph.replay()
            output.float().cpu()

        rows.append(_row("torch cuda graph", "fp16 channels_last", len(x), measure_latency(replay, batch=len(x), warmup=10, runs=runs, max_seconds=60)))
    return rows


def _tensorrt_major() -> int:
    from deploykit.runtime.trt_engine import require_tensorrt, tensorrt_major

    return tensorrt_major(require_tensorrt())


def _gpu_versions() -> dict:
    versions = {}
    for module in ("tensorrt", "onnxruntime"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    return versions


def markdown(result: dict) -> str:
    lines = [
        "# GPU: TensorRT engines, onnxruntime GPU providers and torch CUDA",
        "",
        f"Command: `{result['command']}`",
        "",
        f"GPU: {result['gpu']}; versions: {result['machine']['versions']}",
        "",
    ]
    for name, model in result["models"].items():
        lines += [
            f"## {name} ({model['weights']} weights)",
            "",
            "| engine | build s | max err / range | min cosine | top-1 agreement | FP32 top-1 in top-5 |",
            "|---|---|---|---|---|---|",
        ]
        for precision, check in model["checks"].items():
            lines.append(
                f"| TensorRT {precision} | {check['build_s']} | {check['rel_error']:.3g} | "
                f"{check['min_cosine']:.4f} | {check['top1_agreement']:.1%} | {check['fp32_top1_in_top5']:.1%} |"
            )
        lines += ["", "| backend | precision | batch | p50 ms | p99 ms | images/s | h2d / compute / d2h ms |", "|---|---|---|---|---|---|---|"]
        for row in model["timings"]:
            split = f"{row['h2d_ms']} / {row['compute_ms']} / {row['d2h_ms']}" if "compute_ms" in row else "-"
            lines.append(f"| {row['backend']} | {row['precision']} | {row['batch']} | {row['p50_ms']} | {row['p99_ms']} | {row['images_per_s']:,} | {split} |")
        lines.append("")
    mlperf = result["resnet50_vs_mlperf"]
    figure = f"{mlperf['mlperf_samples_per_gpu']:,} ({mlperf['mlperf_source']})" if mlperf["mlperf_samples_per_gpu"] else "not given"
    lines.append(f"ResNet-50 best throughput: {mlperf['best_images_per_s']:,} images/s; MLPerf per GPU: {figure}.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
