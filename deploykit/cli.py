"""The ``deploykit`` command line: parses options, calls the library, prints the result."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

# Only light modules at the top: every command imports what it needs (torch, onnx, onnxruntime) itself,
# so `deploykit --help` and `deploykit list` start at once.
from deploykit.bench.presets import DEVICES, ENGINES, PRECISIONS, get_preset, load_presets
from deploykit.cli_types import FiniteFloatRange, input_size_option
from deploykit.choices import (AMP_TYPES, CALIBRATION_METHODS, DEFAULT_OPSET, IMAGENET_MEAN, IMAGENET_STD, INT8_TARGETS,
                               MAX_THREADS, MAX_WORKERS, PRUNE_METHODS)
from deploykit.data import DEFAULT_CALIBRATION_DIR, DEFAULT_HOLDOUT_DIR
from deploykit.errors import DeployKitError
from deploykit.io import atomic_write_bytes, atomic_write_json
from deploykit.parity import Tolerances
from deploykit.progress import live, stage

# Piped or captured output gets a wide console, so tables are not cut at 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=160, soft_wrap=True)
MAX_WARMUP_SECONDS = 600
TRT_LAYOUT_HINT = ", or time it on TensorRT, the runtime its layout (--target trt) is for"


class UserError(click.ClickException):
    """A DeployKitError as click shows it: ``Error: <message>`` on stderr, exit code 2."""

    exit_code = 2


class DeployKitGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DeployKitError as exc:
            raise UserError(str(exc)) from exc
        except KeyboardInterrupt:
            _interrupted()
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # staged writes leave the previous artifacts intact
                raise UserError(f"the disk is full ({exc.filename or 'writing output'}); nothing was published: free space "
                                "or choose another --out") from exc
            raise


@click.group(cls=DeployKitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deploykit")
def cli() -> None:
    """deploykit: take a CNN classifier from PyTorch to a fast, verified deployment artifact."""


def _meta_model(name: str, **kwargs):
    """Build a registry model on the meta device: shapes only, no memory, no initialisation cost."""
    import torch

    from deploykit.models import get_model

    with torch.device("meta"):
        return get_model(name, **kwargs)


@cli.command("list")
@click.argument("pattern", default="*")
def list_command(pattern: str) -> None:
    """List registered models matching PATTERN (shell-style, e.g. 'resnet*')."""
    from deploykit.catalog import read_catalog

    entries = read_catalog(pattern)
    if not entries:
        raise DeployKitError(f"no model matches {pattern!r}; run `deploykit list` to see every model")
    table = Table(title=f"{len(entries)} models", title_justify="left")
    for column, justify in [("name", "left"), ("family", "left"), ("params (eval)", "right"), ("GMACs", "right"), ("input", "right")]:
        table.add_column(column, justify=justify)
    for entry in entries:
        table.add_row(entry.name, entry.family, f"{entry.params:,}", f"{entry.macs / 1e9:.2f}", f"{entry.input_size}x{entry.input_size}")
    console.print(table)


@cli.command("info")
@click.argument("name")
@input_size_option()
def info_command(name: str, input_size: int | None) -> None:
    """Show a model's spec and a per-stage summary: output shape, params, MACs."""
    from deploykit.models import get_spec
    from deploykit.profile import profile_model

    spec = get_spec(name)
    size = input_size or spec.input_size
    if size < spec.min_input_size:
        raise DeployKitError(f"{spec.name} needs inputs of at least {spec.min_input_size}x{spec.min_input_size}, got {size}")
    profile = profile_model(_meta_model(spec.name), (1, 3, size, size))
    console.print(f"[bold]{spec.name}[/bold] ({spec.family}): {spec.paper}")
    console.print(f"input 3x{size}x{size}, {spec.num_classes} classes, mean {spec.mean}, std {spec.std}")
    training_only = profile.params - profile.inference_params
    aux_note = f" (+{training_only:,} in training-only auxiliary heads)" if training_only else ""
    console.print(f"params {profile.inference_params:,}{aux_note}, MACs {profile.macs / 1e9:.3f} G, FLOPs {profile.flops / 1e9:.3f} G")
    if spec.reference:
        ref = spec.reference
        top1 = f", top-1 {ref.top1:.2f}%" if ref.top1 is not None else ""
        console.print(f"reference ({ref.source}): params {ref.params:,}, GMACs {ref.gmacs:.2f}{top1}")
    if spec.torchvision_compatible:
        console.print("state_dict matches torchvision's: its checkpoints load with strict=True")
    _print_published_weights(spec.name)
    table = Table(title="stages", title_justify="left")
    for column, justify in [("stage", "left"), ("output", "left"), ("params", "right"), ("MMACs", "right")]:
        table.add_column(column, justify=justify)
    for summary in profile.stages:
        shape = "x".join(str(d) for d in summary.output_shape[1:]) if summary.output_shape else "-"
        table.add_row(summary.name, shape, f"{summary.params:,}", f"{summary.macs / 1e6:.1f}")
    console.print(table)


