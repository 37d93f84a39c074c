"""What the commands print: each recipe's typed result as tables and lines on the console, worded in one place."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from deploykit.choices import CPU_RUNTIMES

if TYPE_CHECKING:
    from deploykit.catalog import CatalogEntry
    from deploykit.parity import LayerDiff
    from deploykit.recipes.compare import CompareResult
    from deploykit.compress.distill import EpochRecord
    from deploykit.recipes.compress import ChainVerdict
    from deploykit.recipes.prune import PruneReport
    from deploykit.recipes.train import TrainingResult
    from deploykit.runtime.trt_engine import EngineBuild
    from deploykit.recipes.eval import EvalResult
    from deploykit.recipes.export import ExportResult
    from deploykit.recipes.info import ModelInfo
    from deploykit.recipes.report import ReportResult
    from deploykit.recipes.serve import LoadRun, Serving
    from deploykit.recipes.triton import TritonRepository

# Piped or captured output gets a wide console, so tables are not cut at 80 columns.
# markup=False: paths, hints and folder names are printed as they are ('deploykit[openvino]', repo[v2]); styles are given
# as styles, never as markup inside the text.
console = Console(markup=False) if sys.stdout.isatty() else Console(width=160, soft_wrap=True, markup=False)


def wrote(text: str) -> None:
    """``wrote PATH ...``, the word in green."""
    console.print(Text.assemble(("wrote", "green"), " ", text))


TRT_LAYOUT_HINT = ", or time it on TensorRT, the runtime its layout (--int8-layout trt) is for"


def table(title: str, columns: list[tuple[str, str]]) -> Table:
    """A left-titled table; ``columns`` are (header, justify) pairs."""
    result = Table(title=title, title_justify="left")
    for column, justify in columns:
        result.add_column(column, justify=justify)
    return result


def catalog(entries: list[CatalogEntry]) -> None:
    rows = table(f"{len(entries)} models", [("name", "left"), ("family", "left"), ("params (eval)", "right"), ("GMACs", "right"), ("input", "right")])
    for entry in entries:
        rows.add_row(entry.name, entry.family, f"{entry.params:,}", f"{entry.macs / 1e9:.2f}", f"{entry.input_size}x{entry.input_size}")
    console.print(rows)


def model_info(info: ModelInfo) -> None:
    spec, profile, size = info.spec, info.profile, info.size
    console.print(Text.assemble((spec.name, "bold"), f" ({spec.family}): {spec.paper}"))
    console.print(f"input 3x{size}x{size}, {spec.num_classes} classes, mean {spec.mean}, std {spec.std}")
    aux_note = f" (+{info.training_only_params:,} in training-only auxiliary heads)" if info.training_only_params else ""
    console.print(f"params {profile.inference_params:,}{aux_note}, MACs {profile.macs / 1e9:.3f} G, FLOPs {profile.flops / 1e9:.3f} G")
    if spec.reference:
        ref = spec.reference
        top1 = f", top-1 {ref.top1:.2f}%" if ref.top1 is not None else ""
        console.print(f"reference ({ref.source}): params {ref.params:,}, GMACs {ref.gmacs:.2f}{top1}")
    if spec.torchvision_compatible:
        console.print("state_dict matches torchvision's: its checkpoints load with strict=True")
    if not info.published:
        console.print(f"no published pretrained weights for {spec.name}: pass --weights PATH to a checkpoint of your own")
    else:
        weights = table("pretrained weights (--weights TAG)", [("tag", "left"), ("top-1", "right"), ("top-5", "right"), ("eval resize/crop", "left"), ("file", "left")])
        for entry in info.published:
            weights.add_row(
                f"{entry.tag} (DEFAULT)" if entry.default else entry.tag, f"{entry.top1:.2f}", f"{entry.top5:.2f}", f"{entry.resize}/{entry.crop} {entry.interpolation}", entry.file_name
            )
        console.print(weights)
    stages = table("stages", [("stage", "left"), ("output", "left"), ("params", "right"), ("MMACs", "right")])
    for summary in profile.stages:
        shape = "x".join(str(d) for d in summary.output_shape[1:]) if summary.output_shape else "-"
        stages.add_row(summary.name, shape, f"{summary.params:,}", f"{summary.macs / 1e6:.1f}")
    console.print(stages)


def export_result(result: ExportResult) -> None:
    for step, record in result.stages.items():
        if step == "prune":
            console.print(f"pruned: MACs {record['macs_before'] / 1e9:.3f} G -> {record['macs_after'] / 1e9:.3f} G")
        elif step != "chain":
            console.print(f"{step}: {record['metric']} {record['student_start_top1']:.2%} -> best {record['best_val_top1']:.2%}")
    made = f"exported in {result.export_seconds:.1f} s{', simplified' if result.simplified else ''}" if result.parity is not None else "your file as it is"
    wrote(f"{result.onnx_path} ({size(result.onnx_path)}, {made})")
    for path, written in ((result.fp16_path, result.fp16_parity is not None), (result.int8_path, result.int8 is not None)):
        if written:
            wrote(f"{path} ({size(path)})")
    for note in result.notes:
        console.print(f"note: {note}")
    if result.int8_slower:
        runtime = result.int8_runtime
        fp32, int8 = result.runtimes.find(runtime, "fp32"), result.runtimes.find(runtime, "int8")
        hint = TRT_LAYOUT_HINT if result.int8.settings.layout == "trt" else ""
        console.print(f"INT8 IS SLOWER THAN FP32 on {CPU_RUNTIMES[runtime]} ({int8.paired(fp32)}): deploy the FP32 model there{hint}", style="bold red")
    if result.fp16_slower_on:
        pairs = [f"{CPU_RUNTIMES[runtime]} ({result.runtimes.find(runtime, 'fp16').paired(result.runtimes.find(runtime, 'fp32'))})" for runtime in result.fp16_slower_on]
        console.print(
            f"FP16 IS SLOWER THAN FP32 on {', '.join(pairs)}: these CPU runtimes do not compute in float16 here; deploy the FP32 model on this CPU (model.fp16.onnx is for GPUs)",
            style="bold red",
        )
    if result.triton is not None:
        triton_repository(result.triton)
    if result.chain is not None:
        chain(result.chain)
    if result.random_weights:
        random_weights_warning()


def size(path: Path) -> str:
    """A file's size as people read it: 812 kB, 14.0 MB."""
    return size_of(path.stat().st_size)


