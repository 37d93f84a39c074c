"""Weights that round well: each quantized layer's integer weights chosen against its FP32 output on the calibration
images, not rounded to nearest one by one.

The objective is AdaRound's layer-wise one (Nagel et al. 2020, eq. 21): the change of a layer's output,
``E[(ΔW x)^2] = ΔW H ΔWᵀ`` with ``H = E[x xᵀ]`` over the layer's FP32 inputs (im2col patches for a convolution).
It is solved as GPTQ does (Frantar et al. 2022, after Optimal Brain Quantization): the input columns are rounded one
at a time, largest ``H`` diagonal first, and the error of each is spread over the columns not yet rounded through the
Cholesky factor of ``H⁻¹``. That takes seconds per network where AdaRound's gradient descent takes minutes per layer.

Only the integers change: each weight keeps the scale and zero point onnxruntime's ``quantize_static`` chose, so the
file keeps the Q/DQ layout the runtime fuses (and the 7-bit range where the layout asked for it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper

from deploykit.compress.qdq import QdqGraph, groups
from deploykit.runtime.ort_runner import stream_intermediates

if TYPE_CHECKING:
    import torch

DAMPING = 0.01  # of the mean H diagonal, added to it: GPTQ's default, which keeps H invertible
BLOCK = 128  # columns rounded before their errors reach the rest of the row in one product (GPTQ's block size)
CHUNK_IMAGES = 8  # images per onnxruntime run while H accumulates (activations of one chunk are held at a time)
ROUNDED_OPS = ("Conv", "Gemm", "MatMul")


@dataclass
class _Layer:
    weight: np.ndarray  # float64 FP32 weights, (groups, rows, columns): one row per output channel
    hessian: np.ndarray  # (groups, columns, columns), summed over the calibration inputs
    shape: tuple[int, ...]  # the initializer's shape
    transposed: bool  # a MatMul/Gemm weight stored (in, out)


@dataclass
class WeightRounding:
    """The layer statistics of one FP32 graph, measured once; ``apply`` rewrites a quantized file's weights in place."""

    layers: dict[str, _Layer]
    rounded: dict[tuple[str, bytes], np.ndarray] = field(default_factory=dict)  # (node, scale) -> integers, reused

    @classmethod
    def measure(cls, fp32: onnx.ModelProto, images: np.ndarray) -> WeightRounding:

        weights = {init.name: numpy_helper.to_array(init) for init in fp32.graph.initializer}
        nodes = [
            n for n in fp32.graph.node if n.op_type in ROUNDED_OPS and len(n.input) > 1 and n.input[1] in weights and n.input[0] not in weights and weights[n.input[1]].ndim in (2, 4)
        ]
        inputs = sorted({n.input[0] for n in nodes})
        hessians: dict[str, torch.Tensor] = {}
        for _, values in stream_intermediates(fp32, inputs, images, CHUNK_IMAGES):
            for node in nodes:
                if node.input[0] in values:
                    columns = _columns(node, values[node.input[0]], weights[node.input[1]].shape)
                    if node.name not in hessians:
                        hessians[node.name] = columns.new_zeros(columns.shape[0], columns.shape[2], columns.shape[2])
                    hessians[node.name].baddbmm_(columns.transpose(1, 2), columns)  # in place, float32
        layers = {}
        for node in nodes:
            if node.name in hessians:
                weight, transposed = _as_rows(node, weights[node.input[1]])
                layers[node.name] = _Layer(weight, hessians[node.name].double().numpy(), weights[node.input[1]].shape, transposed)
        return cls(layers)

    def apply(self, int8: onnx.ModelProto) -> int:
        """Replace the integers of every quantized weight this measured; the number of layers rewritten."""
        graph = QdqGraph(int8)
        rewritten = 0
        for node in int8.graph.node:
            layer = self.layers.get(node.name)
            if layer is None or node.op_type not in ROUNDED_OPS or not graph.dequantizes_initializer(node.input[1]):
                continue
            dq = graph.producers[node.input[1]]
            stored = graph.initializers[dq.input[0]]
            integers = numpy_helper.to_array(stored)
            has_zero = len(dq.input) > 2 and dq.input[2]
            zero = numpy_helper.to_array(graph.initializers[dq.input[2]]) if has_zero else np.zeros((), integers.dtype)
            if integers.dtype != np.int8 or np.any(zero != 0):
                continue  # symmetric int8 weights only: the layouts deploykit writes
            scale = numpy_helper.to_array(graph.initializers[dq.input[1]]).astype(np.float64)
            if scale.size > 1 and _axis(dq, integers.ndim) != (1 if layer.transposed else 0):
                continue  # scales along the inputs, not the output channels
            key = (node.name, scale.tobytes())
            if key not in self.rounded:
                limit = int(np.abs(integers).max())  # the range quantize_static used: 127, or 64 for 7-bit weights
                self.rounded[key] = _gptq(layer, _row_scales(scale, layer), limit)
            stored.CopyFrom(numpy_helper.from_array(_as_stored(self.rounded[key], layer), stored.name))
            rewritten += 1
        return rewritten