def _print_published_weights(name: str) -> None:
    from deploykit.models.pretrained import published_weights

    available = published_weights(name)
    if not available:
        console.print(f"no published pretrained weights for {name}: pass --weights PATH to a checkpoint of your own")
        return
    table = Table(title="pretrained weights (--weights TAG)", title_justify="left")
    for column in ("tag", "top-1", "top-5", "eval resize/crop", "file"):
        table.add_column(column, justify="right" if column.startswith("top") else "left")
    for weights in available:
        tag = f"{weights.tag} (DEFAULT)" if weights.default else weights.tag
        table.add_row(tag, f"{weights.top1:.2f}", f"{weights.top5:.2f}", f"{weights.resize}/{weights.crop} {weights.interpolation}",
                      weights.file_name)
    console.print(table)


def _tolerance_options(command):
    """--rel-error/--min-cosine/--min-top1: the parity pass criteria, shared by export and compare."""
    defaults = Tolerances()
    command = click.option("--min-top1", type=FiniteFloatRange(0, 1), default=defaults.min_top1, show_default=True,
                           help="Minimum top-1 agreement (fraction of inputs).")(command)
    command = click.option("--min-cosine", type=FiniteFloatRange(-1, 1), default=defaults.min_cosine, show_default=True,
                           help="Minimum cosine similarity of the logits, per input.")(command)
    return click.option("--rel-error", type=FiniteFloatRange(min=0), default=defaults.rel_error, show_default=True,
                        help="Maximum abs error, as a fraction of the reference logit range.")(command)


def _foreign_onnx_options(command):
    """--input-size/--mean/--std: preprocessing for an ONNX file with no manifest (ImageNet defaults)."""
    for option in reversed([
        input_size_option("Input size of an ONNX file with a dynamic size and no manifest: N (square) or H W."),
        click.option("--mean", nargs=3, type=float, default=IMAGENET_MEAN, show_default=True,
                     help="Per-channel mean for an ONNX file with no manifest."),
        click.option("--std", nargs=3, type=float, default=IMAGENET_STD, show_default=True,
                     help="Per-channel std for an ONNX file with no manifest."),
    ]):
        command = option(command)
    return command


@cli.command("export")
@click.argument("name", required=False)
@click.option("--module", "module", help="Export your own nn.Module instead: path/to/file.py:function (called with no arguments).")
@click.option("--weights", help="Published weights (IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT, imagenet) or a checkpoint file; "
              "default: seeded random init, for structure and latency only.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("deploykit-out"), show_default=True,
              help="Output folder; the export goes to OUT/NAME/.")
@click.option("--opset", type=click.IntRange(min=18), default=DEFAULT_OPSET, show_default=True, help="ONNX opset.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Fixed batch size.")
@click.option("--dynamic-batch", is_flag=True, help="Export with a dynamic batch dimension instead of --batch.")
@input_size_option()
@click.option("--simplify/--no-simplify", default=True, show_default=True, help="Simplify with onnxslim when parity holds.")
@click.option("--fp16", is_flag=True, help="Also write model.fp16.onnx (float16 weights and compute), checked against PyTorch.")
@click.option("--fp16-io", is_flag=True, help="With --fp16: float16 graph inputs and outputs too (default float32).")
@_tolerance_options
@click.option("--int8", is_flag=True, help="Also write a calibrated Q/DQ INT8 model (model.int8.onnx).")
@click.option("--calib", type=click.Path(exists=False, path_type=Path), default=DEFAULT_CALIBRATION_DIR,
              show_default="bundled photos", help="Calibration images (flat or class subfolders) or .npy/.npz arrays.")
@click.option("--calib-size", type=click.IntRange(min=1), default=64, show_default=True, help="Calibration samples to use.")
@click.option("--calib-method", type=click.Choice(CALIBRATION_METHODS), default="auto", show_default=True,
              help="Activation ranges: mean of per-image min/max (robust), global min/max, onnxruntime's histograms, "
              "or auto: whichever of the first two is closer to FP32 on the calibration images.")
@click.option("--bias-correction/--no-bias-correction", default=True, show_default=True,
              help="Fold each conv's mean weight-rounding error into its bias.")