def size_of(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count / 1e3:.0f} kB" if count >= 1e3 else f"{count} bytes"


def random_weights_warning() -> None:
    from deploykit.recipes.ref import RANDOM_WEIGHTS_WARNING

    console.print(f"warning: {RANDOM_WEIGHTS_WARNING}", style="bold yellow")


def comparison(a: str, b: str, result: CompareResult, layer_tolerance: float) -> None:
    if result.int8_check is not None:  # B is A's INT8 file: judged by the gate export applied, not by FP32 parity tolerances
        check = result.int8_check
        verdict = "PASS" if check.passed else "FAIL (" + "; ".join(check.failures) + ")"
        console.print(f"{a} vs {b}: INT8 vs FP32, the export's gate (from its manifest): {verdict} {check.summary()}")
        console.print(f"logits, for diagnosis (not judged for INT8): {result.parity.figures()}")
    elif result.twin == "fp16":
        console.print(f"{a} vs {b}: FP16 vs FP32, the export's FP16 tolerances: {result.parity.summary()}")
    else:
        console.print(f"{a} vs {b}: {result.parity.summary()}")
    for warning in result.warnings:
        console.print(f"warning: {warning}", style="bold red")
    if result.random_weights:
        random_weights_warning()
    if result.layers is not None:
        _layers(result.layers, result.first_divergent, None if result.twin else layer_tolerance)
        if result.twin:
            console.print(
                f"not judged layer by layer: an {result.twin.upper()} file differs from FP32 at every layer by design; these are diagnostics, and the verdict is the check above"
            )
        _saturation(result.saturation, result.saturation_on)


