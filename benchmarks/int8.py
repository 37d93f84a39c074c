"""INT8 on the CPU: deploykit's Q/DQ model against FP32 and against OpenVINO's own INT8, in one run.

For each model (batch 1, all cores, default input size, seeded random weights; latency does not
depend on trained values): ORT FP32, ORT INT8 (deploykit), OpenVINO FP32, OpenVINO running
deploykit's Q/DQ file, and OpenVINO running its own NNCF-quantized INT8 of the same FP32 model.
Runners are timed in interleaved rounds and the median of the rounds' p50 is reported, so the ratios
hold on a shared machine. Also: `deploykit export resnet50 --int8` wall time end to end, and
FP32 vs INT8 top-1 on the digits test split (cifar_resnet20 trained on the digits train split).

    python benchmarks/int8.py [--models resnet50,mobilenet_v2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from deploykit.bench.latency import measure_latency
from deploykit.bench.machine import machine_info
from deploykit.compress.quantize import QuantizeConfig
from deploykit.compress.train import accuracy, fit_classifier
from deploykit.data import DEFAULT_CALIBRATION_DIR, Preprocess, find_images, load_images
from deploykit.data.digits import load_digits
from deploykit.models import get_model, get_spec
from deploykit.pipeline import ExportConfig, export
from deploykit.runtime import OrtRunner
from deploykit.runtime.openvino_runner import OpenVinoRunner, import_openvino

ROUNDS = 5
RUNS_PER_ROUND = 20


def openvino_own_int8(fp32_path: Path, calibration: np.ndarray, out: Path) -> Path:
    """OpenVINO's native INT8: convert the FP32 ONNX to IR and quantize it with NNCF on the same images."""
    import nncf

    ov = import_openvino()
    model = ov.convert_model(str(fp32_path))
    quantized = nncf.quantize(model, nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))]),
                              subset_size=len(calibration))
    ov.save_model(quantized, str(out))
    return out


def interleaved_p50(runners: dict, x: np.ndarray) -> dict[str, float]:
    """Median over rounds of each runner's p50, the runners taking turns within every round."""
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(ROUNDS):
        for name, runner in runners.items():
            samples[name].append(measure_latency(lambda: runner.infer(x), warmup=3, runs=RUNS_PER_ROUND).p50_ms)
    return {name: float(np.median(values)) for name, values in samples.items()}


def bench_latency(name: str, workdir: Path) -> dict:
    spec = get_spec(name)
    started = time.perf_counter()
    result = export(ExportConfig(name, out=workdir, int8=QuantizeConfig()))
    export_s = time.perf_counter() - started
    preprocess = Preprocess.for_model(spec)
    calibration = load_images(find_images(DEFAULT_CALIBRATION_DIR)[:64], preprocess)
    own_int8 = openvino_own_int8(result.onnx_path, calibration, workdir / f"{name}_nncf.xml")
    fp32, int8 = result.onnx_path, result.folder / "model.int8.onnx"
    runners = {
        "ort_fp32": OrtRunner(fp32), "ort_int8": OrtRunner(int8), "openvino_fp32": OpenVinoRunner(fp32),
        "openvino_int8_deploykit_qdq": OpenVinoRunner(int8), "openvino_int8_nncf": OpenVinoRunner(own_int8),
    }
    for runner in runners.values():
        runner.load()
    x = np.random.default_rng(0).standard_normal((1, *spec.input_shape), dtype=np.float32)
    try:
        p50 = interleaved_p50(runners, x)
    finally:
        for runner in runners.values():
            runner.close()
    best_deploykit = min(("ort_int8", "openvino_int8_deploykit_qdq"), key=p50.get)
    return {
        "model": name, "p50_ms": {k: round(v, 3) for k, v in p50.items()},
        "ort_int8_speedup_vs_ort_fp32": round(p50["ort_fp32"] / p50["ort_int8"], 2),
        "best_deploykit_runner": best_deploykit,
        "best_deploykit_vs_openvino_nncf": round(p50[best_deploykit] / p50["openvino_int8_nncf"], 3),
        "export_with_int8_s": round(export_s, 1),
        "int8_agreement_vs_fp32_holdout": result.int8["agreement_vs_fp32"]["top1_agreement"],
        "kept_fp32": [k["output"] for k in result.int8["kept_fp32_by_fallback"]],
    }