@click.option("--per-channel/--per-tensor", default=True, show_default=True, help="Weight quantization granularity.")
@click.option("--exclude", multiple=True, help="Keep matching layers in FP32 (shell pattern over layer names; repeatable).")
@click.option("--target", type=click.Choice(INT8_TARGETS), default="cpu", show_default=True,
              help="cpu: uint8 activations (fast on x86); trt: symmetric int8 for TensorRT.")
@click.option("--int8-min-cosine", type=FiniteFloatRange(-1, 1), default=0.985, show_default=True,
              help="Gate without --val: mean logit cosine of INT8 vs FP32 on the held-out images.")
@click.option("--int8-min-confident-agreement", type=FiniteFloatRange(0, 1), default=0.9, show_default=True,
              help="Gate without --val: top-1 agreement with FP32 on the held-out images FP32 is confident on "
              "(top-1 probability >= 0.5; gated where there are at least 8).")
@click.option("--int8-min-top5", type=FiniteFloatRange(0, 1), default=0.9, show_default=True,
              help="Gate without --val: share of held-out images whose FP32 top-1 is in the INT8 top-5.")
@click.option("--val", type=click.Path(file_okay=False, path_type=Path),
              help="Labelled folder (class subfolders): gate INT8 on its top-1 drop instead (--max-drop).")
@click.option("--max-drop", type=FiniteFloatRange(min=0), default=1.0, show_default=True,
              help="With --val: top-1 points INT8 may lose against FP32.")
@click.option("--mean", nargs=3, type=float, default=IMAGENET_MEAN, show_default=True,
              help="Per-channel mean, for an ONNX file given as NAME (a model's own otherwise).")
@click.option("--std", nargs=3, type=float, default=IMAGENET_STD, show_default=True,
              help="Per-channel std, for an ONNX file given as NAME (a model's own otherwise).")
@click.option("--holdout", type=click.Path(path_type=Path), default=DEFAULT_HOLDOUT_DIR, show_default="bundled photos",
              help="Held-out images (or .npy/.npz arrays) for the INT8 accuracy check; not used for calibration.")
