"""The accuracy fallback: which quantized layers, kept in FP32, bring the INT8 output closest to FP32's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from deploykit.compress.qdq import QdqGraph
from deploykit.parity import mean_cosine, run_all
from deploykit.runtime.ort_runner import OrtRunner

WEIGHTED_OPS = {"Conv", "Gemm", "MatMul", "ConvTranspose"}


@dataclass(frozen=True)
class KeptLayer:
    """A layer left in FP32 by the accuracy fallback, and why."""

    node: str
    output: str
    output_gain: float  # mean output cosine vs FP32 gained by keeping this layer alone in FP32


def growing(limit: int) -> list[int]:
    """1, 2, 4, 8, ... up to ``limit`` (included): few re-quantizations to reach the smallest set that passes."""
    counts, count = [], 1
    while count < limit:
        counts.append(count)
        count *= 2
    return counts + [limit] if limit else []


def layer_sensitivity(fp32_model: onnx.ModelProto, int8_model: onnx.ModelProto, inputs: np.ndarray, skip: list[str]) -> list[KeptLayer]:
    """Quantized weighted layers ranked by how much closer the INT8 output gets to FP32 when that layer alone runs in
    float (its activation inputs un-quantized, its FP32 weights and bias): the mean output cosine it gains.

    Measured at the output, one layer at a time, because an early layer's error is amplified by every layer after
    it: MobileNet-v2's first block adds little error where it sits and costs the most top-1 (symmetric int8).
    """
    graph = QdqGraph(int8_model)
    fp32_nodes = {node.name: node for node in fp32_model.graph.node}
    fp32_initializers = {init.name: init for init in fp32_model.graph.initializer}
    with OrtRunner(fp32_model.SerializeToString()) as runner:
        reference = run_all(runner, inputs)
    base = _output_cosine(reference, int8_model, inputs)
    ranked = []
    for index, node in enumerate(int8_model.graph.node):
        if node.op_type not in WEIGHTED_OPS or node.name in skip or node.name not in fp32_nodes:
            continue
        if not any(graph.quantized_source(name) for name in node.input):
            continue
        trial = onnx.ModelProto()
        trial.CopyFrom(int8_model)
        float_node, added = trial.graph.node[index], set()
        for position, name in enumerate(node.input):
            source = graph.quantized_source(name)
            if source is None:
                continue
            if source in graph.initializers:  # a weight or bias: the FP32 graph's own, under a name of its own
                original = fp32_initializers[fp32_nodes[node.name].input[position]]
                source = f"{original.name}/fp32_model"
                if source not in added:
                    trial.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(original), source))
                    added.add(source)
            float_node.input[position] = source
        ranked.append(KeptLayer(node.name, node.output[0], _output_cosine(reference, trial, inputs) - base))
    return sorted(ranked, key=lambda k: -k.output_gain)


def _output_cosine(reference: np.ndarray, model: onnx.ModelProto, inputs: np.ndarray) -> float:
    with OrtRunner(model.SerializeToString()) as runner:
        return mean_cosine(reference, run_all(runner, inputs))
