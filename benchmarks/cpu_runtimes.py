"""The fastest CPU deployment: every INT8 file on onnxruntime and OpenVINO against NNCF's, with top-1, in one run.

For ResNet-50 (random weights: latency only), MobileNet-v2 and EfficientNet-Lite0 (real weights), from
one FP32 file and the same 64 calibration photos:

- files: FP32; deploykit's ``--int8-layout cpu`` and ``--int8-layout openvino``; NNCF's INT8 of the
  ONNX file (target CPU) and NNCF on OpenVINO's IR (OpenVINO's own INT8);
- latency at batch 1 on onnxruntime and OpenVINO (and OpenVINO's bf16 where the CPU has AMX or
  AVX-512 BF16), all cores, runners taking turns in interleaved rounds (each round starting one
  further along), median of the rounds' p50; and the graph OpenVINO's CPU plugin executes for
  deploykit's openvino-layout file and for OpenVINO's own INT8, compared layer by layer;
- top-1 of every combination on the labelled photos (default the 500 of ../shared/imagenet-sample);
- throughput: batch 1, 8 and 32 with one stream, and batch 1 with one stream per core.

Each model runs in a process of its own, and NNCF in another (NNCF, OpenVINO and onnxruntime in one
long process have died of segmentation faults here, see results/int8.md).

    pip install -e ".[test,benchmarks]"
    python benchmarks/cpu_runtimes.py --mobilenet-weights mobilenet_v2-b0353104.pth --lite0-weights efficientnet-lite0-57934424.pth
"""

from __future__ import annotations

from functools import partial
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROUNDS = 10
RUNS_PER_ROUND = 20
THROUGHPUT_BATCHES = (1, 8, 32)
THROUGHPUT_SECONDS = 4.0
CALIBRATION_IMAGES = 64
FILES = ("fp32", "deploykit_cpu", "deploykit_openvino", "nncf_onnx", "nncf_openvino_ir")


def nncf_files(fp32: Path, calibration: Path, out: Path) -> None:
    """NNCF's INT8 of the FP32 ONNX file (target CPU) and of OpenVINO's IR of it, on the same images."""
    import nncf
    import onnx
    import openvino as ov

    images = np.load(calibration)
    model = onnx.load(str(fp32))
    dataset = nncf.Dataset([{model.graph.input[0].name: images[i : i + 1]} for i in range(len(images))])
    onnx.save(nncf.quantize(model, dataset, subset_size=len(images), target_device=nncf.TargetDevice.CPU), str(out / "nncf.onnx"))
    ir = nncf.quantize(ov.convert_model(str(fp32)), nncf.Dataset([images[i : i + 1] for i in range(len(images))]), subset_size=len(images))
    ov.save_model(ir, str(out / "nncf_openvino.xml"))