def _layers(diffs: list[LayerDiff], culprit: LayerDiff | None, tolerance: float | None) -> None:
    shown = diffs if len(diffs) <= 40 else diffs[:20] + [d for d in diffs[20:] if d is culprit]
    divergent_later = " and the first divergent" if len(shown) > 20 else ""
    cut = f", the first 20{divergent_later} shown; all of them in --json" if len(shown) < len(diffs) else ""
    rows = table(f"per-layer comparison ({len(diffs)} layers matched{cut})", [("layer", "left"), ("type", "left"), ("rel error", "right"), ("max abs error", "right")])
    for diff in shown:
        rows.add_row(diff.name, diff.kind, f"{diff.rel_error:.3g}", f"{diff.max_abs_error:.3g}", style="bold red" if diff is culprit else None)
    console.print(rows)
    if culprit:
        console.print(Text.assemble(("first divergent layer:", "bold red"), f" {culprit.name} ({culprit.kind}): relative error {culprit.rel_error:.3g} > {tolerance:g}"))
    elif tolerance is not None:
        console.print(f"every layer within {tolerance:g}")


def _saturation(saturation, measured_on: str) -> None:
    if not saturation:
        return
    rows = table(
        f"most clipped INT8 quantizers (values beyond their range), on {measured_on}",
        [("tensor", "left"), ("values clipped", "right"), ("images with clipping", "right"), ("range", "right")],
    )
    for entry in saturation:
        rows.add_row(entry.tensor, f"{entry.clipped:.3%}", f"{entry.images:.0%}", f"[{entry.low:.3g}, {entry.high:.3g}]")
    console.print(rows)


def evaluation(result: EvalResult, data: Path) -> None:
    rows = table(f"{result.model} on {result.engine} ({result.precision})", [(c, "right") for c in ("images", "top-1", "top-5", "seconds")])
    rows.add_row(str(result.images), f"{result.top1:.2%}", f"{result.top5:.2%}", f"{result.seconds:.1f}")
    console.print(rows)
    console.print(f"{data}: {result.class_rule}")
    for note in result.notes:
        console.print(f"note: {note}", style="yellow")


def report(result: ReportResult) -> None:
    wrote(f"{result.markdown} and {result.picture} ({result.results} results)")


def engine(built: EngineBuild) -> None:
    wrote(f"{built.path} (TensorRT {built.tensorrt}, {built.gpu.name}, sm {built.gpu.compute_capability})")


def pruning(report: PruneReport, result: ExportResult) -> None:
    sizes = report.sizes
    console.print(f"params {sizes.params_before:,} -> {sizes.params_after:,}, MACs {sizes.macs_before / 1e9:.3f} G -> {sizes.macs_after / 1e9:.3f} G ({sizes.mac_reduction:.0%} fewer)")
    console.print(f"ONNX export of the pruned model: {result.parity.summary()}")
    console.print(f"accuracy, both ONNX files on onnxruntime: {report.accuracy.describe()}")
    if report.speeds:
        console.print("latency p50, unpruned -> pruned (FP32, interleaved rounds): " + "; ".join(speed.describe() for speed in report.speeds))
    for note in report.not_timed:
        console.print(f"not timed: {note}")
    if report.accuracy_warning():
        console.print(report.accuracy_warning(), style="bold red")
    for line in report.speed_warnings():
        console.print(line, style="bold red" if line.startswith("PRUNED") else "yellow")
    wrote(f"{result.folder / 'pruned.pth'} and {result.onnx_path}")


