"""Activation statistics for INT8: per-sample ranges of every tensor and per-channel means of conv inputs.

One pass of the FP32 graph over the calibration samples collects both. Ranges are aggregated
robustly by default: the mean over samples of each sample's min and max (``mean-minmax``, as NNCF
estimates activation ranges), so one unusual image does not stretch a tensor's range and waste
its 256 levels. ``minmax`` takes the extremes over all samples. The conv input means drive bias
correction (compress/bias_correction.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from deploykit.runtime.ort_runner import stream_intermediates

ROBUST_METHODS = ("mean-minmax", "minmax")  # computed here; entropy and percentile are onnxruntime's histograms
_CHUNK = 4


@dataclass
class ActivationStats:
    """Per-sample (min, max) of every float tensor, and the per-channel mean of every conv input."""

    sample_min: dict[str, np.ndarray]
    sample_max: dict[str, np.ndarray]
    channel_means: dict[str, np.ndarray]

    def ranges(self, method: str, extremes: frozenset[str] = frozenset()) -> dict[str, tuple[float, float]]:
        """(low, high) per tensor, always containing 0 as quantization needs; the tensors in ``extremes`` take the
        global min/max whatever the method (a classifier's input: clipping it moves the logits themselves)."""
        if method not in ROBUST_METHODS:
            raise ValueError(f"ranges for {method!r} come from onnxruntime's calibrator")
        aggregate = {}
        for name in self.sample_min:
            if method == "minmax" or name in extremes:
                aggregate[name] = (float(self.sample_min[name].min()), float(self.sample_max[name].max()))
            else:
                aggregate[name] = (float(self.sample_min[name].mean()), float(self.sample_max[name].mean()))
        return {name: (min(low, 0.0), max(high, 0.0)) for name, (low, high) in aggregate.items()}

    def save(self, path: Path) -> None:
        arrays = {f"min/{k}": v for k, v in self.sample_min.items()} | {f"max/{k}": v for k, v in self.sample_max.items()}
        arrays |= {f"mean/{k}": v for k, v in self.channel_means.items()}
        with open(path, "wb") as out:
            np.savez(out, **arrays)

    @classmethod
    def load(cls, path: Path) -> ActivationStats:
        stats = cls({}, {}, {})
        with np.load(path, allow_pickle=False) as arrays:
            for key in arrays.files:
                kind, _, name = key.partition("/")
                {"min": stats.sample_min, "max": stats.sample_max, "mean": stats.channel_means}[kind][name] = arrays[key]
        return stats


def collect_stats(proto: onnx.ModelProto, samples: np.ndarray, advance=lambda n: None) -> ActivationStats:
    """Run the FP32 graph over ``samples`` with every tensor as an output; keep only the statistics."""
    names = [proto.graph.input[0].name, *(out for node in proto.graph.node for out in node.output if out)]
    conv_inputs = {node.input[0] for node in proto.graph.node if node.op_type == "Conv"}
    lows: dict[str, list[np.ndarray]] = {}
    highs: dict[str, list[np.ndarray]] = {}
    sums: dict[str, np.ndarray] = {}
    for count, values in stream_intermediates(proto, names, samples, _CHUNK):
        advance(count)
        for name, value in values.items():
            if not np.issubdtype(value.dtype, np.floating):
                continue
            flat = value.reshape(count, -1)
            if not flat.size:
                continue
            lows.setdefault(name, []).append(flat.min(axis=1))
            highs.setdefault(name, []).append(flat.max(axis=1))
            if name in conv_inputs and value.ndim == 4:
                sums[name] = sums.get(name, 0.0) + value.astype(np.float64).mean(axis=(2, 3)).sum(axis=0)
    return ActivationStats(
        sample_min={k: np.concatenate(v).astype(np.float32) for k, v in lows.items()},
        sample_max={k: np.concatenate(v).astype(np.float32) for k, v in highs.items()},
        channel_means={k: (v / len(samples)).astype(np.float32) for k, v in sums.items()},
    )


def write_ort_ranges(ranges: dict[str, tuple[float, float]], path: Path) -> None:
    """Write ranges as onnxruntime's calibration cache, so quantize_static uses them and skips its own pass."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData, save_tensors_data

    data = {name: TensorData(lowest=np.array([low], np.float32), highest=np.array([high], np.float32)) for name, (low, high) in ranges.items()}
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), path)


def classifier_inputs(proto: onnx.ModelProto) -> frozenset[str]:
    """The activations read by a Gemm/MatMul that computes a graph output: a classifier's features."""
    outputs = {o.name for o in proto.graph.output}
    initializers = {i.name for i in proto.graph.initializer}
    return frozenset(name for node in proto.graph.node if node.op_type in ("Gemm", "MatMul") and set(node.output) & outputs for name in node.input if name not in initializers)