@click.option("--prune", "prune_ratio", type=float, help="First prune this fraction of channels (see `deploykit prune`).")
@click.option("--distill-from", "teacher", help="Then distil from this teacher (NAME:CHECKPOINT) on --data.")
@click.option("--data", help="Training data for --distill-from or fine-tuning after --prune: a labelled folder or 'digits'.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="Epochs of distillation/fine-tuning/QAT.")
@click.option("--qat", is_flag=True, help="With --int8: quantization-aware fine-tuning from the PTQ ranges, the FP32 model "
              "as teacher, on --data (labels optional; default: the calibration images).")
@click.option("--qat-lr", type=FiniteFloatRange(min=0, min_open=True), default=3e-6, show_default=True, help="QAT learning rate (Adam).")
def export_command(name: str | None, module: str | None, weights: str | None, out: Path, opset: int, batch: int, dynamic_batch: bool,
                   input_size: int | None, simplify: bool, fp16: bool, fp16_io: bool, rel_error: float, min_cosine: float, min_top1: float,
                   int8: bool, calib: Path, calib_size: int, calib_method: str, bias_correction: bool, per_channel: bool,
                   exclude: tuple[str, ...], target: str, int8_min_cosine: float, int8_min_confident_agreement: float,
                   int8_min_top5: float, val: Path | None,
                   max_drop: float, holdout: Path, prune_ratio: float | None, teacher: str | None,
                   data: str | None, epochs: int, qat: bool, qat_lr: float, mean: tuple, std: tuple) -> None:
    """Export NAME to ONNX (and INT8), verify it, and write OUT/NAME/model.onnx + manifest.json.

    NAME is a registry name, NAME:CHECKPOINT, NAME:IMAGENET1K_V1 or a pruned folder; or an ONNX file of your own,
    taken as it is, whose FP16 (--fp16) and INT8 (--int8) files are made with the same checks, into OUT/FILE-STEM/. With
    --prune/--distill-from/--data the model is first pruned and distilled, each stage recorded in the manifest.
    With --int8 --qat, --data is the QAT images (and fine-tunes only after --prune or --distill-from).
    """
    from deploykit.compress.qat import QatConfig
    from deploykit.compress.quantize import QuantizeConfig
    from deploykit.recipes.compress import Compression, compress_and_export
    from deploykit.recipes.export import ExportConfig

    if dynamic_batch and batch != 1:
        raise DeployKitError("--batch and --dynamic-batch exclude each other: a dynamic batch has no fixed size")
    quantize = QuantizeConfig(calib=calib, calib_size=calib_size, method=calib_method, per_channel=per_channel,
                              bias_correction=bias_correction, exclude=exclude, target=target, holdout=holdout,
                              min_cosine=int8_min_cosine, min_top5=int8_min_top5,
                              min_confident_agreement=int8_min_confident_agreement, val=val, max_drop=max_drop) if int8 else None
    config = ExportConfig(
        name=name, out=out, weights=weights, opset=opset, batch=batch, dynamic_batch=dynamic_batch,
        input_size=input_size, simplify=simplify, tolerances=Tolerances(rel_error, min_cosine, min_top1), int8=quantize,
        fp16=fp16 or fp16_io, fp16_io=fp16_io, module=module, qat=QatConfig(epochs=epochs, lr=qat_lr) if qat else None,
        qat_data=data if qat and data else None, mean=tuple(mean), std=tuple(std),
    )
    train_on = data if not qat or prune_ratio is not None or teacher else None
    with live(), stage(f"export {name or module}"):
        result = compress_and_export(config, Compression(prune_ratio, teacher, train_on, epochs))
    for step, record in result.stages.items():
        if step == "prune":
            console.print(f"pruned: MACs {record['macs_before'] / 1e9:.3f} G -> {record['macs_after'] / 1e9:.3f} G")
        else:
            console.print(f"{step}: val top-1 {record['student_start_top1']:.2%} -> {record['history'][-1]['val_top1']:.2%}")
    if result.parity is not None:
        console.print(f"[green]wrote[/green] {result.onnx_path} ({_size(result.onnx_path)}, exported in {result.export_seconds:.1f} s"
                      f"{', simplified' if result.simplified else ''})")
    else:
        console.print(f"[green]wrote[/green] {result.onnx_path} ({_size(result.onnx_path)}, your file as it is)")
    for path, made in ((result.fp16_path, result.fp16_parity is not None), (result.int8_path, result.int8 is not None)):
        if made:
            console.print(f"[green]wrote[/green] {path} ({_size(path)})")
    for note in result.notes:
        console.print(f"note: {note}")
    if result.int8_slower:
        latency = result.int8_latency
        console.print(f"INT8 IS SLOWER THAN FP32 on onnxruntime's CPU provider ({latency.int8_ms:.2f} ms vs {latency.fp32_ms:.2f} ms): "
                      f"deploy the FP32 model here{TRT_LAYOUT_HINT if result.int8.settings['target'] == 'trt' else ''}", style="bold red")
    if result.random_weights:
        _warn_random_weights()


def _size(path: Path) -> str:
    """A file's size as people read it: 812 kB, 14.0 MB."""
    size = path.stat().st_size
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB" if size >= 1e3 else f"{size} bytes"


def _warn_random_weights() -> None:
    from deploykit.recipes.ref import RANDOM_WEIGHTS_WARNING

    console.print(f"warning: {RANDOM_WEIGHTS_WARNING}", style="bold yellow")


@cli.command("compare")
@click.argument("a")
@click.argument("b")
@input_size_option("Input size: N (square) or H W; default: from the model or manifest.")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_CALIBRATION_DIR,
              show_default="bundled photos", help="Folder of real images added to the random inputs.")
@click.option("--no-images", is_flag=True, help="Compare on fixed-seed random inputs only.")
@click.option("--per-layer", is_flag=True, help="Also compare every layer's output and name the first that diverges.")
@click.option("--layer-tolerance", type=FiniteFloatRange(min=0), default=1e-3, show_default=True,
              help="Per-layer limit: max abs error over the layer's max abs activation.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the report as JSON.")
@_tolerance_options
def compare_command(a: str, b: str, input_size: int | None, images: Path, no_images: bool, per_layer: bool,
                    layer_tolerance: float, json_path: Path | None, rel_error: float, min_cosine: float, min_top1: float) -> None:
    """Compare outputs of A and B (a model name, NAME:CHECKPOINT, NAME:TAG, an .onnx file or an export folder).

    Exits with code 1 when parity fails.
    """
    from deploykit.recipes.compare import CompareConfig, compare

    _check_writable(json_path)
    config = CompareConfig(input_size=input_size, images=None if no_images else images, per_layer=per_layer,
                           layer_tolerance=layer_tolerance, tolerances=Tolerances(rel_error, min_cosine, min_top1))
    result = compare(a, b, config)
    if result.int8 is not None:  # B is A's INT8 file: judged by the gate export applied, not by FP32 parity tolerances
        verdict = "PASS" if result.int8.passed else "FAIL (" + "; ".join(result.int8.failures) + ")"
        console.print(f"{a} vs {b}: INT8 vs FP32, the export's gate (from its manifest): {verdict} {result.int8.summary()}")
        console.print(f"logits, for diagnosis (not judged for INT8): {result.parity.figures()}")
    elif result.twin == "fp16":
        console.print(f"{a} vs {b}: FP16 vs FP32, the export's FP16 tolerances: {result.parity.summary()}")
    else:
        console.print(f"{a} vs {b}: {result.parity.summary()}")
    if result.random_weights:
        _warn_random_weights()
    if result.layers is not None:
        _print_layers(result.layers, result.first_divergent, layer_tolerance)
        _print_saturation(result.saturation)
    if json_path:
        atomic_write_json(json_path, result.as_dict())
    if not result.passed:
        raise SystemExit(1)