def executed_graph(path: Path) -> dict[str, int]:
    """What OpenVINO's CPU plugin runs for a file: its executed layers counted by type and runtime precision."""
    from deploykit.runtime.openvino_runner import compiled_on

    counts: dict[str, int] = {}
    with compiled_on(path, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}) as compiled:
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            key = f"{info['layerType'].astype(str)} {info['runtimePrecision'].astype(str)}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def one_model(name: str, weights: Path | None, labelled: Path, work: Path) -> dict:
    from deploykit.bench.latency import measure_latency
    from deploykit.bench.machine import cpu_flags
    from deploykit.bench.runtimes import BF16_FLAGS
    from deploykit.bench.throughput import stream_throughput
    from deploykit.compress.configs import QuantizeConfig
    from deploykit.data import DEFAULT_CALIBRATION_DIR, Preprocess, load_labelled_folder
    from deploykit.data.calibration import load_samples
    from deploykit.io import sha256_file
    from deploykit.models import get_spec
    from deploykit.parity import run_all
    from deploykit.recipes.configs import ExportConfig
    from deploykit.recipes.export import export
    from deploykit.runtime import cpu_runner

    spec = get_spec(name)
    exports = {
        layout: export(ExportConfig(name, out=work / layout, weights=str(weights) if weights else None, dynamic_batch=True, quantize=QuantizeConfig(layout=layout)))
        for layout in ("cpu", "openvino")
    }
    fp32 = exports["cpu"].onnx_path
    same_fp32 = sha256_file(fp32) == sha256_file(exports["openvino"].onnx_path)
    preprocess = Preprocess.for_model(spec)  # what export uses for a checkpoint file
    np.save(work / "calibration.npy", load_samples(DEFAULT_CALIBRATION_DIR, preprocess, CALIBRATION_IMAGES))
    subprocess.run([sys.executable, __file__, "--nncf", str(fp32), str(work / "calibration.npy"), str(work)], check=True)
    paths = {
        "fp32": fp32,
        "deploykit_cpu": exports["cpu"].int8_path,
        "deploykit_openvino": exports["openvino"].int8_path,
        "nncf_onnx": work / "nncf.onnx",
        "nncf_openvino_ir": work / "nncf_openvino.xml",
    }
    combos = {(file, runtime, "f32"): (paths[file], runtime) for file in FILES for runtime in ("ort", "openvino") if not (file == "nncf_openvino_ir" and runtime == "ort")}
    bf16 = bool(cpu_flags() & set(BF16_FLAGS))
    if bf16:
        combos[("fp32", "openvino", "bf16")] = (fp32, "openvino")
    runners = {key: cpu_runner(path, runtime, **({"precision": key[2]} if runtime == "openvino" else {})) for key, (path, runtime) in combos.items()}
    images, labels = load_labelled_folder(labelled, preprocess, 1000)[:2] if weights else (None, None)
    x = np.random.default_rng(0).standard_normal((1, *spec.input_shape), dtype=np.float32)
    samples: dict[tuple, list[float]] = {key: [] for key in runners}
    top1 = {}
    try:
        for key, runner in runners.items():
            runner.load()
            if images is not None:
                top1[key] = round(100 * float(np.mean(run_all(runner, images, batch_size=16).argmax(1) == labels)), 2)
        order = list(runners.items())
        for round_index in range(ROUNDS):  # rotated: no combination always runs right after another (onnxruntime's
            start = round_index % len(order)  # spinning threads slow whatever runs next)
            for key, runner in order[start:] + order[:start]:
                samples[key].append(measure_latency(partial(runner.infer, x), warmup=3, runs=RUNS_PER_ROUND).p50_ms)
    finally:
        for runner in runners.values():
            runner.close()
    latency = {key: float(np.median(values)) for key, values in samples.items()}
    throughput = []
    for file, runtime in [("fp32", "ort"), ("deploykit_cpu", "ort"), ("fp32", "openvino"), ("deploykit_openvino", "openvino"), ("nncf_openvino_ir", "openvino")]:
        with cpu_runner(paths[file], runtime) as runner:
            for batch in THROUGHPUT_BATCHES:
                data = np.random.default_rng(0).standard_normal((batch, *spec.input_shape), dtype=np.float32)
                stats = measure_latency(partial(runner.infer, data), batch=batch, warmup=2, runs=50, max_seconds=THROUGHPUT_SECONDS)
                throughput.append({"file": file, "runtime": runtime, "batch": batch, "streams": 1, "images_per_s": round(stats.throughput, 1), "p50_ms": round(stats.p50_ms, 2)})
        streams = os.cpu_count() or 1
        stats = stream_throughput(paths[file], runtime, x, streams, requests=40 * streams)
        throughput.append({"file": file, "runtime": runtime, "batch": 1, "streams": streams, "images_per_s": round(stats.throughput, 1), "p50_ms": round(stats.p50_ms, 2)})
    graphs = {file: executed_graph(paths[file]) for file in ("deploykit_openvino", "nncf_openvino_ir")}
    return {
        "model": name,
        "weights": weights.name if weights else "random",
        "same_fp32_file": same_fp32,
        "openvino_executed_graph": graphs["deploykit_openvino"],
        "same_executed_graph_as_nncf": graphs["deploykit_openvino"] == graphs["nncf_openvino_ir"],
        "labelled_images": len(labels) if labels is not None else 0,
        "bf16_timed": bf16,
        "export_fastest": exports["openvino"].runtimes.as_dict()["chosen"],
        "combinations": [
            {"file": file, "runtime": runtime, "precision_hint": hint, "p50_ms": round(latency[(file, runtime, hint)], 3), "top1": top1.get((file, runtime, hint))}
            for file, runtime, hint in runners
        ],
        "throughput": throughput,
        "deploykit_int8": {layout: {"check": result.int8.check.summary(), "calibration": result.int8.calibration.get("chosen")} for layout, result in exports.items()},
    }


