"""onnxruntime.quantization, wrapped: its pre-processing (BatchNorm folded, shapes inferred) and ``quantize_static`` in
QDQ format with a layout's settings (compress/configs.Int8Settings), quietly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from deploykit.compress.configs import Int8Settings
from deploykit.compress.openvino_placement import first_layer_weights
from deploykit.quiet import quiet


def quantize_static_qdq(pre_path: Path, out_path: Path, reader, settings: Int8Settings, exclude: list[str], ranges_path: Path) -> None:
    """onnxruntime's quantize_static; with ``reader=None`` it takes the ranges from ``ranges_path``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    extra = {"ActivationSymmetric": settings.activation_symmetric, "WeightSymmetric": settings.weight_symmetric, "QDQKeepRemovableActivations": settings.keep_activation_functions}
    if reader is None:
        extra["TensorQuantOverrides"] = _overrides(pre_path, settings, ranges_path)
    if settings.calibrate_method == "percentile":
        extra["CalibPercentile"] = 99.999
    quantize_static(
        str(pre_path),
        str(out_path),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=settings.per_channel,
        reduce_range=settings.reduce_range,
        activation_type=QuantType.QInt8 if settings.activation_type == "int8" else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude,
        calibrate_method=methods.get(settings.calibrate_method, CalibrationMethod.MinMax),
        extra_options=extra,
        calibration_cache_path=str(ranges_path),
    )


def _overrides(pre_path: Path, settings: Int8Settings, ranges_path: Path) -> dict[str, list[dict]]:
    """quantize_static's per-tensor overrides: uint8 (zero point 0) for activations calibration saw no negative value
    in, and 7-bit first-layer weights."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import load_tensors_data

    overrides: dict[str, list[dict]] = {}
    if settings.unsigned_non_negative_activations:
        ranges = load_tensors_data(ranges_path).data
        overrides |= {name: [{"quant_type": QuantType.QUInt8, "symmetric": False}] for name, data in ranges.items() if float(np.min(data.range_value[0])) >= 0.0}
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
