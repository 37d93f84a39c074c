"""Pruning + distillation + INT8 on the digits task: accuracy and CPU latency of each stage, one run.

Teacher: CIFAR ResNet-56 trained on the digits. Students: ResNet-20, and ResNet-56 pruned to half
its MACs (Taylor importance), both distilled from the teacher. Each is exported to ONNX (and INT8);
top-1 is measured on the 450-image digits test split, latency (p50, batch 1 and 32) with PyTorch
eager and ONNX Runtime on the CPU, all variants timed back to back in this run.

    python benchmarks/compression.py [--epochs 15] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from deploykit.bench.latency import measure_latency
from deploykit.bench.machine import machine_info
from deploykit.compress.configs import DistillConfig
from deploykit.compress.configs import PruneConfig
from deploykit.compress.configs import QuantizeConfig
from deploykit.manifest import PRUNED_NAME
from deploykit.recipes.compress import run_distill, run_prune
from deploykit.bench.accuracy import topk_accuracy
from deploykit.data.digits import load_digits
from deploykit.recipes.export import export
from deploykit.recipes.configs import ExportConfig
from deploykit.profile import profile_model
from deploykit.runtime import OrtRunner
from deploykit.recipes.ref import build_model, parse_model_ref


def latency(call, batch_input) -> float:
    return measure_latency(lambda: call(batch_input), runs=40, warmup=5, max_seconds=8).p50_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    machine = machine_info()
    _, test = load_digits()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train = DistillConfig(epochs=args.epochs, alpha=0.0, lr=0.1)
        kd = DistillConfig(epochs=args.epochs, alpha=0.9, temperature=4.0, lr=0.1)
        run_distill("cifar_resnet56", None, "digits", train, work / "teacher")
        teacher = f"cifar_resnet56:{work / 'teacher' / 'student.pth'}"
        prune = run_prune(parse_model_ref(teacher),
                          PruneConfig(target_macs=0.5 * 125.75e6, method="taylor"), work / "pruned")
        run_distill("cifar_resnet20", teacher, "digits", kd, work / "r20_kd")
        run_distill(f"cifar_resnet56:{work / 'pruned' / PRUNED_NAME}", teacher, "digits", kd, work / "pruned_kd")
        variants = {
            "teacher resnet56 (FP32)": ("cifar_resnet56", work / "teacher" / "student.pth", False),
            "resnet56 pruned 50% MACs, no fine-tuning": ("cifar_resnet56", work / "pruned" / PRUNED_NAME, False),
            "resnet56 pruned + distilled": ("cifar_resnet56", work / "pruned_kd" / "student.pth", False),
            "resnet56 pruned + distilled + INT8": ("cifar_resnet56", work / "pruned_kd" / "student.pth", True),
            "resnet20 distilled": ("cifar_resnet20", work / "r20_kd" / "student.pth", False),
            "resnet20 distilled + INT8": ("cifar_resnet20", work / "r20_kd" / "student.pth", True),
        }
        np.save(work / "calib.npy", load_digits()[0].images[:256])
        np.save(work / "holdout.npy", test.images)
        x1 = torch.from_numpy(test.images[:1])
        x32 = torch.from_numpy(test.images[:32])
        for label, (name, weights, int8) in variants.items():
            model = build_model(name, str(weights))
            macs = profile_model(model, (1, 3, 32, 32)).macs
            result = export(ExportConfig(name, out=work / "onnx" / label.replace(" ", "_"), weights=str(weights), dynamic_batch=True,
                                         quantize=QuantizeConfig(calib=work / "calib.npy", calib_size=256, holdout=work / "holdout.npy",
                                                             min_cosine=-1.0, min_top5=0.0) if int8 else None))
            onnx_path = result.folder / ("model.int8.onnx" if int8 else "model.onnx")
            with OrtRunner(onnx_path) as runner, torch.inference_mode():
                top1 = topk_accuracy(runner.infer(test.images), test.labels, 1)
                row = {"variant": label, "macs": macs, "top1": round(100 * top1, 2),
                       "ort_b1_ms": round(latency(runner.infer, test.images[:1]), 3),
                       "ort_b32_ms": round(latency(runner.infer, test.images[:32]), 3)}
                if not int8:
                    row["torch_b1_ms"] = round(latency(model, x1), 3)
                    row["torch_b32_ms"] = round(latency(model, x32), 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    teacher_row, pruned_kd = rows[0], rows[2]
    summary = {
        "mac_reduction": round(1 - pruned_kd["macs"] / teacher_row["macs"], 3),
        "pruned_speedup_torch_b1": round(teacher_row["torch_b1_ms"] / pruned_kd["torch_b1_ms"], 2),
        "pruned_speedup_torch_b32": round(teacher_row["torch_b32_ms"] / pruned_kd["torch_b32_ms"], 2),
        "pruned_speedup_ort_b1": round(teacher_row["ort_b1_ms"] / pruned_kd["ort_b1_ms"], 2),
        "pruned_speedup_ort_b32": round(teacher_row["ort_b32_ms"] / pruned_kd["ort_b32_ms"], 2),
        "distilled_vs_teacher_points": round(pruned_kd["top1"] - teacher_row["top1"], 2),
        "int8_vs_distilled_points": round(rows[3]["top1"] - pruned_kd["top1"], 2),
        "prune": prune,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compression.json").write_text(json.dumps({"machine": machine, "rows": rows, "summary": summary}, indent=2) + "\n")
    lines = ["# Compression on the digits task", "", f"Machine: {machine['cpu']}, {machine['cores']} cores; {machine['platform']}", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()), "",
             f"Command: `{machine['command']}` ({machine['date']}); {args.epochs} epochs per training run, digits at 32x32, "
             "450 test images; p50 latency in ms.", "",
             "| variant | MMACs | top-1 % | torch b1 | torch b32 | ORT b1 | ORT b32 |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['macs'] / 1e6:.1f} | {r['top1']} | {r.get('torch_b1_ms', '-')} | {r.get('torch_b32_ms', '-')} "
                     f"| {r['ort_b1_ms']} | {r['ort_b32_ms']} |")
    lines += ["", f"MAC reduction of the pruned ResNet-56: {summary['mac_reduction']:.1%}; speed-up over the teacher: torch "
              f"{summary['pruned_speedup_torch_b1']}x (batch 1), {summary['pruned_speedup_torch_b32']}x (batch 32); ORT "
              f"{summary['pruned_speedup_ort_b1']}x (batch 1), {summary['pruned_speedup_ort_b32']}x (batch 32).",
              f"Pruned + distilled vs teacher: {summary['distilled_vs_teacher_points']:+} points; INT8 vs pruned + distilled: "
              f"{summary['int8_vs_distilled_points']:+} points."]
    (args.out / "compression.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'compression.md'}")


if __name__ == "__main__":
    main()
