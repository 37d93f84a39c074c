"""Fine-tune, prune, distil and quantize real models on CIFAR-10, judged on held-out photos and the deployed runtimes,
in one run.

For MobileNet-v2 (torchvision's ImageNet weights) and EfficientNet-Lite0 (its own ImageNet weights), through deploykit's
own recipes (what `train`, `prune`, `distill` and `export --int8` run):

1. the input size: a short fine-tune at each of ``--compare-sizes`` on the same photos; the smallest size whose top-1
   is within ``SIZE_TOLERANCE`` points of the best is used for everything after (a larger input costs latency on
   every runtime, so it has to pay for itself in accuracy);
2. fine-tune the teacher onto the 10 classes (a new classifier);
3. prune the teacher at each ratio (L2 magnitude, channel counts multiples of 8) and distil each pruned model from it;
4. export every model to ONNX (dynamic batch) and INT8 (``--int8-layout cpu``, gated by a top-1 drop of at most 1 point
   on the validation photos).

Data: ``../shared/cifar10/train``. The last 500 photos of each class (5,000) are held out and never trained on; the last
100 of each of those (1,000) choose each run's best epoch, and all 5,000 give the table's top-1. Training reads the first
``--train-per-class`` photos of each class. Every file's top-1 is measured on onnxruntime and on OpenVINO; latency (p50)
on both at batch 1 and 32, all files taking turns in rotated rounds of one process.

    python benchmarks/compression.py --mobilenet-weights mobilenet_v2-b0353104.pth --lite0-weights efficientnet-lite0-57934424.pth
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

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "cifar10" / "train"
HELD_OUT_PER_CLASS = 500
SELECT_PER_CLASS = 100
SIZE_TOLERANCE = 2.0  # points
ROUNDS = 10
RUNS = {1: 20, 32: 5}
CALIBRATION_PER_CLASS = 8


def subset_folders(work: Path, train_per_class: int, compare_per_class: int) -> dict[str, Path]:
    """Folders of links into CIFAR-10: train (first N of each class), compare (first M), select and held-out (last ones)."""
    folders = {name: work / name for name in ("train", "compare", "select", "held_out", "calib")}
    for folder in folders.values():
        folder.mkdir()
    for label in sorted(p.name for p in CIFAR.iterdir() if p.is_dir()):
        photos = sorted((CIFAR / label).iterdir())
        if train_per_class > len(photos) - HELD_OUT_PER_CLASS:
            raise SystemExit(f"--train-per-class {train_per_class} would reach into the held-out photos")
        chosen = {
            "train": photos[:train_per_class],
            "compare": photos[:compare_per_class],
            "held_out": photos[-HELD_OUT_PER_CLASS:],
            "select": photos[-SELECT_PER_CLASS:],
            "calib": photos[:train_per_class][:: max(1, train_per_class // CALIBRATION_PER_CLASS)][:CALIBRATION_PER_CLASS],
        }
        for name, paths in chosen.items():
            (folders[name] / label).mkdir()
            for path in paths:
                (folders[name] / label / path.name).symlink_to(path)
    return folders


def top1_on(path: Path, runtime: str, folder: Path, preprocess, num_classes: int) -> float:
    from deploykit.data import LabelledImages
    from deploykit.recipes.eval import count_hits
    from deploykit.runtime import cpu_runner

    with cpu_runner(path, runtime) as runner:
        hits = count_hits(runner, LabelledImages(folder, preprocess.transform, num_classes), 64, 2)
    return round(100 * hits.top1 / hits.images, 2)


def one_model(name: str, weights: Path, args: argparse.Namespace, work: Path) -> dict:
    from deploykit.compress.configs import DistillConfig, PruneConfig, QuantizeConfig
    from deploykit.errors import DeployKitError
    from deploykit.manifest import PRUNED_NAME
    from deploykit.profile import profile_model
    from deploykit.recipes.configs import ExportConfig
    from deploykit.recipes.export import export
    from deploykit.recipes.prune import run_prune
    from deploykit.recipes.ref import parse_model_ref
    from deploykit.recipes.train import run_distill

    folders = subset_folders(work, args.train_per_class, args.compare_per_class)
    reference = f"{name}:{weights}"
    log = {"model": name, "weights": weights.name, "stages": {}}
    started = time.perf_counter()

    def stage_done(stage: str, **figures) -> None:
        log["stages"][stage] = {**figures, "minutes": round((time.perf_counter() - started) / 60, 1)}
        print(json.dumps({name: {stage: log["stages"][stage]}}), flush=True)

    sizes = {}
    for size in args.compare_sizes:
        result = run_distill(reference, None, str(folders["compare"]), DistillConfig(epochs=1), work / f"size{size}", size, val_source=str(folders["select"]))
        sizes[size] = round(100 * result.best.val_top1, 2)
        stage_done(f"fine-tune at {size}", top1_select=sizes[size], seconds=result.history[0].seconds)
    best = max(sizes.values())
    size = min(s for s, top1 in sizes.items() if top1 >= best - SIZE_TOLERANCE)
    log["size_choice"] = {"top1_by_size": sizes, "chosen": size, "rule": f"the smallest size within {SIZE_TOLERANCE} points of the best"}

    teacher = run_distill(reference, None, str(folders["train"]), DistillConfig(epochs=args.epochs), work / "teacher", size, val_source=str(folders["select"]))
    stage_done(
        "teacher",
        best_epoch=teacher.best.epoch,
        top1_select=round(100 * teacher.best.val_top1, 2),
        history=[round(100 * r.val_top1, 2) for r in teacher.history],
        estimate_s=teacher.estimate_seconds,
        seconds=sum(r.seconds for r in teacher.history),
    )
    teacher_ref = parse_model_ref(str(work / "teacher"))
    variants = {"teacher": teacher_ref}
    for ratio in args.ratios:
        pruned = run_prune(teacher_ref, PruneConfig(ratio=ratio, round_to=8), work / f"pruned{ratio}", size)
        variants[f"pruned {ratio:g}"] = teacher_ref.with_checkpoint(work / f"pruned{ratio}" / PRUNED_NAME)
        kd = run_distill(
            variants[f"pruned {ratio:g}"], teacher_ref, str(folders["train"]), DistillConfig(epochs=args.kd_epochs), work / f"kd{ratio}", size, val_source=str(folders["select"])
        )
        variants[f"pruned {ratio:g} + distilled"] = parse_model_ref(str(work / f"kd{ratio}"))
        stage_done(
            f"pruned {ratio:g} + distilled",
            mac_reduction=round(1 - pruned.macs_after / pruned.macs_before, 3),
            start_top1_select=round(100 * kd.student_start_top1, 2),
            top1_select=round(100 * kd.best.val_top1, 2),
            seconds=sum(r.seconds for r in kd.history),
        )
    rows, files = [], {}
    for label, ref in variants.items():
        quantize = (
            QuantizeConfig(calib=folders["calib"], holdout=folders["select"], val=folders["select"], max_drop=1.0) if label == "teacher" or label.endswith("+ distilled") else None
        )  # pruned alone: FP32, to show the loss
        config = ExportConfig(out=work / "exports" / label.replace(" ", "_").replace("+", "kd"), dynamic_batch=True, input_size=size, quantize=quantize, time_runtimes=False)
        note = None
        try:
            result = export(config, ref)
        except DeployKitError as exc:  # an INT8 file that failed its gate: the FP32 file was still written
            note = str(exc)
            result = None
        folder = config.out / name
        model = ref.build()
        row = {"variant": label, "macs": profile_model(model, (1, 3, size, size)).macs, "note": note}
        files[label] = folder / "model.onnx"
        if (folder / "model.int8.onnx").is_file() and result is not None:
            files[f"{label} + INT8"] = folder / "model.int8.onnx"
            row["int8_check"] = result.int8.check.summary()
            row["int8_kept_fp32"] = [layer.node for layer in result.int8.kept_fp32]
        rows.append(row)
        stage_done(f"export {label}")
    preprocess = teacher_ref.preprocess(size)
    accuracy = {label: {runtime: top1_on(path, runtime, folders["held_out"], preprocess, 10) for runtime in ("ort", "openvino")} for label, path in files.items()}
    stage_done("top-1 on the held-out photos", accuracy=accuracy)
    spec = work / "timing.json"
    spec.write_text(json.dumps({"files": {label: str(path) for label, path in files.items()}, "size": size}))
    subprocess.run([sys.executable, __file__, "--time", str(spec)], check=True)
    latency = json.loads((work / "timing_result.json").read_text())
    stage_done("latency")
    macs = {row["variant"]: row["macs"] for row in rows}
    table = []
    for label in files:
        base = label.removesuffix(" + INT8")
        table.append(
            {
                "variant": label,
                "macs": macs[base],
                "top1": accuracy[label],
                "p50_ms": {f"{runtime} b{batch}": latency[label][runtime][str(batch)] for runtime in ("ort", "openvino") for batch in RUNS},
            }
        )
    log.update(
        {
            "input_size": size,
            "train_photos": 10 * args.train_per_class,
            "compare_photos_per_class": args.compare_per_class,
            "epochs": args.epochs,
            "kd_epochs": args.kd_epochs,
            "rows": rows,
            "table": table,
            "minutes": round((time.perf_counter() - started) / 60, 1),
        }
    )
    return log


def time_files(spec_path: Path) -> None:
    """Every file on onnxruntime and OpenVINO at batch 1 and 32, taking turns in rotated rounds (one process)."""
    from deploykit.bench.latency import measure_latency
    from deploykit.runtime import cpu_runner

    spec = json.loads(spec_path.read_text())
    size = spec["size"]
    runners = {(label, runtime): cpu_runner(Path(path), runtime) for label, path in spec["files"].items() for runtime in ("ort", "openvino")}
    samples = {(key, batch): [] for key in runners for batch in RUNS}
    try:
        for runner in runners.values():
            runner.load()
        for batch, runs in RUNS.items():
            x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
            order = list(runners.items())
            for round_index in range(ROUNDS):
                start = round_index % len(order)
                for key, runner in order[start:] + order[:start]:
                    samples[(key, batch)].append(measure_latency(partial(runner.infer, x), batch=batch, warmup=2, runs=runs).p50_ms)
    finally:
        for runner in reversed(list(runners.values())):  # OpenVINO's signal stacks must be released in reverse order
            runner.close()
    result: dict = {}
    for ((label, runtime), batch), values in samples.items():
        result.setdefault(label, {}).setdefault(runtime, {})[str(batch)] = {
            "p50": round(float(np.median(values)), 3),
            "spread": [round(float(np.percentile(values, 10)), 3), round(float(np.percentile(values, 90)), 3)],
        }
    (spec_path.parent / "timing_result.json").write_text(json.dumps(result))


def summary(log: dict) -> dict:
    """The issue's targets for one model, from its table: met or not."""
    rows = {row["variant"]: row for row in log["table"]}

    def fastest(row: dict, batch: int = 1) -> tuple[str, float]:
        return min(((runtime, row["p50_ms"][f"{runtime} b{batch}"]["p50"]) for runtime in ("ort", "openvino")), key=lambda c: c[1])

    teacher = rows["teacher"]
    runtime, teacher_ms = fastest(teacher)
    teacher_top1 = teacher["top1"][runtime]
    out: dict = {"teacher": {"top1": teacher_top1, "fastest": [runtime, teacher_ms], "target": ">= 90%", "met": teacher_top1 >= 90}}
    finals = []
    for label in rows:
        if label.endswith("+ distilled + INT8"):
            final_runtime, ms = fastest(rows[label])
            finals.append(
                {"variant": label, "fastest": [final_runtime, ms], "speedup": round(teacher_ms / ms, 2), "drop_points": round(teacher_top1 - rows[label]["top1"][final_runtime], 2)}
            )
    within = [f for f in finals if f["drop_points"] <= 1.0]
    best = max(within, key=lambda f: f["speedup"]) if within else min(finals, key=lambda f: f["drop_points"], default=None)
    if best is not None:
        out["pruned_distilled_int8"] = {
            **best,
            "target": ">= 2.5x at a drop <= 1.0 point, each on its fastest runtime (batch 1)",
            "met": best["speedup"] >= 2.5 and best["drop_points"] <= 1.0,
            "all": finals,
        }
    pruning = []
    for label in rows:
        if label.endswith("+ distilled"):
            for runtime in ("ort", "openvino"):
                for batch in RUNS:
                    key = f"{runtime} b{batch}"
                    pruning.append(
                        {
                            "variant": label,
                            "runtime": key,
                            "speedup": round(teacher["p50_ms"][key]["p50"] / rows[label]["p50_ms"][key]["p50"], 2),
                            "drop_points": round(teacher["top1"][runtime] - rows[label]["top1"][runtime], 2),
                        }
                    )
    good = [p for p in pruning if p["drop_points"] <= 1.0]
    out["pruning_alone"] = {
        "best": max(good, key=lambda p: p["speedup"]) if good else None,
        "target": ">= 1.6x FP32 vs FP32 on the same runtime at a drop <= 1.0 point after distillation",
        "met": any(p["speedup"] >= 1.6 for p in good),
        "all": pruning,
    }
    return out


