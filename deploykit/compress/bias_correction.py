"""Bias correction for Q/DQ graphs (Nagel et al., 2019, "Data-Free Quantization", section 4.2).

Rounding a convolution's weights shifts the mean of its output: E[W_q x] - E[W x] = (W_q - W) E[x]
per output channel. With E[x] measured per input channel on the FP32 graph (calibration data), the
shift is subtracted from the quantized bias. Each layer is corrected from FP32 statistics alone,
so corrections do not chase each other through the network; the layout of the Q/DQ graph, and so
the kernels onnxruntime fuses it into, is unchanged.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from deploykit.compress.qdq import QdqGraph, groups


def correct_biases(fp32: onnx.ModelProto, int8: onnx.ModelProto, input_means: dict[str, np.ndarray]) -> list[str]:
    """Fold each quantized Conv's mean weight-rounding error into its int32 bias, in place; the corrected nodes."""
    fp32_convs = {node.name: node for node in fp32.graph.node if node.op_type == "Conv"}
    fp32_weights = {init.name: init for init in fp32.graph.initializer}
    graph = QdqGraph(int8)
    corrected = []
    for node in int8.graph.node:
        source = fp32_convs.get(node.name)
        if node.op_type != "Conv" or source is None or len(node.input) < 3 or source.input[0] not in input_means:
            continue
        rounded, values = graph.dequantized(node.input[1]), graph.dequantized(node.input[2])
        if rounded is None or values is None:
            continue
        weight = numpy_helper.to_array(fp32_weights[source.input[1]]).astype(np.float64)
        shift = _mean_output_shift((rounded - weight).sum(axis=(2, 3)), input_means[source.input[0]].astype(np.float64), groups(node))
        bias_dq = graph.producers[node.input[2]]
        bias = graph.initializers[bias_dq.input[0]]
        scale = numpy_helper.to_array(graph.initializers[bias_dq.input[1]]).astype(np.float64)
        info = np.iinfo(np.int32)
        quantized = np.clip(np.round((values - shift) / scale), info.min, info.max).astype(np.int32)
        bias.CopyFrom(numpy_helper.from_array(quantized, bias.name))
        corrected.append(node.name)
    return corrected


def _mean_output_shift(error: np.ndarray, input_mean: np.ndarray, groups: int) -> np.ndarray:
    """(out,) shift of the mean output for a kernel-summed weight error (out, in/groups)."""
    out_channels, group_inputs = error.shape
    per_group = out_channels // groups
    means = input_mean.reshape(groups, group_inputs)
    return np.einsum("gok,gk->go", error.reshape(groups, per_group, group_inputs), means).reshape(out_channels)
