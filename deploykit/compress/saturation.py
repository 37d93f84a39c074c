"""How often each activation quantizer clips: the share of values beyond the range its scale and zero point can hold.

A clipped value is one whose ``round(x / scale) + zero_point`` falls outside the integer type's range
(with per-channel scales, each channel's own).
Where the range starts at zero (onnxruntime folds a following ReLU or ReLU6 into the range of the
convolution's output) the values cut off below zero are the activation's work, not clipping, and are
not counted.
Saturation is the first thing to look at when INT8 disagrees with FP32: a tensor that clips on many
images (the logits, or a classifier's input) can change the argmax on exactly the confident images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from deploykit.compress.qdq import QdqGraph
from deploykit.runtime.ort_runner import stream_intermediates

_CHUNK = 8


@dataclass(frozen=True)
class Saturation:
    """One activation quantizer's clipping on a set of images."""

    tensor: str
    clipped: float  # share of all its values that were clipped
    images: float  # share of images with at least one clipped value
    low: float
    high: float

    def as_dict(self) -> dict:
        return {"tensor": self.tensor, "clipped": round(self.clipped, 6), "images": round(self.images, 4), "range": [round(self.low, 6), round(self.high, 6)]}


def activation_saturation(model: onnx.ModelProto, inputs: np.ndarray) -> list[Saturation]:
    """Every activation quantizer of a Q/DQ graph, most clipped first, measured on ``inputs`` (N, C, H, W)."""
    quantizers = QdqGraph(model).activation_quantizers()
    if not quantizers:
        return []
    names = list(quantizers)
    clipped = dict.fromkeys(names, 0)
    total = dict.fromkeys(names, 0)
    hit_images = dict.fromkeys(names, 0)
    for count, values in stream_intermediates(model, names, inputs, _CHUNK):
        for name, value in values.items():
            q = quantizers[name]
            per_channel = q.scale.reshape(1, -1, *[1] * (value.ndim - 2)) if q.scale.ndim else q.scale
            levels = np.rint((value / per_channel).reshape(count, -1)) + q.zero_point
            outside = (levels > q.qmax) if q.zero_point == q.qmin else (levels < q.qmin) | (levels > q.qmax)
            clipped[name] += int(outside.sum())
            total[name] += outside.size
            hit_images[name] += int(outside.any(axis=1).sum())
    report = [
        Saturation(
            name,
            clipped[name] / max(total[name], 1),
            hit_images[name] / max(len(inputs), 1),
            (q.qmin - q.zero_point) * float(q.scale.max()),
            (q.qmax - q.zero_point) * float(q.scale.max()),
        )
        for name, q in quantizers.items()
    ]  # the widest channel's range where scales are per-channel
    return sorted(report, key=lambda s: (-s.clipped, -s.images, s.tensor))