def to_markdown(machine: dict, logs: list[dict]) -> str:
    lines = [
        "# Compression on CIFAR-10: fine-tune, prune, distil, INT8",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores ({', '.join(machine['cpu_flags'])}); {machine['date']}.",
        f"Versions: {', '.join(f'{k} {v}' for k, v in machine['versions'].items())}.",
        f"Command: `{machine['command']}`.",
        "",
        "Top-1 on the 5,000 held-out photos (the last 500 of each class, never trained on); p50 latency in ms, median of "
        f"{ROUNDS} rotated rounds in one process (10th-90th percentile of the rounds in brackets).",
        "",
    ]
    for log in logs:
        choice = log["size_choice"]
        lines += [
            f"## {log['model']} ({log['weights']}), input {log['input_size']}x{log['input_size']}",
            "",
            f"Input size: one epoch on the same {10 * log['compare_photos_per_class']} photos gave top-1 "
            + ", ".join(f"{s}px {t}%" for s, t in choice["top1_by_size"].items())
            + f" on the selection photos; chosen: "
            f"{choice['chosen']} ({choice['rule']}).",
            f"Training: {log['train_photos']} photos, teacher {log['epochs']} epochs, distillation {log['kd_epochs']} epochs; the whole model took {log['minutes']} min.",
            "",
            "| variant | MMACs | top-1 ort | top-1 OpenVINO | ort b1 | OpenVINO b1 | ort b32 | OpenVINO b32 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in log["table"]:
            cells = [
                f"{row['p50_ms'][k]['p50']:.2f} ({row['p50_ms'][k]['spread'][0]:.2f}-{row['p50_ms'][k]['spread'][1]:.2f})" for k in ("ort b1", "openvino b1", "ort b32", "openvino b32")
            ]
            lines.append(f"| {row['variant']} | {row['macs'] / 1e6:.1f} | {row['top1']['ort']:.2f} | {row['top1']['openvino']:.2f} | " + " | ".join(cells) + " |")
        notes = [f"- {row['variant']}: {row['note']}" for row in log["rows"] if row.get("note")]
        lines += ["", *notes, *targets(log["summary"]), ""]
    if machine.get("notes"):
        lines += ["## Notes on this run", "", *[f"- {note}" for note in machine["notes"]], ""]
    return "\n".join(lines) + "\n"


def targets(summary: dict) -> list[str]:
    """The issue's targets as a table: the figure measured, met or not."""
    teacher, final, pruning = summary["teacher"], summary.get("pruned_distilled_int8"), summary["pruning_alone"]
    lines = ["", "| target | measured | met |", "|---|---|---|", f"| teacher top-1 >= 90% | {teacher['top1']:.2f}% | {'yes' if teacher['met'] else 'no'} |"]
    if final:
        lines.append(
            f"| pruned + distilled + INT8 >= 2.5x the teacher's FP32, each on its fastest runtime (batch 1), within "
            f"1.0 point | {final['variant']}: {final['speedup']}x on {final['fastest'][0]}, "
            f"{final['drop_points']:.2f} points lost | {'yes' if final['met'] else 'no'} |"
        )
    fastest = max(pruning["all"], key=lambda p: p["speedup"], default=None)
    best = pruning["best"] or min(pruning["all"], key=lambda p: p["drop_points"], default=None)
    if best:
        lines.append(
            f"| pruning alone >= 1.6x FP32 vs FP32 on one runtime, <= 1.0 point after distillation | {best['variant']}: "
            f"{best['speedup']}x on {best['runtime']}, {best['drop_points']:.2f} points lost (fastest: {fastest['variant']}, "
            f"{fastest['speedup']}x on {fastest['runtime']}, {fastest['drop_points']:.2f} lost) | "
            f"{'yes' if pruning['met'] else 'no'} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mobilenet-weights", type=Path)
    parser.add_argument("--lite0-weights", type=Path)
    parser.add_argument("--models", default="mobilenet_v2,efficientnet_lite0")
    parser.add_argument("--train-per-class", type=int, default=2000)
    parser.add_argument("--compare-per-class", type=int, default=500)
    parser.add_argument("--compare-sizes", type=lambda t: [int(v) for v in t.split(",")], default=[64, 96])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--kd-epochs", type=int, default=2)
    parser.add_argument("--ratios", type=lambda t: [float(v) for v in t.split(",")], default=[0.3, 0.5], help="Pruning ratios for MobileNet-v2.")
    parser.add_argument(
        "--lite0-ratios", type=lambda t: [float(v) for v in t.split(",")], default=[0.3], help="Pruning ratios for EfficientNet-Lite0 (one, to fit the run in 90 minutes)."
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--time", type=Path, help=argparse.SUPPRESS)  # internal: time the files of a spec
    parser.add_argument("--markdown-from", type=Path, help="Only write compression.md again from a compression.json.")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one model, in a process of its own
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time:
        return time_files(args.time)
    if args.markdown_from:
        results = json.loads(args.markdown_from.read_text())
        return (args.out / "compression.md").write_text(to_markdown(results["machine"], results["results"]))
    if args.one:
        result = one_model(args.one, args.weights, args, args.workdir)
        return (args.workdir / "result.json").write_text(json.dumps(result))
    from deploykit.bench.machine import machine_info

    machine = machine_info().as_dict()
    weights = {"mobilenet_v2": args.mobilenet_weights, "efficientnet_lite0": args.lite0_weights}
    logs = []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix="compression-") as work:
            command = [
                sys.executable,
                __file__,
                "--one",
                name,
                "--weights",
                str(weights[name].resolve()),
                "--workdir",
                work,
                "--train-per-class",
                str(args.train_per_class),
                "--compare-per-class",
                str(args.compare_per_class),
                "--compare-sizes",
                ",".join(map(str, args.compare_sizes)),
                "--epochs",
                str(args.epochs),
                "--kd-epochs",
                str(args.kd_epochs),
                "--ratios",
                ",".join(map(str, args.lite0_ratios if name == "efficientnet_lite0" else args.ratios)),
            ]
            subprocess.run(command, check=True)
            log = json.loads((Path(work) / "result.json").read_text())
        log["summary"] = summary(log)
        logs.append(log)
        print(json.dumps(log["summary"]), flush=True)
        args.out.mkdir(parents=True, exist_ok=True)  # written after each model, so a cut-short run keeps what it measured
        (args.out / "compression.json").write_text(json.dumps({"machine": machine, "results": logs}, indent=1) + "\n")
        (args.out / "compression.md").write_text(to_markdown(machine, logs))
    print(f"wrote {args.out / 'compression.md'}")


if __name__ == "__main__":
    main()
