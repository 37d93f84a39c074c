"""INT8 post-training quantization: calibrated, explicit Q/DQ ONNX that onnxruntime runs fast and stays accurate.

The layout is onnxruntime's own QDQ (``quant_pre_process`` folds BatchNorm first; per-channel
symmetric int8 weights; per-tensor uint8 activations on Conv outputs for ``--int8-layout cpu``, the
layout its QLinearConv kernels fuse; symmetric int8 for TensorRT). Accuracy comes from what is
fed into that layout, not from another layout: robust activation ranges (the mean of per-sample
min/max, compress/calibrate.py) and bias correction of the rounded weights
(compress/bias_correction.py).

The result is checked against FP32 on held-out images (mean logit cosine, FP32 top-1 within INT8
top-5, top-1 agreement), or, with a labelled ``val`` folder, by the drop in top-1 accuracy
(compress/int8_check.py). Below the gate, the layers that add the most error, ranked once, are kept
in FP32 in growing groups, by the same graph edit the ranking measured (compress/fallback.py, qdq.keep_float).
This module holds the options, the result and the steps in order; each step lives in its own module.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from typing import ClassVar
from pathlib import Path

import numpy as np
import onnx

from deploykit.compress.configs import Int8Settings, QuantizeConfig
from deploykit.compress.cpu_target import CpuTarget
from deploykit.compress.calibrate import ROBUST_METHODS, classifier_inputs, write_ort_ranges
from deploykit.compress.calibration_cache import cache_files, cached_statistics
from deploykit.compress.fallback import KeptLayer, candidates, growing, layer_sensitivity
from deploykit.compress.int8_check import Int8Check, Int8GateError, compare_int8
from deploykit.compress.int8_data import QuantizationData
from deploykit.compress.exclusions import resolve_exclusions
from deploykit.compress.ort_quantization import pre_process, quiet_ort
from deploykit.compress.qdq_build import Quantizable
from deploykit.compress.weight_rounding import WeightRounding
from deploykit.compress.saturation import Saturation, activation_saturation
from deploykit.data.calibration import calibration_hash
from deploykit.data.images import evenly_spaced
from deploykit.errors import DeployKitError
from deploykit.io import sha256_file
from deploykit.parity import run_all
from deploykit.progress import stage
from deploykit.runtime import CPU_RUNTIMES, Runner, cpu_runner
from deploykit.runtime.availability import openvino_installed, openvino_problem
from deploykit.runtime.ort_runner import OrtRunner

SATURATION_IMAGES = 64  # clipping is a share of values: 64 held-out images measure it as well as 256, at a quarter of the cost
SENSITIVITY_SAMPLES = 16
SELECTION_SAMPLES = 32
SATURATION_RECORDED = 10  # the most clipped quantizers the manifest lists


@dataclass
class QuantizeResult:
    """What quantize_int8 made and measured; its ``as_dict`` is the manifest's ``int8`` section."""

    KEY: ClassVar[str] = "int8"
    path: Path
    check: Int8Check
    kept_fp32: list[KeptLayer]
    excluded: list[str]
    calibration: dict
    settings: Int8Settings
    gate_applied: bool
    qdq_nodes: int = 0
    biases_corrected: int = 0
    notes: list[str] = field(default_factory=list)
    saturation: list[Saturation] = field(default_factory=list)  # every activation quantizer on the held-out images
    classifier_inputs: frozenset[str] = frozenset()
    stage: str = "ptq"  # or "qat"
    qat: dict | None = None  # the fine-tuning's record, with the PTQ figures it started from
    gate: dict = field(default_factory=dict)  # QuantizeConfig.gate_record()

    def as_dict(self) -> dict:
        return {
            "stage": self.stage,
            **({"qat": self.qat} if self.qat else {}),
            "settings": self.settings.as_dict(),
            "calibration": self.calibration,
            "excluded_by_user": self.excluded,
            "kept_fp32_by_fallback": [asdict(k) for k in self.kept_fp32],
            "qdq_nodes": self.qdq_nodes,
            "biases_corrected": self.biases_corrected,
            "gate_applied": self.gate_applied,
            "gate": self.gate,
            "check_vs_fp32": self.check.as_dict(),
            "notes": self.notes,
            "saturation_holdout": {
                "most_clipped": [s.as_dict() for s in self.saturation[:SATURATION_RECORDED] if s.clipped > 0],
                "classifier_input": [s.as_dict() for s in self.saturation if s.tensor in self.classifier_inputs],
            },
        }