def _print_layers(diffs, culprit, tolerance: float) -> None:
    shown = diffs if len(diffs) <= 40 else diffs[:20] + [d for d in diffs[20:] if d is culprit]
    divergent_later = " and the first divergent" if len(shown) > 20 else ""
    cut = f", the first 20{divergent_later} shown; all of them in --json" if len(shown) < len(diffs) else ""
    table = Table(title=f"per-layer comparison ({len(diffs)} layers matched{cut})", title_justify="left")
    for column in ("layer", "type", "rel error", "max abs error"):
        table.add_column(column, justify="left" if column in ("layer", "type") else "right")
    for diff in shown:
        style = "bold red" if diff is culprit else None
        table.add_row(diff.name, diff.kind, f"{diff.rel_error:.3g}", f"{diff.max_abs_error:.3g}", style=style)
    console.print(table)
    if culprit:
        console.print(f"[bold red]first divergent layer:[/bold red] {culprit.name} ({culprit.kind}): "
                      f"relative error {culprit.rel_error:.3g} > {tolerance:g}")
    else:
        console.print(f"every layer within {tolerance:g}")


def _print_saturation(saturation) -> None:
    if not saturation:
        return
    table = Table(title="most clipped INT8 quantizers (values beyond their range)", title_justify="left")
    for column in ("tensor", "values clipped", "images with clipping", "range"):
        table.add_column(column, justify="left" if column == "tensor" else "right")
    for entry in saturation:
        table.add_row(entry.tensor, f"{entry.clipped:.3%}", f"{entry.images:.0%}", f"[{entry.low:.3g}, {entry.high:.3g}]")
    console.print(table)


@cli.command("bench")
@click.argument("models", nargs=-1, required=True)
@click.option("--engine", type=click.Choice(ENGINES), help="Backend (default torch, or the preset's).")
@click.option("--device", type=click.Choice(DEVICES), help="cpu or cuda (default cpu, or the preset's).")
@click.option("--precision", type=click.Choice(PRECISIONS), help="fp32, fp16 or int8 (default fp32, or the preset's).")
@click.option("--batch", "batches", help="Comma-separated batch sizes, e.g. 1,8,32 (default 1, or the preset's).")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), help="CPU threads (torch, ONNX Runtime, OpenVINO).")
@click.option("--target", help=f"A deployment preset: {', '.join(load_presets())}, or one from --presets.")
@click.option("--presets", type=click.Path(dir_okay=False, path_type=Path), help="Extra presets (TOML file).")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), help="Labelled folder (class subfolders) for accuracy.")
@click.option("--runs", type=click.IntRange(1, 100_000), default=50, show_default=True, help="Timed runs per batch size.")
@click.option("--warmup", default="10", show_default=True, help="Untimed warm-up: a number of runs, or seconds such as 2s.")
@click.option("--ort-provider", type=click.Choice(["cpu", "cuda", "tensorrt"]), help="ONNX Runtime execution provider (default: --device).")
@click.option("--channels-last", is_flag=True, help="torch: channels_last memory format.")
@click.option("--compile", "compile_", is_flag=True, help="torch: torch.compile the model.")
@click.option("--cuda-graphs", is_flag=True, help="torch: capture and replay a CUDA graph.")
@click.option("--no-data-transfers", is_flag=True, help="trt: time the engine alone, input kept on the GPU (trtexec's --noDataTransfers).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("deploykit-out"), show_default=True,
              help="Where models given by name are exported.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write results as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Write results as CSV.")
