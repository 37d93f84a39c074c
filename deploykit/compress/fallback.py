"""The accuracy fallback: which quantized layers, kept in FP32, bring the INT8 output closest to FP32's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from deploykit.compress.qdq import WEIGHTED_OPS, QdqGraph
from deploykit.parity import mean_cosine, run_all
from deploykit.runtime.ort_runner import OrtRunner

Shipped = Callable[[list[str]], onnx.ModelProto]  # the file as it ships with these nodes kept in FP32 (qdq_build.QdqBuild.shipped)


@dataclass(frozen=True)
class KeptLayer:
    """A layer left in FP32 by the accuracy fallback, and why."""

    node: str
    output: str
    output_gain: float  # mean output cosine vs FP32 gained by keeping this layer alone in FP32


def growing(limit: int) -> list[int]:
    """1, 2, 4, 8, ... up to ``limit`` (included): few checks to reach the smallest set that passes."""
    counts, count = [], 1
    while count < limit:
        counts.append(count)
        count *= 2
    return counts + [limit] if limit else []


def candidates(int8_model: onnx.ModelProto, fp32_model: onnx.ModelProto, skip: list[str]) -> list[onnx.NodeProto]:
    """The weighted layers of the FP32 graph that read a quantized input, less ``skip``: what the fallback can keep."""
    graph, float_nodes = QdqGraph(int8_model), {node.name for node in fp32_model.graph.node}
    return [
        node
        for node in int8_model.graph.node
        if node.op_type in WEIGHTED_OPS and node.name in float_nodes and node.name not in skip and any(graph.quantized_source(name) for name in node.input)
    ]


def layer_sensitivity(shipped: Shipped, layers: list[onnx.NodeProto], fp32_model: onnx.ModelProto, inputs: np.ndarray) -> list[KeptLayer]:
    """``layers`` ranked by how much closer the shipped INT8 output gets to FP32 when that layer alone is kept in FP32
    (the very edit the shipped file gets: ``shipped([layer])``): the mean output cosine it gains.

    Measured at the output, one layer at a time, because an early layer's error is amplified by every layer after
    it: MobileNet-v2's first block adds little error where it sits and costs the most top-1 (symmetric int8).
    """
    with OrtRunner(fp32_model.SerializeToString()) as runner:
        reference = run_all(runner, inputs)
    base = _output_cosine(reference, shipped([]), inputs)
    ranked = [KeptLayer(node.name, node.output[0], _output_cosine(reference, shipped([node.name]), inputs) - base) for node in layers]
    return sorted(ranked, key=lambda k: -k.output_gain)


def _output_cosine(reference: np.ndarray, model: onnx.ModelProto, inputs: np.ndarray) -> float:
    with OrtRunner(model.SerializeToString()) as runner:
        return mean_cosine(reference, run_all(runner, inputs))