def bench_cli_end_to_end(workdir: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "deploykit", "export", "resnet50", "--int8", "--out", str(workdir / "cli")], check=True,
                   capture_output=True)
    return round(time.perf_counter() - started, 1)


def bench_digits_accuracy(workdir: Path, epochs: int) -> dict:
    import torch

    train, test = load_digits(size=32)
    model = fit_classifier(get_model("cifar_resnet20", seed=0), train.images, train.labels, epochs=epochs, lr=0.1)
    torch.save(model.state_dict(), workdir / "digits.pth")
    np.save(workdir / "calib.npy", train.images[:256])
    np.save(workdir / "holdout.npy", test.images)
    result = export(ExportConfig("cifar_resnet20", out=workdir / "digits", weights=str(workdir / "digits.pth"), dynamic_batch=True,
                                 int8=QuantizeConfig(calib=workdir / "calib.npy", calib_size=256, holdout=workdir / "holdout.npy")))
    with OrtRunner(result.onnx_path) as fp32, OrtRunner(result.folder / "model.int8.onnx") as int8:
        fp32_top1, int8_top1 = accuracy(fp32.infer(test.images), test.labels), accuracy(int8.infer(test.images), test.labels)
    return {"model": "cifar_resnet20", "train_epochs": epochs, "test_images": len(test.labels),
            "fp32_top1": round(100 * fp32_top1, 2), "int8_top1": round(100 * int8_top1, 2),
            "drop_points": round(100 * (fp32_top1 - int8_top1), 2)}


def to_markdown(machine: dict, rows: list[dict], cli_s: float, digits: dict) -> str:
    lines = [
        "# INT8 on the CPU", "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; {machine['platform']}", "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()), "",
        f"Command: `{machine['command']}` ({machine['date']})", "",
        f"Batch 1, all cores, p50 latency in ms: median of {ROUNDS} interleaved rounds of {RUNS_PER_ROUND} runs each.", "",
        "| model | ORT FP32 | ORT INT8 | ORT INT8 speed-up | OpenVINO FP32 | OpenVINO on deploykit Q/DQ | OpenVINO own INT8 (NNCF) "
        "| best deploykit / OpenVINO own | export + INT8 s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = r["p50_ms"]
        lines.append(f"| {r['model']} | {p['ort_fp32']:.2f} | {p['ort_int8']:.2f} | {r['ort_int8_speedup_vs_ort_fp32']:.2f}x | "
                     f"{p['openvino_fp32']:.2f} | {p['openvino_int8_deploykit_qdq']:.2f} | {p['openvino_int8_nncf']:.2f} | "
                     f"{r['best_deploykit_vs_openvino_nncf']:.2f} ({r['best_deploykit_runner']}) | {r['export_with_int8_s']} |")
    lines += [
        "", f"`deploykit export resnet50 --int8`, end to end as a new process: {cli_s} s.", "",
        f"Digits ({digits['test_images']} test images, {digits['model']} trained {digits['train_epochs']} epochs): "
        f"FP32 top-1 {digits['fp32_top1']}%, INT8 top-1 {digits['int8_top1']}% (drop {digits['drop_points']} points).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50,mobilenet_v2")
    parser.add_argument("--digits-epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    machine = machine_info()
    with tempfile.TemporaryDirectory() as workdir:
        rows = [bench_latency(name, Path(workdir)) for name in args.models.split(",")]
        for row in rows:
            print(json.dumps(row), flush=True)
        cli_s = bench_cli_end_to_end(Path(workdir))
        print(f"cli end to end: {cli_s} s", flush=True)
        digits = bench_digits_accuracy(Path(workdir), args.digits_epochs)
        print(json.dumps(digits), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine, "latency": rows, "cli_export_resnet50_int8_s": cli_s, "digits": digits}
    (args.out / "int8.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.out / "int8.md").write_text(to_markdown(machine, rows, cli_s, digits))
    print(f"wrote {args.out / 'int8.md'}")


if __name__ == "__main__":
    main()