def epoch(record: EpochRecord) -> None:
    best = " (best so far: best.pth)" if record.best else ""
    console.print(
        f"epoch {record.epoch}: train loss {record.train_loss:.4f}, val top-1 {record.val_top1:.2%}{best}, "
        f"{record.seconds:.0f} s ({record.images_per_second:.0f} images/s), {record.seconds_left:.0f} s left"
    )
    if record.collapsed:
        console.print(
            f"VALIDATION COLLAPSED in epoch {record.epoch}: top-1 {record.val_top1:.2%}, far below the best epoch; best.pth keeps the best one. Lower --lr or add --warmup-epochs",
            style="bold red",
        )


def training(result: TrainingResult) -> None:
    if not result.reports:
        return
    console.print(f"data {result.data}: {result.class_rule}; validation: {result.val_rule}")
    teacher = f", teacher {result.teacher_top1:.2%}" if result.teacher_top1 is not None else ""
    best = result.best
    console.print(f"{result.metric}: start {result.student_start_top1:.2%} -> best {best.val_top1:.2%} (epoch {best.epoch}), last {result.history[-1].val_top1:.2%}{teacher}")
    wrote(f"{result.folder} (best.pth, last.pth, manifest.json): use the folder as the model, e.g. deploykit export {shlex.quote(str(result.folder))}")


def chain(verdict: ChainVerdict) -> None:
    stages = ", ".join(f"{name} {top1:.2%}" for name, top1 in verdict.top1.items())
    console.print(f"chain top-1 on {verdict.source}: {stages} ({verdict.drop_points:.2f} points lost)")
    if verdict.speedup is not None:
        console.print(f"chain speed, each on its fastest CPU runtime: original {verdict.original_fastest.describe()} -> {verdict.shipped_fastest.describe()} ({verdict.speedup:.2f}x)")
    for failure in verdict.failures():
        console.print(f"CHAIN FAILED: {failure}", style="bold red")


def triton_repository(result: TritonRepository) -> None:
    rows = table(f"Triton repository {result.repo}", [(c, "left") for c in ("model", "backend", "instances", "precision", "input", "batching")])
    for spec in result.models:
        batching = (
            f"max {spec.batching.max_batch_size}, "
            + (f"preferred {list(spec.batching.preferred)}, " if spec.batching.preferred else "")
            + (f"delay {spec.batching.max_queue_delay_us} us" if spec.dynamic_batching else "no dynamic batching")
            + f" ({spec.batching.source})"
        )
        rows.add_row(spec.name, spec.backend, f"{spec.instances} {spec.kind}", spec.precision, f"{spec.input.name} {spec.input.data_type} {list(spec.input.dims)}", batching)
    console.print(rows)
    for name in result.removed:
        console.print(f"removed {name}: the export it was made from no longer makes it", style="yellow")
    console.print(f"serve it on this CPU: deploykit serve {shlex.quote(str(result.repo))}")


def serving(served: Serving) -> None:
    console.print(
        f"serving {', '.join(served.models)} at {served.url} (tritonserver, Python backend on the CPU, "
        f"{served.threads} thread{'s' if served.threads != 1 else ''} per instance); Ctrl-C stops it"
    )
    for name, why in served.skipped.items():
        console.print(f"not served here: {name} ({why})", style="yellow")


def stopped() -> None:
    console.print("stopped")


def load_run(run: LoadRun) -> None:
    columns = ("configuration", "clients", "img/s", "p50 ms", "p90 ms", "p99 ms", "queue ms", "compute ms", "img/execution", "errors")
    rows = table(f"{run.model} at {run.url}, batch {run.config.batch_size} per request", [(column, "left" if column == "configuration" else "right") for column in columns])
    for level in run.levels:
        rows.add_row(
            level.configuration,
            str(level.concurrency),
            f"{level.throughput:.1f}",
            f"{level.p50_ms:.2f}",
            f"{level.p90_ms:.2f}",
            f"{level.p99_ms:.2f}",
            _maybe(level.queue_ms),
            _maybe(level.compute_ms),
            _maybe(level.images_per_execution),
            str(level.errors),
        )
    console.print(rows)
    for line in run.skipped:
        console.print(line, style="yellow", markup=False)


def _maybe(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
