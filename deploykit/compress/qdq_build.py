"""Building the Q/DQ file: onnxruntime's ``quantize_static`` from cached ranges, graph outputs kept float, bias
correction, and the placement rules of the ``--int8-layout`` (TensorRT's, OpenVINO's); the arguments each layout
takes; ``--exclude``."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnx

from deploykit.compress.bias_correction import correct_biases
from deploykit.compress.calibrate import ActivationStats
from deploykit.compress.configs import QuantizeConfig
from deploykit.compress.qdq import WEIGHTED_OPS, float_graph_outputs, keep_float, shield_float_layers
from deploykit.compress.openvino_placement import apply_openvino_rules, first_layer_weights
from deploykit.compress.trt_placement import apply_tensorrt_rules
from deploykit.compress.weight_rounding import WeightRounding
from deploykit.errors import DeployKitError
from deploykit.parity import mean_cosine, run_all
from deploykit.quiet import quiet
from deploykit.runtime.ort_runner import OrtRunner


@dataclass(frozen=True)
class Int8Settings:
    """The quantize_static arguments for a layout, decided once from ``QuantizeConfig`` (and recorded in the manifest).

    cpu: uint8 activations with a zero point, the layout onnxruntime's x86 kernels fuse (7-bit weights for a CPU
    without VNNI); trt: symmetric int8 everywhere; openvino: symmetric activations, uint8 where calibration saw no
    negative value, 7-bit weights on the first layer only (NNCF's choices).
    """

    layout: str
    per_channel: bool
    activation_type: str  # int8 or uint8
    activation_symmetric: bool
    unsigned_non_negative_activations: bool
    keep_activation_functions: bool
    cpu_target: str
    cpu_requested: str | None
    reduce_range: bool
    first_layer_7bit_weights: bool
    calibrate_method: str
    bias_correction: bool
    weight_rounding: str
    format: str = "QDQ"
    weight_type: str = "int8"
    weight_symmetric: bool = True

    @classmethod
    def for_config(cls, config: QuantizeConfig) -> Int8Settings:
        symmetric_activations = config.layout in ("trt", "openvino")
        target, openvino = config.cpu_target, config.layout == "openvino"
        return cls(config.layout, config.per_channel, "int8" if symmetric_activations else "uint8", symmetric_activations,
                   openvino, openvino, target.kind, config.cpu if config.layout == "cpu" else None, target.reduce_range,
                   openvino, config.method, config.bias_correction, config.rounding)

    def with_method(self, method: str) -> Int8Settings:
        return replace(self, calibrate_method=method)

    def as_dict(self) -> dict:
        """As the manifest records it."""
        return asdict(self)


def quantize_static_qdq(pre_path: Path, out_path: Path, reader, settings: Int8Settings, exclude: list[str], ranges_path: Path) -> None:
    """onnxruntime's quantize_static; with ``reader=None`` it takes the ranges from ``ranges_path``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    extra = {"ActivationSymmetric": settings.activation_symmetric, "WeightSymmetric": settings.weight_symmetric,
             "QDQKeepRemovableActivations": settings.keep_activation_functions}
    if reader is None:
        extra["TensorQuantOverrides"] = _overrides(pre_path, settings, ranges_path)
    if settings.calibrate_method == "percentile":
        extra["CalibPercentile"] = 99.999
    quantize_static(
        str(pre_path), str(out_path), reader, quant_format=QuantFormat.QDQ, per_channel=settings.per_channel,
        reduce_range=settings.reduce_range,
        activation_type=QuantType.QInt8 if settings.activation_type == "int8" else QuantType.QUInt8,
        weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
        calibrate_method=methods.get(settings.calibrate_method, CalibrationMethod.MinMax),
        extra_options=extra, calibration_cache_path=str(ranges_path),
    )