@click.option("--md", "md_path", type=click.Path(dir_okay=False, path_type=Path), help="Write results as a Markdown table.")
@_foreign_onnx_options
def bench_command(models, engine, device, precision, batches, threads, target, presets, data, runs, warmup, ort_provider,
                  channels_last, compile_, cuda_graphs, no_data_transfers, out, json_path, csv_path, md_path, input_size, mean,
                  std) -> None:
    """Measure latency (p50/p90/p99), throughput, memory and accuracy of MODELS on one backend.

    MODELS are model references: NAME, NAME:CHECKPOINT, NAME:TAG, export folders, or any ONNX classifier file.
    """
    from deploykit.runtime.availability import require_backend

    for path in (json_path, csv_path, md_path):
        _check_writable(path)
    preset = get_preset(target, presets) if target else None
    # Before anything heavy is imported or run: a missing GPU or backend is one line within a second or two.
    require_backend(engine or (preset.engine if preset else "torch"), device or (preset.device if preset else "cpu"), ort_provider)

    from deploykit.bench.machine import machine_info
    from deploykit.bench.report import to_markdown
    from deploykit.recipes.bench import BenchConfig, run_benchmark

    config = BenchConfig(
        engine=engine or (preset.engine if preset else "torch"), device=device or (preset.device if preset else "cpu"),
        precision=precision or (preset.precision if preset else "fp32"),
        batches=_batches(batches) if batches else (preset.batches if preset else (1,)),
        threads=threads or (preset.threads if preset else None), runs=runs, **_warmup(warmup), data=data, out=out,
        ort_provider=ort_provider, channels_last=channels_last, compile=compile_, cuda_graphs=cuda_graphs,
        input_size=input_size, mean=mean, std=std, no_data_transfers=no_data_transfers,
        workspace_gb=(preset.workspace_gb if preset and preset.workspace_gb else 4.0),
    )
    rows = []
    for model in models:
        with live(), stage(f"benchmarking {model} on {config.engine} ({config.device}, {config.precision})"):
            rows += run_benchmark(model, config)
    table = Table(title=f"{config.engine} on {config.device}, {config.precision}" + (f" (target {target})" if target else ""),
                  title_justify="left")
    for column in ("model", "batch", "p50 ms", "p90 ms", "p99 ms", "img/s", "FP32 agree", "top-1", "peak RSS MB"):
        table.add_column(column, justify="left" if column == "model" else "right", no_wrap=column == "model")
    for row in rows:
        top1 = f"{row['accuracy_top1']:.1%}" if "accuracy_top1" in row else "-"
        table.add_row(row["model"], str(row["batch"]), f"{row['p50_ms']:.2f}", f"{row['p90_ms']:.2f}", f"{row['p99_ms']:.2f}",
                      f"{row['throughput']:.1f}", "-" if row["agreement_top1"] is None else f"{row['agreement_top1']:.1%}", top1,
                      f"{row['peak_rss_mb']:.0f}")
    console.print(table)
    for model, timed in dict.fromkeys((row["model"], row["file"]) for row in rows if row["file"]):
        console.print(f"{model}: timed {timed}")
    if any(row["random_weights"] for row in rows):
        _warn_random_weights()
    payload = {"machine": machine_info(), "config": {"target": target, **{k: str(v) if isinstance(v, Path) else v
                                                                          for k, v in config.__dict__.items()}}, "results": rows}
    if json_path:
        atomic_write_json(json_path, payload)
    if csv_path:
        atomic_write_bytes(csv_path, _csv(rows).encode())
    if md_path:
        atomic_write_bytes(md_path, to_markdown(rows).encode())


def _check_writable(path: Path | None) -> None:
    """A results file must be writable before a long run, not found unwritable after it."""
    if path is None:
        return
    folder = Path(path).resolve().parent
    if Path(path).is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK):
        raise DeployKitError(f"cannot write {path}: {'it is a folder' if Path(path).is_dir() else 'its folder is missing or not writable'};"
                             " choose another path")


def _warmup(text: str) -> dict:
    """--warmup 10 (runs) or --warmup 2s (seconds)."""
    try:
        if text.endswith("s"):
            seconds = float(text[:-1])
            if 0 < seconds <= MAX_WARMUP_SECONDS:  # NaN and inf fail this too
                return {"warmup": 0, "warmup_seconds": seconds}
        elif 0 <= int(text) <= 100_000:
            return {"warmup": int(text)}
    except ValueError:
        pass
    raise DeployKitError(f"--warmup takes a number of runs (0 to 100000, e.g. 10) or seconds (up to {MAX_WARMUP_SECONDS}s, "
                         f"e.g. 2s), got {text!r}")


def _batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError as exc:
        raise DeployKitError(f"--batch takes comma-separated positive integers such as 1,8,32, got {text!r}") from exc
    if not values or min(values) < 1:
        raise DeployKitError(f"--batch takes comma-separated positive integers such as 1,8,32, got {text!r}")
    return values


def _csv(rows: list[dict]) -> str:
    import csv
    import io

    columns = sorted({key for row in rows for key in row}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 999)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


