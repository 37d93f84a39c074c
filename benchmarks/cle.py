"""Does cross-layer equalisation (DFQ, Nagel et al. 2019) help deploykit's per-channel INT8? AIMET's CLE
(`aimet_onnx.cross_layer_equalization.equalize_model`: BatchNorm fold, ReLU6 -> ReLU where its pattern matches,
scaling, high-bias fold) applied to the FP32 file deploykit exports, then deploykit's INT8 of both files with the
same calibration photos, for each CPU target and rounding. Judged on the 500 photos of ../shared/imagenet-sample:
top-1, agreement with the original FP32 file's top-1, and the logits' mean squared error against it.

    pip install -e ".[test,benchmarks]" -c constraints.txt
    python benchmarks/cle.py --mobilenet-weights mobilenet_v2-b0353104.pth --lite0-weights efficientnet-lite0-57934424.pth
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VARIANTS = [(cpu, rounding) for cpu in ("vnni", "avx2") for rounding in ("gptq", "nearest")]


def equalize(fp32: Path, out: Path) -> None:
    """AIMET's CLE of ``fp32`` into ``out``; prints how many weight tensors it changed (in a process of its own)."""
    import onnx
    from aimet_onnx.cross_layer_equalization import equalize_model

    model = onnx.load(str(fp32))
    before = {i.name: onnx.numpy_helper.to_array(i).copy() for i in model.graph.initializer}
    equalize_model(model)
    after = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    changed = sorted(n for n in before if n in after and (before[n].shape != after[n].shape or not np.array_equal(before[n], after[n])))
    onnx.save(model, str(out))
    print(json.dumps({"changed": changed, "clips": sum(n.op_type == "Clip" for n in model.graph.node)}))


def measure(name: str, weights: Path, labelled: Path, workdir: Path) -> dict:
    from deploykit.compress.configs import QuantizeConfig
    from deploykit.compress.int8_data import load_quantization_data
    from deploykit.compress.quantize import quantize_int8
    from deploykit.data import Preprocess, load_labelled_folder
    from deploykit.models import get_spec
    from deploykit.recipes.configs import ExportConfig
    from deploykit.recipes.export import export
    from deploykit.runtime import OrtRunner

    preprocess = Preprocess.for_model(get_spec(name))
    fp32 = export(ExportConfig(name, out=workdir / "export", weights=str(weights), time_runtimes=False)).onnx_path
    equalized = workdir / "fp32_cle.onnx"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--equalize", str(fp32), str(equalized)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    cle = {**json.loads(done.stdout.strip().splitlines()[-1]), "seconds": round(time.perf_counter() - started, 1)}
    data = load_quantization_data(QuantizeConfig(), preprocess, 1000)
    images, labels, _ = load_labelled_folder(labelled, preprocess, 1000)
    files = {"fp32": fp32, "fp32_cle": equalized}
    for cpu, rounding in VARIANTS:
        for source, path in (("", fp32), ("_cle", equalized)):
            label = f"int8_{cpu}_{rounding}{source}"
            files[label] = quantize_int8(
                path, workdir / f"{label}.onnx", data, QuantizeConfig(cpu=cpu, rounding=rounding), workdir / "cache", enforce_gate=False, judged_against=fp32
            ).path
    logits = {}
    for label, path in files.items():
        with OrtRunner(path) as runner:
            logits[label] = np.concatenate([runner.infer(images[i : i + 1]) for i in range(len(images))])
    reference = logits["fp32"]
    quality = {
        label: {
            "top1": round(100 * float(np.mean(v.argmax(1) == labels)), 1),
            "agreement": round(100 * float(np.mean(v.argmax(1) == reference.argmax(1))), 1),
            "logit_mse": round(float(np.mean((v - reference) ** 2)), 5),
        }
        for label, v in logits.items()
    }
    return {"model": name, "weights": weights.name, "images": len(labels), "calibration_images": len(data.calibration), "cle": cle, "quality": quality}


def to_markdown(results: list[dict], command: str, machine: dict) -> str:
    lines = [
        "# Cross-layer equalisation before deploykit's INT8",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine['cpu']} ({machine['cpu_kind']}), {machine['cores']} cores; onnxruntime {machine['onnxruntime']}, "
        f"aimet-onnx {machine['aimet_onnx']}. Each INT8 file judged on onnxruntime on this machine.",
        "",
    ]
    for result in results:
        cle = result["cle"]
        lines += [
            f"## {result['model']} ({result['weights']}, {result['images']} photos, {result['calibration_images']} calibration)",
            "",
            f"AIMET's CLE changed {len(cle['changed'])} weight tensors ({', '.join(cle['changed'][:6])}"
            f"{', ...' if len(cle['changed']) > 6 else ''}); {cle['clips']} ReLU6 (Clip) nodes were left, which block "
            "its scaling.",
            "",
            "| INT8 (cpu target, rounding) | top-1 % | agreement % | logit MSE | with CLE: top-1 % | agreement % | logit MSE |",
            "|---|---|---|---|---|---|---|",
        ]
        q = result["quality"]
        lines.append(f"| FP32 | {q['fp32']['top1']} | - | - | {q['fp32_cle']['top1']} | {q['fp32_cle']['agreement']} | {q['fp32_cle']['logit_mse']} |")
        for cpu, rounding in VARIANTS:
            a, b = q[f"int8_{cpu}_{rounding}"], q[f"int8_{cpu}_{rounding}_cle"]
            lines.append(f"| {cpu}, {rounding} | {a['top1']} | {a['agreement']} | {a['logit_mse']} | {b['top1']} | {b['agreement']} | {b['logit_mse']} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--equalize", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mobilenet-weights", type=Path)
    parser.add_argument("--lite0-weights", type=Path)
    parser.add_argument("--labelled", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "imagenet-sample")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if args.equalize:
        return equalize(*args.equalize)
    import platform
    from importlib.metadata import version

    from deploykit.bench.machine import cpu_kind, machine_info

    results = []
    args.out, args.labelled = args.out.resolve(), args.labelled.resolve()
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "cwd").mkdir()
        os.chdir(Path(work) / "cwd")  # where a model's name is no folder
        for name, weights in (("mobilenet_v2", args.mobilenet_weights), ("efficientnet_lite0", args.lite0_weights)):
            if weights is not None:
                (Path(work) / name).mkdir()
                results.append(measure(name, weights.resolve(), args.labelled, Path(work) / name))
    info = machine_info().as_dict()
    machine = {
        "cpu": info.get("cpu", platform.processor()),
        "cpu_kind": cpu_kind(),
        "cores": info.get("cores"),
        "onnxruntime": version("onnxruntime"),
        "aimet_onnx": version("aimet-onnx"),
    }
    command = "python benchmarks/cle.py " + " ".join(sys.argv[1:])
    os.chdir(Path(__file__).parent)
    (args.out / "cle.json").write_text(json.dumps({"command": command, "machine": machine, "results": results}, indent=1))
    (args.out / "cle.md").write_text(to_markdown(results, command, machine))


if __name__ == "__main__":
    main()