def _overrides(pre_path: Path, settings: Int8Settings, ranges_path: Path) -> dict[str, list[dict]]:
    """quantize_static's per-tensor overrides: uint8 (zero point 0) for activations calibration saw no negative value
    in, and 7-bit first-layer weights."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import load_tensors_data

    overrides: dict[str, list[dict]] = {}
    if settings.unsigned_non_negative_activations:
        ranges = load_tensors_data(ranges_path).data
        overrides |= {name: [{"quant_type": QuantType.QUInt8, "symmetric": False}] for name, data in ranges.items()
                      if float(np.min(data.range_value[0])) >= 0.0}
    if settings.first_layer_7bit_weights:
        overrides |= {name: [{"axis": 0, "reduce_range": True}] for name in first_layer_weights(onnx.load(str(pre_path)))}
    return overrides


def pre_process(fp32_path: Path, pre_path: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32_path), str(pre_path))


def quiet_ort(function, *args) -> None:
    """Run an onnxruntime.quantization step without its log lines and warnings on the console."""
    with quiet("onnxruntime"):
        function(*args)


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


def build_qdq(pre_path: Path, pre_proto: onnx.ModelProto, work_path: Path, settings: Int8Settings, exclude: list[str],
              ranges_path: Path, stats: ActivationStats, rounding: WeightRounding | None) -> QdqBuild:
    """Quantize from the cached ranges (through ``work_path``), keep the graph outputs float, round the weights against
    their layers' outputs (with ``rounding``), and bias-correct (unless the settings say not to)."""
    quiet_ort(quantize_static_qdq, pre_path, work_path, None, settings, exclude, ranges_path)
    quantized = onnx.load(str(work_path))
    float_graph_outputs(quantized)
    if rounding is not None:
        rounding.apply(quantized)
    corrected = correct_biases(pre_proto, quantized, stats.channel_means) if settings.bias_correction else []
    return QdqBuild(quantized, pre_proto, settings, tuple(corrected))


@dataclass(frozen=True)
class RangeChoice:
    """The range method closest to FP32, every method's score, and the chosen method's build, so that it is not built
    again."""

    method: str
    scores: dict[str, float]
    build: QdqBuild


def choose_ranges(fp32_path: Path, pre_path: Path, pre_proto: onnx.ModelProto, workdir: Path, settings: Int8Settings,
                  excluded: list[str], ranges: dict[str, Path], stats: ActivationStats, rounding: WeightRounding | None,
                  samples: np.ndarray) -> RangeChoice:
    """The range method whose shipped INT8 output is closest to FP32 on calibration samples (the held-out set stays
    unseen).

    Robust ranges win on photos, where a few images stretch the extremes; global extremes win where
    rare large activations carry the signal (strokes on a black background).
    """
    with OrtRunner(fp32_path) as runner:
        reference = run_all(runner, samples)
    scores, builds = {}, {}
    for method, path in ranges.items():
        builds[method] = build_qdq(pre_path, pre_proto, workdir / f"{method}.onnx", settings, excluded, path, stats, rounding)
        with OrtRunner(builds[method].shipped([]).SerializeToString()) as runner:
            scores[method] = round(mean_cosine(reference, run_all(runner, samples)), 6)
    method = max(scores, key=scores.get)
    return RangeChoice(method, scores, builds[method])


def classifier_inputs(proto: onnx.ModelProto) -> frozenset[str]:
    """The activations read by a Gemm/MatMul that computes a graph output: a classifier's features."""
    outputs = {o.name for o in proto.graph.output}
    initializers = {i.name for i in proto.graph.initializer}
    return frozenset(name for node in proto.graph.node if node.op_type in ("Gemm", "MatMul") and set(node.output) & outputs
                     for name in node.input if name not in initializers)


def fixed_batch(proto: onnx.ModelProto) -> int | None:
    return proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value or None


def resolve_exclusions(proto: onnx.ModelProto, patterns: tuple[str, ...]) -> list[str]:
    """Node names matched by shell-style patterns over layer names.

    A layer name is the module path a node was exported from (``layer3.1.conv2``, ``fc``; node names
    are ``module/OpType``), the full node name, or the node's output tensor.
    """
    names = []
    for pattern in patterns:
        matched = [n.name for n in proto.graph.node
                   if any(fnmatch.fnmatch(candidate, pattern) for candidate in (n.name, n.name.rsplit("/", 1)[0], *n.output))]
        if not matched:
            examples = ", ".join(n.name.rsplit("/", 1)[0] for n in proto.graph.node if n.op_type in WEIGHTED_OPS)[:160]
            raise DeployKitError(f"--exclude {pattern!r} matches no layer; layers are named like: {examples}")
        names += [m for m in matched if m not in names]
    return names
