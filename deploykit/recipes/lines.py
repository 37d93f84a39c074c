"""The result lines a command prints the moment a stage ends (``progress.report``), worded once for every command."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deploykit.choices import CPU_RUNTIMES
from deploykit.compress.cpu_target import ANY, CpuTarget

if TYPE_CHECKING:
    from deploykit.bench.runtimes import RuntimeTimings
    from deploykit.compress.quantize import QuantizeResult


def int8_lines(int8: QuantizeResult) -> list[str]:
    """What quantization made and its verdict against FP32, the most clipped quantizer, QAT and fallback."""
    calibration, check = int8.calibration, int8.check
    verdict = "PASS" if check.passed else "FAIL (gate not applied: random weights)"
    lines = [
        f"INT8: {int8.qdq_nodes} Q/DQ nodes, {calibration['samples']} calibration samples, {calibration['method']}, "
        f"cache {calibration['cache']}, {int8.biases_corrected} biases corrected",
        f"INT8 vs FP32: {verdict} {check.summary()}",
    ]
    target = CpuTarget.recorded(int8.settings.cpu_target)
    if target is not None and target.kind != ANY:
        lines.insert(1, f"INT8 made for {target.describe(int8.settings.cpu_requested or '')}")
    clipped = [s for s in int8.saturation if s.clipped > 0]
    if clipped:
        worst = clipped[0]
        lines.append(f"most clipped quantizer: {worst.tensor} ({worst.clipped:.3%} of values, on {worst.images:.0%} of held-out images)")
    if int8.qat:
        ptq = int8.qat["ptq_check_vs_fp32"]
        lines.append(
            f"QAT: {int8.qat['steps']} steps on {int8.qat['images']} {'labelled' if int8.qat['labelled'] else 'unlabelled'} "
            f"images; held-out mean cosine PTQ {ptq['mean_cosine']:.4f} -> QAT {check.mean_cosine:.4f}"
        )
    lines += [f"kept in FP32: {layer.node} (alone it lifts the output cosine by {layer.output_gain:.4f})" for layer in int8.kept_fp32]
    return lines


def runtime_lines(timings: RuntimeTimings, int8: bool) -> list[str]:
    """INT8 against FP32 on each runtime (like with like), every combination with its spread, the one chosen (the
    fastest beyond noise, or a tie settled), and what was not timed."""
    lines = []
    if int8 and timings.speedups("int8"):
        pairs = [
            f"{CPU_RUNTIMES[runtime]} {timings.find(runtime, 'fp32').p50_ms:.2f} -> {timings.find(runtime, 'int8').p50_ms:.2f} ms ({speedup:.2f}x)"
            for runtime, speedup in timings.speedups("int8").items()
        ]
        lines.append(f"INT8 vs FP32, batch {timings.batch}, each on the same runtime: {', '.join(pairs)}")
    if timings.combinations:
        lines.append(
            f"timed, batch {timings.batch}, p50 of {timings.rounds} interleaved rounds: "
            + ", ".join(f"{c.name} {c.spread()}{'' if c.passed else ' (failed its check)'}" for c in timings.combinations)
        )
    decision = timings.decision
    if decision is not None:
        lines.append(f"{'chosen' if decision.tie else 'fastest here'}, of {len(timings.combinations)} timed: {decision.describe()}; bench --engine auto runs it")
    lines += [f"not timed: {reason}" for reason in timings.not_timed]
    return lines