def summary(result: dict) -> dict:
    """The issue's figures: OpenVINO on the openvino-layout file over OpenVINO's own INT8, and top-1 drops."""
    find = {(c["file"], c["runtime"], c["precision_hint"]): c for c in result["combinations"]}
    ours, theirs = find[("deploykit_openvino", "openvino", "f32")], find[("nncf_openvino_ir", "openvino", "f32")]
    out = {"openvino_layout_vs_nncf_ir_latency": round(ours["p50_ms"] / theirs["p50_ms"], 3)}
    fp32 = find[("fp32", "openvino", "f32")]
    if fp32["top1"] is not None:
        out["openvino_layout_top1_drop_on_openvino"] = round(fp32["top1"] - ours["top1"], 2)
        out["nncf_ir_top1_drop_on_openvino"] = round(fp32["top1"] - theirs["top1"], 2)
    for runtime in ("ort", "openvino"):
        out[f"int8_speedup_{runtime}"] = {
            file: round(find[("fp32", runtime, "f32")]["p50_ms"] / find[(file, runtime, "f32")]["p50_ms"], 2) for file in FILES[1:] if (file, runtime, "f32") in find
        }
    fastest = min(result["combinations"], key=lambda c: c["p50_ms"])
    out["fastest"] = f"{fastest['file']} on {fastest['runtime']} ({fastest['precision_hint']}), {fastest['p50_ms']:.2f} ms"
    return out