@cli.command("eval")
@click.argument("model")
@click.option("--data", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Labelled folder: one subfolder per class (ImageNet synsets n01440764..., class indices, or names).")
@click.option("--engine", type=click.Choice(ENGINES), default="ort", show_default=True, help="Backend to evaluate on.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 1024), default=32, show_default=True)
@click.option("--workers", type=click.IntRange(0, MAX_WORKERS), default=2, show_default=True, help="DataLoader worker processes.")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate on this many images, spread over the folder (default: all).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("deploykit-out"), show_default=True,
              help="Where models given by name are exported.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the result as JSON.")
@_foreign_onnx_options
def eval_command(model, data, engine, precision, batch_size, workers, limit, out, json_path, input_size, mean, std) -> None:
    """Top-1/top-5 of MODEL (any model reference, or any ONNX classifier) on a labelled folder, streamed."""
    from deploykit.runtime.availability import require_backend

    _check_writable(json_path)
    require_backend(engine)  # before anything heavy is imported or run

    from deploykit.recipes.eval import EvalConfig, evaluate

    config = EvalConfig(data=data, engine=engine, precision=precision, batch_size=batch_size, workers=workers, limit=limit,
                        input_size=input_size, mean=tuple(mean), std=tuple(std), out=out)
    with live():
        result = evaluate(model, config)
    table = Table(title=f"{result.model} on {result.engine} ({result.precision})", title_justify="left")
    for column in ("images", "top-1", "top-5", "seconds"):
        table.add_column(column, justify="right")
    table.add_row(str(result.images), f"{result.top1:.2%}", f"{result.top5:.2%}", f"{result.seconds:.1f}")
    console.print(table)
    console.print(f"{data}: {result.class_rule}")
    for note in result.notes:
        console.print(f"note: {note}", style="yellow")
    if json_path:
        atomic_write_json(json_path, result.as_dict())


@cli.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("deploykit-report"), show_default=True,
              help="Folder for report.md and pareto.png.")
def report_command(results: tuple[Path, ...], out: Path) -> None:
    """Merge benchmark JSON files into a Markdown table and an accuracy-vs-latency plot (Pareto front marked)."""
    from deploykit.bench.report import load_results, write_report

    rows = load_results(list(results))
    markdown, picture = write_report(rows, out)
    console.print(f"[green]wrote[/green] {markdown} and {picture} ({len(rows)} results)")


@cli.command("build-engine")
@click.argument("onnx_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "engine_path", type=click.Path(dir_okay=False, path_type=Path), help="Engine file (default: beside the ONNX).")
@click.option("--fp16", is_flag=True, help="Allow FP16 kernels (TensorRT 10).")
@click.option("--min-batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--opt-batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--max-batch", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--workspace-gb", type=click.FloatRange(min=0.1), default=4.0, show_default=True)
@click.option("--timing-cache", type=click.Path(dir_okay=False, path_type=Path), help="Timing cache to reuse and update.")
def build_engine_command(onnx_path, engine_path, fp16, min_batch, opt_batch, max_batch, workspace_gb, timing_cache) -> None:
    """Build a TensorRT engine from an ONNX file (Q/DQ INT8 files build INT8 engines)."""
    from deploykit.export.onnx import load_onnx
    from deploykit.export.tensorrt import EngineConfig, build_engine

    load_onnx(onnx_path)
    engine_path = engine_path or onnx_path.with_suffix(".engine")
    record = build_engine(onnx_path, engine_path, EngineConfig(fp16, min_batch, opt_batch, max_batch, workspace_gb, timing_cache))
    console.print(f"[green]wrote[/green] {engine_path} (TensorRT {record['tensorrt']}, {record['gpu']}, sm {record['compute_capability']})")


@cli.command("prune")
@click.argument("name")
@click.option("--weights", help="Published weights (IMAGENET1K_V1, DEFAULT, ...) or a checkpoint to prune (default: seeded random init).")
@click.option("--ratio", type=float, help="Fraction of channels to remove in each coupled group, in (0, 1).")
@click.option("--target-macs", type=float, help="Prune until the model has at most this many GMACs.")
@click.option("--method", type=click.Choice(PRUNE_METHODS), default="l2", show_default=True, help="Channel importance.")
@click.option("--global", "global_pruning", is_flag=True, help="Rank channels across layers instead of per layer.")
@click.option("--round-to", type=click.IntRange(min=1), help="Keep channel counts multiples of this (e.g. 8 for tensor cores).")
@input_size_option()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("deploykit-out/pruned"), show_default=True)
def prune_command(name, weights, ratio, target_macs, method, global_pruning, round_to, input_size, out) -> None:
    """Prune NAME's channels for real, export it to ONNX with parity, and compare size and latency."""
    from deploykit.compress.prune import PruneConfig
    from deploykit.recipes.compress import prune_and_export

    config = PruneConfig(ratio=ratio, target_macs=target_macs * 1e9 if target_macs else None, method=method,
                         global_pruning=global_pruning, round_to=round_to)
    with live(), stage(f"pruning {name}"):
        report, result = prune_and_export(name, weights, config, out, input_size)
    console.print(f"params {report.params_before:,} -> {report.params_after:,}, MACs {report.macs_before / 1e9:.3f} G -> "
                  f"{report.macs_after / 1e9:.3f} G ({report.mac_reduction:.0%} fewer)")
    console.print(f"torch CPU latency, batch 1: {report.torch_cpu_ms_before:.2f} ms -> {report.torch_cpu_ms_after:.2f} ms "
                  f"([bold]{report.speedup:.2f}x[/bold])")
    if report.slower_warning():
        console.print(report.slower_warning(), style="bold red")
    console.print(f"[green]wrote[/green] {result.folder / 'pruned.pth'} and {result.onnx_path}")


def _distill_options(command):
    for option in reversed([
        click.option("--data", required=True, help="'digits' (built in) or a folder of class subfolders."),
        click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.05, show_default=True),
        click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        input_size_option(),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder."),
        click.option("--resume/--no-resume", default=True, show_default=True, help="Continue from OUT/last.pth if present."),
        click.option("--workers", type=click.IntRange(0, MAX_WORKERS), help="DataLoader worker processes (default: up to 4)."),
        click.option("--amp", type=click.Choice(AMP_TYPES), default="off", show_default=True,
                     help="Mixed precision: bf16 (CPU or CUDA) or fp16 (CUDA, with loss scaling)."),
    ]):
        command = option(command)
    return command


