"""Label-free QAT against PTQ on a real network, and on the digits, in one run.

MobileNet-v2 with torchvision's ImageNet weights (`--mobilenet-weights`): one `deploykit export
--int8 --qat` run on the bundled calibration photos (no labels), which first makes the PTQ file
(deploykit's defaults), then fine-tunes against it with the FP32 model as teacher and quantizes
again. Both INT8 files are judged against the same FP32 file by top-1 on the labelled photos
(`--labelled`, default the 500 of ../shared/imagenet-sample) and agreement with FP32's top-1 there;
mean and min logit cosine on the bundled held-out photos are reported as diagnostics; both are timed
on onnxruntime back to back. The digits: cifar_resnet20 trained on the digits' training split, PTQ and QAT INT8
top-1 on the test split.

    python benchmarks/qat.py --mobilenet-weights mobilenet_v2-b0353104.pth [--epochs 10] [--labelled DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from deploykit.bench.latency import measure_latency
from deploykit.bench.machine import machine_info
from deploykit.compress.distill import train_classifier
from deploykit.compress.configs import QatConfig
from deploykit.compress.configs import QuantizeConfig
from deploykit.data import Preprocess, load_labelled_folder
from deploykit.data.digits import load_digits
from deploykit.models import get_model, get_spec
from deploykit.parity import run_all
from deploykit.recipes.export import export
from deploykit.recipes.configs import ExportConfig
from deploykit.runtime import OrtRunner

RESULTS = Path(__file__).with_name("results")
CHECK_KEYS = ("mean_cosine", "min_cosine", "top1_agreement", "fp32_top1_in_int8_top5")


def _latency(path: Path, shape: tuple[int, ...], rounds: int = 5) -> float:
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with OrtRunner(path) as runner:
        return float(np.median([measure_latency(lambda: runner.infer(x), runs=50, max_seconds=10).p50_ms for _ in range(rounds)]))


def labelled_top1(paths: dict[str, Path], folder: Path) -> dict[str, dict[str, float]]:
    """Top-1 of each file on the labelled photos, and its agreement with the first file's (FP32's) top-1, in percent."""
    images, labels, _ = load_labelled_folder(folder, Preprocess.for_model(get_spec("mobilenet_v2")), 1000)
    predictions = {}
    for name, path in paths.items():
        with OrtRunner(path) as runner:
            predictions[name] = run_all(runner, images).argmax(1)
    reference = next(iter(predictions.values()))
    return {
        name: {"top1": round(100 * float(np.mean(p == labels)), 2), "agreement": round(100 * float(np.mean(p == reference)), 2), "images": len(labels)}
        for name, p in predictions.items()
    }


def mobilenet(weights: Path, epochs: int, lr: float, labelled: Path, work: Path) -> dict:
    started = time.perf_counter()
    result = export(ExportConfig(f"mobilenet_v2:{weights}", out=work, quantize=QuantizeConfig(), qat=QatConfig(epochs=epochs, lr=lr)))
    seconds = time.perf_counter() - started
    manifest = json.loads((result.folder / "manifest.json").read_text())["int8"]
    ptq = manifest["qat"]["ptq_check_vs_fp32"]
    qat = manifest["check_vs_fp32"]
    # The PTQ file itself is gone (a step of the run); time a PTQ export of the same FP32 for the latency row.
    ptq_export = export(ExportConfig(f"mobilenet_v2:{weights}", out=work / "ptq", quantize=QuantizeConfig()))
    fp32_ms = _latency(result.onnx_path, (1, 3, 224, 224))
    top1 = labelled_top1({"fp32": result.onnx_path, "ptq": ptq_export.int8_path, "qat": result.int8_path}, labelled)
    return {
        "labelled": {"source": str(labelled), **top1},
        "ptq": {k: round(ptq[k], 4) for k in CHECK_KEYS} | {"ort_ms": round(_latency(ptq_export.int8_path, (1, 3, 224, 224)), 3)},
        "qat": {k: round(qat[k], 4) for k in CHECK_KEYS} | {"ort_ms": round(_latency(result.int8_path, (1, 3, 224, 224)), 3)},
        "fp32_ort_ms": round(fp32_ms, 3),
        "held_out_images": qat["samples"],
        "qat_record": manifest["qat"],
        "export_seconds": round(seconds, 1),
        "qdq_nodes": manifest["qdq_nodes"],
    }


def digits(epochs: int, work: Path) -> dict:
    train, test = load_digits(size=16)
    model = train_classifier(get_model("cifar_resnet20", seed=0), train.images, train.labels, epochs=8, lr=0.1)
    torch.save(model.state_dict(), work / "digits.pth")
    np.save(work / "calib.npy", train.images[:128])
    np.save(work / "holdout.npy", test.images)
    quantize = QuantizeConfig(calib=work / "calib.npy", holdout=work / "holdout.npy")
    common = {"name": f"cifar_resnet20:{work / 'digits.pth'}", "input_size": 16, "dynamic_batch": True, "int8": quantize}
    rows = {}
    for label, extra in (("ptq", {}), ("qat", {"qat": QatConfig(epochs=epochs, lr=1e-4, batch_size=64), "qat_data": "digits"})):
        result = export(ExportConfig(out=work / label, **common, **extra))
        with OrtRunner(result.int8_path) as runner:
            rows[label] = round(float((runner.infer(test.images).argmax(1) == test.labels).mean()), 4)
        with OrtRunner(result.onnx_path) as runner:
            rows["fp32"] = round(float((runner.infer(test.images).argmax(1) == test.labels).mean()), 4)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mobilenet-weights", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=3e-6)
    parser.add_argument(
        "--labelled", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "imagenet-sample", help="labelled photos in synset folders (default ../shared/imagenet-sample)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deploykit-qat-") as work:
        real = mobilenet(args.mobilenet_weights, args.epochs, args.lr, args.labelled, Path(work))
        print(json.dumps({k: real[k] for k in ("ptq", "qat")}), flush=True)
        digit_rows = digits(3, Path(work))
    result = {"machine": machine_info().as_dict(), "command": "python benchmarks/qat.py " + " ".join(sys.argv[1:]), "mobilenet_v2": real, "digits_top1": digit_rows}
    (RESULTS / "qat.json").write_text(json.dumps(result, indent=2) + "\n")
    ptq, qat = real["ptq"], real["qat"]
    record = real["qat_record"]
    lines = [
        "# Label-free QAT vs PTQ",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {result['machine'].get('cpu')}, {result['machine'].get('cores')} cores; torch "
        f"{result['machine']['versions'].get('torch')}, onnxruntime {result['machine']['versions'].get('onnxruntime')}",
        "",
        "## MobileNet-v2, torchvision ImageNet weights",
        "",
        f"QAT: {record['steps']} steps ({record['config']['epochs']} epochs, Adam lr {record['config']['lr']:g}) on "
        f"{record['images']} unlabelled calibration photos, {record['activation_quantizers']} activation and "
        f"{record['weight_quantizers']} weight quantizers simulated; whole export {real['export_seconds']} s. Top-1 and "
        f"agreement with FP32's top-1 on {real['labelled']['fp32']['images']} labelled photos ({real['labelled']['source']}), "
        f"the verdict; cosine on the {real['held_out_images']} bundled held-out photos, a diagnostic.",
        "",
        "| file | top-1 % | agreement with FP32 % | held-out mean cosine | min cosine | ORT CPU ms |",
        "|---|---|---|---|---|---|",
        f"| FP32 | {real['labelled']['fp32']['top1']:.1f} | - | - | - | {real['fp32_ort_ms']} |",
    ]
    for label, key, row in (("PTQ (deploykit default)", "ptq", ptq), ("QAT (label-free)", "qat", qat)):
        top1 = real["labelled"][key]
        lines.append(f"| {label} | {top1['top1']:.1f} | {top1['agreement']:.1f} | {row['mean_cosine']:.4f} | {row['min_cosine']:.4f} | {row['ort_ms']} |")
    difference = real["labelled"]["qat"]["top1"] - real["labelled"]["ptq"]["top1"]
    lines += [
        "",
        f"QAT top-1 minus PTQ top-1 on the labelled photos: **{difference:+.1f} points**.",
        "",
        "## Digits (cifar_resnet20, 16x16, test split top-1)",
        "",
        f"FP32 {digit_rows['fp32']:.2%}, PTQ INT8 {digit_rows['ptq']:.2%}, QAT INT8 {digit_rows['qat']:.2%}.",
    ]
    (RESULTS / "qat.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
