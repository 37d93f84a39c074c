"""How ``deploykit bench`` prints its results: the rows of a run, a layer profile, and ``--all``'s table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deploykit.choices import CPU_RUNTIMES, RUNTIME_NAMES
from deploykit.cli_render import console, random_weights_warning, size_of, table

if TYPE_CHECKING:
    from deploykit.recipes.bench_all import AllFiles
    from deploykit.recipes.bench_results import BenchRun
    from deploykit.runtime.layer_profile import LayerProfile


def bench_run(run: BenchRun) -> None:
    config = run.config
    if config.engine == "auto":  # each model's own fastest combination: name what ran
        chosen = sorted({f"{row['engine']} {row['precision']}" for row in run.rows})
        title = f"auto (the export's choice: fastest beyond noise, or a tie settled): {', '.join(chosen)} on {config.device}"
    else:
        title = f"{config.engine} on {config.device}, {config.precision}" + (f" (target {config.preset})" if config.preset else "")
    columns = ("model", "batch", "streams", "p50 ms", "p90 ms", "p99 ms", "img/s", "FP32 agree", "top-1", "peak RSS MB")
    rows = table(title, [(column, "left" if column == "model" else "right") for column in columns])
    rows.columns[0].no_wrap = True
    for row in run.rows:
        top1 = f"{row['accuracy_top1']:.1%}" if "accuracy_top1" in row else "-"
        agreement = "-" if row["agreement_top1"] is None else f"{row['agreement_top1']:.1%}"
        rows.add_row(
            row["model"],
            str(row["batch"]),
            str(row.get("streams", 1)),
            f"{row['p50_ms']:.2f}",
            f"{row['p90_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            f"{row['throughput']:.1f}",
            agreement,
            top1,
            f"{row['peak_rss_mb']:.0f}",
        )
    console.print(rows)
    for measured_on in sorted({row["measured_on"] for row in run.rows if row.get("measured_on")}):
        what = "top-1 and " if any("accuracy_top1" in row for row in run.rows) else ""
        console.print(f"{what}FP32 agree (top-1 agreement with the PyTorch FP32 model) measured on {measured_on}")
    for model, timed in run.timed_files:
        console.print(f"{model}: timed {timed}")
    for profile in run.profiles:
        layer_profile(profile)
    if run.random_weights:
        random_weights_warning()


def all_files(result: AllFiles) -> None:
    """bench --all: one row per file and runtime, a slower file in red, then the choice and what was not timed."""
    quality = "top-1" if any(e.top1 is not None for e in result.entries) else "FP32 agree"
    rows = table(
        f"{result.folder}: every file on every runtime, interleaved",
        [
            (c, "left" if i < 3 else "right")
            for i, c in enumerate(("file", "runtime", "precision", "size", "p50 ms [rounds]", "img/s, first batch", "best img/s (batch)", quality, "check"))
        ],
    )
    first = min(result.entries[0].throughput) if result.entries else 1
    for entry in result.entries:
        timing, best = entry.timing, entry.best_batch
        rows.add_row(
            timing.file,
            RUNTIME_NAMES[timing.runtime],
            timing.precision.upper(),
            size_of(entry.size_bytes) if entry.size_bytes else "-",
            timing.spread().replace(" ms", ""),
            f"{entry.throughput[first]:.1f}",
            f"{entry.throughput[best]:.1f} ({best})",
            f"{(entry.top1 if entry.top1 is not None else entry.agreement):.1%}",
            entry.check,
            style="bold red" if entry.slower_than_fp32 else None,
        )
    console.print(rows)
    console.print(f"{quality} measured on {result.images.describe()}" + ("" if quality == "top-1" else " (top-1 agreement with the PyTorch FP32 model)"))
    for entry in [e for e in result.entries if e.slower_than_fp32]:
        console.print(f"{entry.timing.file} IS SLOWER THAN FP32 on {RUNTIME_NAMES[entry.timing.runtime]} ({entry.slower_than_fp32}): deploy the FP32 file there", style="bold red")
    if result.decision is not None:
        console.print(f"{'chosen' if result.decision.tie else 'fastest'}: {result.decision.describe()}")
    for line in result.not_timed:
        console.print(f"not timed: {line}")
    if result.random_weights:
        random_weights_warning()


def layer_profile(profile: LayerProfile, count: int = 15) -> None:
    """The slowest layers with their share of the time, and how much of it ran in each precision."""
    rows = table(
        f"{profile.file} on {CPU_RUNTIMES[profile.runtime]}, batch {profile.batch}: the slowest {count} of "
        f"{len(profile.layers)} layers (median of {profile.runs} runs; {profile.total_ms:.3f} ms in all)",
        [("layer", "left"), ("op", "left"), ("precision", "left"), ("ms", "right"), ("share", "right")],
    )
    for layer in profile.layers[:count]:
        rows.add_row(layer.name, layer.op, layer.precision, f"{layer.ms:.4f}", f"{profile.share(layer):.1%}")
    console.print(rows)
    console.print("time by precision: " + ", ".join(f"{precision} {n} layer{'s' * (n != 1)} {share:.1%}" for precision, (n, share) in profile.by_precision().items()))
    floats = [layer for layer in profile.layers if layer.precision in ("f32", "bf16", "f16")]
    if profile.file.endswith(".int8.onnx") and floats:
        console.print(f"in float, not int8: {', '.join(f'{l.name} ({l.op})' for l in floats[:8])}{f' and {len(floats) - 8} more' if len(floats) > 8 else ''}", style="yellow")