@cli.command("distill")
@click.option("--teacher", required=True, help="The trained teacher: NAME:CHECKPOINT, NAME:IMAGENET1K_V1 or an export folder.")
@click.option("--student", required=True, help="NAME, NAME:CHECKPOINT or a folder written by `deploykit prune`.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=4.0, show_default=True)
@click.option("--alpha", type=FiniteFloatRange(0, 1), default=0.9, show_default=True, help="Weight of the soft (teacher) loss.")
@_distill_options
def distill_command(teacher, student, temperature, alpha, data, epochs, lr, batch_size, seed, input_size, out, resume, workers,
                    amp) -> None:
    """Distil a teacher into a student (Hinton KD). Under torchrun, trains with DistributedDataParallel."""
    from deploykit.compress.distill import DistillConfig
    from deploykit.recipes.compress import run_distill

    config = DistillConfig(epochs=epochs, temperature=temperature, alpha=alpha, lr=lr, batch_size=batch_size, seed=seed, amp=amp)
    with live():
        _print_training(run_distill(student, teacher, data, config, out, input_size, resume, _print_epoch, workers))


@cli.command("train")
@click.argument("model")
@_distill_options
def train_command(model, data, epochs, lr, batch_size, seed, input_size, out, resume, workers, amp) -> None:
    """Train MODEL (NAME, NAME:CHECKPOINT or a pruned folder) on labelled data, e.g. a teacher for distill."""
    from deploykit.compress.distill import DistillConfig
    from deploykit.recipes.compress import run_distill

    config = DistillConfig(epochs=epochs, alpha=0.0, lr=lr, batch_size=batch_size, seed=seed, amp=amp)
    with live():
        _print_training(run_distill(model, None, data, config, out, input_size, resume, _print_epoch, workers))


def _print_epoch(record: dict) -> None:
    console.print(f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, val top-1 {record['val_top1']:.2%}")


def _print_training(result) -> None:
    if result.world_size > 1 and os.environ.get("RANK", "0") != "0":
        return
    console.print(f"data {result.data}: {result.class_rule}")
    teacher = f", teacher {result.teacher_top1:.2%}" if result.teacher_top1 is not None else ""
    console.print(f"val top-1: start {result.student_start_top1:.2%} -> {result.history[-1]['val_top1']:.2%}{teacher}")
    console.print(f"[green]wrote[/green] {result.student}")


def main() -> None:
    try:
        cli(prog_name="deploykit")
    except KeyboardInterrupt:  # Ctrl-C during start-up, before a command runs
        _interrupted()


def _interrupted() -> None:
    """Ctrl-C: one line and exit code 130, as shells expect; staged output is never published half-written."""
    click.echo("Error: interrupted; nothing half-written was published", err=True)
    raise SystemExit(130)