def to_markdown(machine: dict, results: list[dict]) -> str:
    lines = [
        "# The fastest CPU deployment",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, CPU flags {', '.join(machine['cpu_flags']) or 'none of note'} "
        f"(AVX-512 VNNI: {'yes' if 'avx512_vnni' in machine['cpu_flags'] else 'no'}, AMX: "
        f"{'yes' if 'amx_bf16' in machine['cpu_flags'] else 'no'}); {machine['platform']}",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()),
        "",
        f"Command: `{machine['command']}` ({machine['date']})",
        "",
        f"Latency: batch 1, all cores, p50 ms, median of {ROUNDS} interleaved rounds of {RUNS_PER_ROUND} runs, every "
        "combination of one model in the same rounds. Top-1 on the labelled photos, each file run by that runtime.",
        "",
    ]
    for result in results:
        s = result["summary"]
        lines += [f"## {result['model']} ({result['weights']} weights)", "", "| file | onnxruntime ms | OpenVINO ms | onnxruntime top-1 % | OpenVINO top-1 % |", "|---|---|---|---|---|"]
        find = {(c["file"], c["runtime"], c["precision_hint"]): c for c in result["combinations"]}
        for file in FILES:
            ort, ov = find.get((file, "ort", "f32")), find[(file, "openvino", "f32")]
            cell = lambda c, key: "-" if c is None or c[key] is None else f"{c[key]:.2f}" if key == "p50_ms" else f"{c[key]:.1f}"
            lines.append(f"| {file} | {cell(ort, 'p50_ms')} | {cell(ov, 'p50_ms')} | {cell(ort, 'top1')} | {cell(ov, 'top1')} |")
        if ("fp32", "openvino", "bf16") in find:
            bf16 = find[("fp32", "openvino", "bf16")]
            lines.append(f"| fp32, OpenVINO bf16 hint | - | {bf16['p50_ms']:.2f} | - | {bf16['top1'] or '-'} |")
        same = "the same" if result["same_executed_graph_as_nncf"] else "a different"
        lines += [
            "",
            f"- OpenVINO on deploykit's openvino layout / OpenVINO's own NNCF INT8: "
            f"**{s['openvino_layout_vs_nncf_ir_latency']:.3f}** (target at most 1.00); OpenVINO's CPU plugin runs "
            f"{same} executed graph for both (layers by type and runtime precision)",
        ]
        if "openvino_layout_top1_drop_on_openvino" in s:
            lines.append(
                f"- top-1 drop from FP32 on OpenVINO ({result['labelled_images']} photos): deploykit openvino layout "
                f"**{s['openvino_layout_top1_drop_on_openvino']:.1f}** points (target at most 1.0), NNCF's own "
                f"{s['nncf_ir_top1_drop_on_openvino']:.1f}"
            )
        for runtime, name in (("ort", "onnxruntime"), ("openvino", "OpenVINO")):
            lines.append(f"- INT8 vs FP32 on {name}: " + ", ".join(f"{k} {v:.2f}x" for k, v in s[f"int8_speedup_{runtime}"].items()))
        lines.append(
            f"- fastest combination measured here: {s['fastest']}; `export --int8-layout openvino` named "
            f"{result['export_fastest']['runtime']} {result['export_fastest']['precision']} "
            f"({result['export_fastest']['file']}) in its own timing"
        )
        lines += [
            "",
            "Throughput, images per second (all cores; streams: requests in parallel, OpenVINO's THROUGHPUT hint or as many onnxruntime sessions):",
            "",
            "| file | runtime | batch 1 | batch 8 | batch 32 | batch 1, one stream per core |",
            "|---|---|---|---|---|---|",
        ]
        rows = {}
        for t in result["throughput"]:
            rows.setdefault((t["file"], t["runtime"]), {})[(t["batch"], t["streams"])] = t["images_per_s"]
        for (file, runtime), cells in rows.items():
            per_core = next(v for (b, streams), v in cells.items() if streams > 1)
            lines.append(f"| {file} | {runtime} | {cells[(1, 1)]:.1f} | {cells[(8, 1)]:.1f} | {cells[(32, 1)]:.1f} | {per_core:.1f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mobilenet-weights", type=Path)
    parser.add_argument("--lite0-weights", type=Path)
    parser.add_argument("--labelled", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "imagenet-sample")
    parser.add_argument("--models", default="resnet50,mobilenet_v2,efficientnet_lite0")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one model, in its own process
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--nncf", nargs=3, type=Path, help=argparse.SUPPRESS)  # internal: FP32 CALIBRATION.npy OUT
    args = parser.parse_args()
    if args.nncf:
        return nncf_files(*args.nncf)
    if args.one:
        result = one_model(args.one, args.weights, args.labelled, args.workdir)
        return (args.workdir / "result.json").write_text(json.dumps(result))
    from deploykit.bench.machine import machine_info

    machine = machine_info().as_dict()
    weights = {"mobilenet_v2": args.mobilenet_weights, "efficientnet_lite0": args.lite0_weights}
    results = []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as work:
            command = [sys.executable, __file__, "--one", name, "--workdir", work, "--labelled", str(args.labelled)]
            if weights.get(name):
                command += ["--weights", str(weights[name].resolve())]
            subprocess.run(command, check=True)
            result = json.loads((Path(work) / "result.json").read_text())
        result["summary"] = summary(result)
        results.append(result)
        print(json.dumps(result["summary"]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu_runtimes.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    (args.out / "cpu_runtimes.md").write_text(to_markdown(machine, results))
    print(f"wrote {args.out / 'cpu_runtimes.md'}")


if __name__ == "__main__":
    main()