def quantize_int8(
    fp32_path: Path,
    out_path: Path,
    data: QuantizationData,
    config: QuantizeConfig,
    cache_dir: Path,
    enforce_gate: bool = True,
    judged_against: Path | None = None,
    fixed_ranges: dict[str, tuple[float, float]] | None = None,
) -> QuantizeResult:
    """Quantize ``fp32_path`` into ``out_path`` (moved into place when done), with the accuracy gate and fallback.

    ``enforce_gate=False`` (random weights, whose figures mean nothing) measures and reports but never refuses.
    ``judged_against`` is the FP32 file the gate compares with (``fp32_path`` by default; QAT quantizes its
    fine-tuned copy but is judged against the original). ``fixed_ranges`` (tensor -> (low, high))
    replaces the calibrated ranges of those tensors. Raises Int8GateError when the gate is not met.
    """
    settings = Int8Settings.for_config(config)
    data_hash, model_hash = calibration_hash(data.calibration), sha256_file(fp32_path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    methods = ("fixed",) if fixed_ranges else ROBUST_METHODS if config.method == "auto" else (config.method,)
    stats_path, ranges = cache_files(cache_dir, data_hash, model_hash, methods, config.layout)
    calibration = {"source": str(config.calib), "samples": len(data.calibration), "sha256": data_hash, "method": "fixed (QAT)" if fixed_ranges else config.method}
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".quantize-") as workdir:
        pre_path = Path(workdir) / "preprocessed.onnx"
        quiet_ort(pre_process, fp32_path, pre_path)
        pre_proto = onnx.load(str(pre_path))
        excluded = resolve_exclusions(pre_proto, config.exclude)
        rounding = None
        if settings.weight_rounding == "gptq":
            with stage(f"measuring each layer's inputs on {len(data.calibration)} calibration images, to round its weights"):
                rounding = WeightRounding.measure(pre_proto, data.calibration)
        stats, reused = cached_statistics(pre_proto, pre_path, data.calibration, settings, stats_path, {m: path for m, path in ranges.items() if m != "fixed"})
        if fixed_ranges:  # tensors QAT did not simulate keep their calibrated min/max
            write_ort_ranges(stats.ranges("minmax") | fixed_ranges, ranges["fixed"])
        calibration["cache"] = "reused" if reused else "computed"
        int8_path, quantizable = Path(workdir) / "int8.onnx", Quantizable(pre_path, pre_proto, settings, excluded, stats, rounding)
        if len(methods) > 1:
            with stage(f"choosing activation ranges ({' or '.join(methods)})"):
                choice = quantizable.choose_ranges(fp32_path, ranges, Path(workdir), data.calibration[:SELECTION_SAMPLES])
            calibration |= {"chosen": choice.method, "selection_mean_cosine": choice.scores}
            built, ranges_path = choice.build, ranges[choice.method]
        else:
            ranges_path = ranges[methods[0]]
            built = quantizable.build(ranges_path, int8_path)
        calibration["cache_file"] = ranges_path.name
        judged_on = judging_runtime(config.layout)
        with OrtRunner(judged_against or fp32_path) as fp32_runner:
            fp32_logits = _Logits(run_all(fp32_runner, data.holdout), _maybe_run(fp32_runner, data.val_images))

        def attempt(kept: list[KeptLayer]) -> Int8Check:
            onnx.save(built.shipped([k.node for k in kept]), str(int8_path))
            return _check(fp32_logits, int8_path, data, config)

        kept: list[KeptLayer] = []
        with stage(f"quantizing and checking INT8 on {len(data.holdout)} held-out images"):
            check = attempt(kept)
        if not check.passed and enforce_gate and config.max_fallback_layers:
            with stage("ranking layers by what keeping each in FP32 gains"):
                ranked = layer_sensitivity(built.shipped, candidates(built.quantized, pre_proto, excluded), pre_proto, data.calibration[:SENSITIVITY_SAMPLES])
            limit = min(config.max_fallback_layers, len(ranked))
            for count in growing(limit):
                kept = ranked[:count]
                with stage(f"fallback: {count} of up to {limit} layers kept in FP32"):
                    check = attempt(kept)
                if check.passed:
                    break
        if not check.passed and enforce_gate:
            raise Int8GateError(
                f"INT8 fails the accuracy gate ({'; '.join(check.failures)}) {check.summary()}, even with {len(kept)} "
                f"layer(s) kept in FP32 ({', '.join(k.output for k in kept) or 'none'}). Calibrate on more, or more "
                "representative, images (--calib DIR, a few hundred from your data), judge on labelled data (--val DIR), "
                "keep layers in FP32 by hand (--exclude), or deploy the FP32 model",
                check,
                kept,
            )
        int8_proto = onnx.load(str(int8_path))
        qdq_nodes = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in int8_proto.graph.node)
        if not qdq_nodes:
            raise DeployKitError("nothing was quantized (every layer excluded or kept in FP32), so no INT8 file was written; exclude fewer layers")
        clipping_images = np.stack(evenly_spaced(data.holdout, SATURATION_IMAGES))
        with stage(f"measuring each quantizer's clipping on {len(clipping_images)} held-out images"):
            saturation = activation_saturation(int8_proto, clipping_images)
        os.replace(int8_path, out_path)
    notes = [] if enforce_gate else [f"accuracy gate not applied (random weights): {'; '.join(check.failures) or 'passed'}"]
    if config.cpu_target.exact_emulation:
        notes.append(
            "this file for VNNI CPUs was judged as one computes it (onnxruntime unfused, without saturation); this "
            "CPU's fused AVX2 kernels can saturate its 8-bit weights: to deploy on this CPU, export with --cpu avx2"
        )
    if config.layout == "openvino" and judged_on != "openvino":
        notes.append(f"this openvino-layout file was judged on onnxruntime, not on the runtime it is for: {openvino_problem()}")
    return QuantizeResult(
        out_path,
        check,
        kept,
        excluded,
        calibration,
        settings,
        enforce_gate,
        qdq_nodes,
        built.corrected_in([k.node for k in kept]),
        notes,
        saturation,
        classifier_inputs(pre_proto),
        gate=config.gate_record(),
    )