def _axis(dq: onnx.NodeProto, ndim: int) -> int:
    return next((a.i for a in dq.attribute if a.name == "axis"), 1) % ndim


def _columns(node: onnx.NodeProto, x: np.ndarray, weight_shape: tuple[int, ...]) -> torch.Tensor:
    """The layer's input as float32 (groups, samples, columns): im2col patches for a Conv, rows for a Gemm/MatMul."""
    import torch
    import torch.nn.functional as F

    if node.op_type != "Conv":
        return torch.from_numpy(np.ascontiguousarray(x.reshape(1, -1, x.shape[-1]), dtype=np.float32))
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    kernel = tuple(weight_shape[2:])
    pads = list(attributes.get("pads", [0, 0, 0, 0]))
    tensor = F.pad(torch.from_numpy(x), (pads[1], pads[3], pads[0], pads[2]))
    patches = F.unfold(tensor, kernel, dilation=tuple(attributes.get("dilations", [1, 1])), stride=tuple(attributes.get("strides", [1, 1])))  # (n, channels * k * k, positions)
    count = groups(node)
    per_group = patches.shape[1] // count
    return patches.reshape(patches.shape[0], count, per_group, -1).permute(1, 0, 3, 2).reshape(count, -1, per_group)


def _as_rows(node: onnx.NodeProto, weight: np.ndarray) -> tuple[np.ndarray, bool]:
    """(groups, rows, columns) float64 weights, and whether a 2-D weight is stored (in, out)."""
    if weight.ndim == 4:
        count = groups(node)
        return weight.reshape(count, weight.shape[0] // count, -1).astype(np.float64), False
    transposed = node.op_type == "MatMul" or not any(a.name == "transB" and a.i for a in node.attribute)
    rows = weight.T if transposed else weight
    return rows[None].astype(np.float64), transposed


def _row_scales(scale: np.ndarray, layer: _Layer) -> np.ndarray:
    """Per-row scales (groups, rows, 1) from a per-tensor or per-output-channel scale."""
    count, rows, _ = layer.weight.shape
    if scale.size > 1:
        return np.array(np.broadcast_to(scale.reshape(-1), (count * rows,)).reshape(count, rows, 1))
    return np.full((count, rows, 1), float(scale))


def _gptq(layer: _Layer, scale: np.ndarray, limit: int) -> np.ndarray:
    """GPTQ over every group at once: integers (groups, rows, columns) within [-limit, limit]."""
    import torch

    weight = torch.from_numpy(layer.weight.copy())
    hessian = torch.from_numpy(layer.hessian.copy())
    s = torch.from_numpy(np.ascontiguousarray(scale))
    diagonal = torch.diagonal(hessian, dim1=1, dim2=2)
    # Inputs that were zero on every calibration image (a ReLU channel these images never fire) keep their weights,
    # rounded to nearest: other images do fire them. Their H row and column are zero, so with a unit diagonal their
    # rounding error reaches no other column. (GPTQ's reference zeroes such weights; LLM activations are never exactly 0.)
    dead = diagonal == 0
    diagonal += torch.where(dead, 1.0, DAMPING * diagonal.mean(dim=1, keepdim=True))
    order = torch.argsort(torch.diagonal(hessian, dim1=1, dim2=2), dim=1, descending=True)
    weight = torch.gather(weight, 2, order[:, None, :].expand_as(weight))
    hessian = torch.gather(torch.gather(hessian, 1, order[:, :, None].expand_as(hessian)), 2, order[:, None, :].expand_as(hessian))
    inverse = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(hessian)), upper=True)
    integers = torch.zeros_like(weight)
    columns = weight.shape[2]
    for first in range(0, columns, BLOCK):  # GPTQ's lazy batch updates: the rest of the row learns a block's errors at once
        last = min(first + BLOCK, columns)
        block, errors = weight[:, :, first:last].clone(), torch.zeros_like(weight[:, :, first:last])
        for column in range(last - first):
            w = block[:, :, column]
            q = torch.clamp(torch.round(w / s[:, :, 0]), -limit, limit)
            integers[:, :, first + column] = q
            errors[:, :, column] = (w - q * s[:, :, 0]) / inverse[:, first + column, first + column][:, None]
            block[:, :, column:] -= errors[:, :, column, None] * inverse[:, None, first + column, first + column : last]
        weight[:, :, last:] -= torch.bmm(errors, inverse[:, first:last, last:])
    restored = torch.empty_like(integers)
    restored.scatter_(2, order[:, None, :].expand_as(integers), integers)
    return restored.numpy().astype(np.int8)


def _as_stored(integers: np.ndarray, layer: _Layer) -> np.ndarray:
    """Back to the initializer's shape and orientation."""
    if len(layer.shape) == 4:
        return integers.reshape(layer.shape)
    rows = integers[0]
    return np.ascontiguousarray(rows.T if layer.transposed else rows)
