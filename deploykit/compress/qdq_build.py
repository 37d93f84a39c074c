"""Building the Q/DQ file from one FP32 graph: onnxruntime's ``quantize_static`` from cached ranges, graph outputs kept
float, weight rounding and bias correction; the range method chosen by its output; and the file as it ships, with the
layers the fallback keeps in FP32 and the placement rules of the ``--int8-layout`` (TensorRT's, OpenVINO's)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from deploykit.compress.bias_correction import correct_biases
from deploykit.compress.calibrate import ActivationStats
from deploykit.compress.configs import Int8Settings
from deploykit.compress.openvino_placement import apply_openvino_rules
from deploykit.compress.ort_quantization import quantize_static_qdq, quiet_ort
from deploykit.compress.qdq import float_graph_outputs, keep_float, shield_float_layers
from deploykit.compress.trt_placement import apply_tensorrt_rules
from deploykit.compress.weight_rounding import WeightRounding
from deploykit.parity import mean_cosine, run_all
from deploykit.runtime.ort_runner import OrtRunner


@dataclass(frozen=True)
class QdqBuild:
    """A quantized, bias-corrected graph before the layout's placement rules, and the convolutions bias correction
    changed. ``shipped(kept)`` is the file as it ships with the ``kept`` layers in FP32: the fallback ranks layers on
    it and ships it, one edit for both."""

    quantized: onnx.ModelProto
    reference: onnx.ModelProto  # the FP32 graph it was quantized from (quant_pre_process's output)
    settings: Int8Settings
    corrected: tuple[str, ...]

    def shipped(self, kept: list[str]) -> onnx.ModelProto:
        model = onnx.ModelProto()
        model.CopyFrom(self.quantized)
        keep_float(model, kept, self.reference)
        if self.settings.layout == "trt":
            apply_tensorrt_rules(model)
        elif self.settings.layout == "openvino":
            apply_openvino_rules(model)
        else:
            shield_float_layers(model)
        return model

    def corrected_in(self, kept: list[str]) -> int:
        """The bias-corrected convolutions that ship quantized (a layer kept in FP32 ships its own bias)."""
        return len(set(self.corrected) - set(kept))


@dataclass(frozen=True)
class RangeChoice:
    """The range method closest to FP32, every method's score, and the chosen method's build (not built again)."""

    method: str
    scores: dict[str, float]
    build: QdqBuild


@dataclass(frozen=True)
class Quantizable:
    """What every build of one FP32 graph shares: quant_pre_process's file and graph, the settings, the layers the
    user excluded, the calibration statistics and the measured weight rounding (None: rounded to nearest)."""

    pre_path: Path
    pre_proto: onnx.ModelProto
    settings: Int8Settings
    excluded: list[str]
    stats: ActivationStats
    rounding: WeightRounding | None

    def build(self, ranges_path: Path, work_path: Path) -> QdqBuild:
        """Quantize with the ranges in ``ranges_path`` (through ``work_path``), keep the graph outputs float, round the
        weights against their layers' outputs (with ``rounding``), and bias-correct (unless the settings say not to)."""
        quiet_ort(quantize_static_qdq, self.pre_path, work_path, None, self.settings, self.excluded, ranges_path)
        quantized = onnx.load(str(work_path))
        float_graph_outputs(quantized)
        if self.rounding is not None:
            self.rounding.apply(quantized)
        corrected = correct_biases(self.pre_proto, quantized, self.stats.channel_means) if self.settings.bias_correction else []
        return QdqBuild(quantized, self.pre_proto, self.settings, tuple(corrected))

    def choose_ranges(self, fp32_path: Path, ranges: dict[str, Path], workdir: Path, samples: np.ndarray) -> RangeChoice:
        """The range method whose shipped INT8 output is closest to FP32 on calibration samples (the held-out set stays
        unseen).

        Robust ranges win on photos, where a few images stretch the extremes; global extremes win where
        rare large activations carry the signal (strokes on a black background).
        """
        with OrtRunner(fp32_path) as runner:
            reference = run_all(runner, samples)
        scores, builds = {}, {}
        for method, path in ranges.items():
            builds[method] = self.build(path, workdir / f"{method}.onnx")
            with OrtRunner(builds[method].shipped([]).SerializeToString()) as runner:
                scores[method] = round(mean_cosine(reference, run_all(runner, samples)), 6)
        method = max(scores, key=scores.get)
        return RangeChoice(method, scores, builds[method])