@dataclass(frozen=True)
class _Logits:
    holdout: np.ndarray
    val: np.ndarray | None


def _maybe_run(runner: Runner, images: np.ndarray | None) -> np.ndarray | None:
    return None if images is None else run_all(runner, images)


def judging_runtime(layout: str) -> str:
    """The runtime the gate runs an INT8 file on: OpenVINO for its own layout where it is installed, else onnxruntime."""
    return "openvino" if layout == "openvino" and openvino_installed() else "ort"


def judging_runner(path: Path, layout: str, target: CpuTarget | None) -> tuple[Runner, str]:
    """The runner the gate runs an INT8 file on, and its name in the check: OpenVINO for its layout where installed;
    onnxruntime, unfused, where the file's CPU target computes exactly what this CPU's kernels would saturate."""
    runtime = judging_runtime(layout)
    if runtime == "ort" and target is not None and target.exact_emulation:
        return OrtRunner(path, exact_int8=True), "onnxruntime unfused, as a VNNI CPU computes it (this CPU has no VNNI)"
    return cpu_runner(path, runtime), CPU_RUNTIMES[runtime]


def _check(fp32: _Logits, int8_path: Path, data: QuantizationData, config: QuantizeConfig) -> Int8Check:
    runner, runtime = judging_runner(int8_path, config.layout, config.cpu_target)
    with runner:
        holdout = run_all(runner, data.holdout)
        val = _maybe_run(runner, data.val_images)
    return compare_int8(fp32.holdout, holdout, config, fp32.val, val, data.val_labels, data.val_classes, runtime)
