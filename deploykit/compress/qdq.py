"""Reading a Q/DQ graph: who produces and who reads each tensor, seen through Q/DQ pairs, and the float value
behind a dequantized initializer, and where a graph's Q/DQ pairs sit. Shared by bias correction, QAT and the
placement rules of each layout."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

QDQ = ("QuantizeLinear", "DequantizeLinear")
WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})  # compute nodes with a weight input


_INTEGER_RANGES = {onnx.TensorProto.UINT8: (0, 255), onnx.TensorProto.INT8: (-128, 127)}


@dataclass(frozen=True)
class Quantizer:
    """An activation QuantizeLinear as onnxruntime computes it: ``round(x / scale) + zero_point`` clamped to the whole
    range of its integer type (-128..127 or 0..255, tests/compress/test_quantizer.py), per channel where ``scale`` is
    an array."""

    scale: np.ndarray  # float64: () per tensor, (C,) per channel
    zero_point: int  # 0 where the zero points are per channel (symmetric)
    qmin: int
    qmax: int


class QdqGraph:
    """Producer/consumer maps and initializers of a graph (built once; nodes may be rewired afterwards)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.initializers = {init.name: init for init in model.graph.initializer}
        self.producers = {out: node for node in model.graph.node for out in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in model.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def quantized_source(self, name: str) -> str | None:
        """The float tensor behind a DequantizeLinear(QuantizeLinear(x)) chain, or the DQ's initializer; None otherwise."""
        dq = self.producers.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        q = self.producers.get(dq.input[0])
        return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else dq.input[0]

    def float_producer(self, name: str) -> onnx.NodeProto | None:
        """The node that computed ``name`` in the float graph (Q/DQ pairs looked through)."""
        return self.producers.get(self.quantized_source(name) or name)

    def float_consumers(self, name: str) -> list[onnx.NodeProto]:
        """The nodes reading ``name`` in the float graph (Q/DQ pairs looked through)."""
        readers = []
        for node in self.consumers.get(name, []):
            if node.op_type in QDQ:
                readers += [r for out in node.output for r in self.float_consumers(out)]
            else:
                readers.append(node)
        return readers

    def dequantizes_initializer(self, name: str) -> bool:
        """Whether ``name`` is the output of a DequantizeLinear of an initializer (a quantized weight or bias)."""
        dq = self.producers.get(name)
        return dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in self.initializers

    def dequantized(self, name: str) -> np.ndarray | None:
        """``(q - zero_point) * scale`` in float64 when ``name`` is a DequantizeLinear of an initializer (per-channel
        scales along the node's axis); None for anything else."""
        if not self.dequantizes_initializer(name):
            return None
        dq = self.producers[name]
        values = numpy_helper.to_array(self.initializers[dq.input[0]]).astype(np.float64)
        scale = numpy_helper.to_array(self.initializers[dq.input[1]]).astype(np.float64)
        has_zero = len(dq.input) > 2 and dq.input[2]
        zero = numpy_helper.to_array(self.initializers[dq.input[2]]).astype(np.float64) if has_zero else np.zeros(())
        if np.ndim(scale):
            shape = [1] * values.ndim
            shape[next((a.i for a in dq.attribute if a.name == "axis"), 1) % values.ndim] = -1
            scale = scale.reshape(shape)
            zero = zero.reshape(shape) if np.ndim(zero) else zero
        return (values - zero) * scale

    def activation_quantizers(self) -> dict[str, Quantizer]:
        """Each activation's quantizer, by the float tensor it quantizes (weights, quantized as initializers, left out)."""
        quantizers = {}
        for node in self.producers.values():
            if node.op_type != "QuantizeLinear" or node.input[0] in self.initializers or node.input[0] in quantizers:
                continue
            zero = self.initializers.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            qmin, qmax = _INTEGER_RANGES[zero.data_type if zero is not None else onnx.TensorProto.UINT8]
            quantizers[node.input[0]] = Quantizer(
                numpy_helper.to_array(self.initializers[node.input[1]]).astype(np.float64), int(numpy_helper.to_array(zero).ravel()[0]) if zero is not None else 0, qmin, qmax
            )
        return quantizers

    def constant(self, name: str) -> np.ndarray | None:
        """An initializer's value, or a dequantized initializer's (e.g. an int32 bias), in float64; None otherwise."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name]).astype(np.float64)
        return self.dequantized(name)


def groups(node: onnx.NodeProto) -> int:
    """A Conv's ``group`` attribute (1 when absent)."""
    return _attribute(node, "group", 1)


def float_graph_outputs(model: onnx.ModelProto) -> int:
    """Remove the Q/DQ pair in front of every graph output (in place), so the outputs stay float, and what only it read;
    how many were removed.

    A quantized output is clipped to the range calibration saw: on a confident image the top logits of a
    classifier saturate at the bound, tie, and argmax picks the lowest class. NNCF, ModelOpt and
    TensorRT's own rules leave outputs float; onnxruntime's quantize_static quantizes them.
    """
    graph = QdqGraph(model)
    removed = 0
    for output in model.graph.output:
        source = graph.quantized_source(output.name)
        dq = graph.producers.get(output.name)
        if source is None or dq is None or source in graph.initializers or source == dq.input[0]:
            continue
        q = graph.producers[dq.input[0]]
        model.graph.node.remove(dq)
        if [reader.name for reader in graph.consumers.get(q.output[0], [])] == [dq.name]:
            model.graph.node.remove(q)
        for node in model.graph.node:  # the float tensor takes the output's name, for its producer and every reader
            node.output[:] = [output.name if name == source else name for name in node.output]
            node.input[:] = [output.name if name == source else name for name in node.input]
        for info in [v for v in model.graph.value_info if v.name in (source, output.name)]:
            model.graph.value_info.remove(info)
        removed += 1
    drop_unused(model)  # the output quantizer's scale and zero point
    return removed


def keep_float(model: onnx.ModelProto, names: Collection[str], reference: onnx.ModelProto) -> None:
    """Run the compute nodes ``names`` in float, in place: each input read through a Q/DQ pair is rewired to the float
    tensor behind it (remove_pairs), and every constant input (weight, bias) is ``reference``'s own, unrounded and
    uncorrected (the FP32 graph the file was quantized from, whose nodes have the same names). The accuracy
    fallback ranks layers and ships the file with this one edit."""
    names = set(names)
    remove_pairs(model, lambda node, index, graph: node.name in names)
    originals = {node.name: node for node in reference.graph.node if node.name in names}
    initializers = {init.name: init for init in reference.graph.initializer}
    current = {init.name for init in model.graph.initializer}
    for node in model.graph.node:
        for index, name in enumerate(node.input if node.name in originals else ()):
            original = originals[node.name].input[index]
            if original not in initializers or name not in current:
                continue
            replacement = f"{original}/fp32"
            if replacement not in current:
                model.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(initializers[original]), replacement))
                current.add(replacement)
            node.input[index] = replacement
    drop_unused(model)


def remove_pairs(model: onnx.ModelProto, removed: Callable[[onnx.NodeProto, int, QdqGraph], bool]) -> int:
    """Rewire every compute-node input that ``removed(node, index, graph)`` picks from its Q/DQ pair to the float tensor
    behind it (a weight or bias: to a float initializer of its dequantized values), then drop what nobody reads; in
    place. The number of inputs rewired."""
    graph = QdqGraph(model)
    rewired = 0
    added: dict[str, onnx.TensorProto] = {}
    for node in model.graph.node:
        if node.op_type in QDQ:
            continue
        for index, name in enumerate(node.input):
            source = graph.quantized_source(name)
            if source is None or not removed(node, index, graph):
                continue
            if source in graph.initializers:
                replacement = f"{source.removesuffix('_quantized')}_float"
                added.setdefault(replacement, numpy_helper.from_array(graph.dequantized(name).astype(np.float32), replacement))
                source = replacement
            node.input[index] = source
            rewired += 1
    model.graph.initializer.extend(added.values())
    drop_unused(model)
    return rewired


_LOADER_QUANTIZED = ("Conv", "ConvTranspose", "Gemm")  # the ops whose float weights WeightBiasQuantization rewrites


def shield_float_layers(model: onnx.ModelProto) -> list[str]:
    """Keep float the layers a Q/DQ file leaves float (``--exclude``, the fallback's); in place; their names.

    onnxruntime 1.20+ (its WeightBiasQuantization pass) quantizes at load time, to per-tensor int8, the float weights
    of every Conv, ConvTranspose and Gemm whose input comes from a DequantizeLinear with one scale: a layer kept in
    FP32 ran with int8 weights, per tensor. Each such layer gets a DequantizeLinear of its own holding the same scale
    and zero point once per input channel (axis 1): the same values, which that pass leaves alone.
    """
    graph = QdqGraph(model)
    shielded = []
    for node in [n for n in model.graph.node if n.op_type in _LOADER_QUANTIZED]:
        dq, weight = graph.producers.get(node.input[0]), graph.initializers.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or weight is None or weight.data_type != onnx.TensorProto.FLOAT:
            continue
        scale = graph.initializers.get(dq.input[1])
        zero = graph.initializers.get(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
        if scale is None or scale.dims or _attribute(node, "transA", 0):
            continue
        channels = _input_channels(node, list(weight.dims))
        names = [f"{node.name or node.output[0]}_input_{kind}_per_channel" for kind in ("scale", "zero_point", "dequantized")]
        model.graph.initializer.append(numpy_helper.from_array(np.full(channels, numpy_helper.to_array(scale)), names[0]))
        inputs = [dq.input[0], names[0]]
        if zero is not None:
            model.graph.initializer.append(numpy_helper.from_array(np.full(channels, numpy_helper.to_array(zero)), names[1]))
            inputs.append(names[1])
        position = list(model.graph.node).index(node)
        model.graph.node.insert(position, onnx.helper.make_node("DequantizeLinear", inputs, [names[2]], name=names[2], axis=1))
        node.input[0] = names[2]
        shielded.append(node.name)
    drop_unused(model)
    return shielded


def _attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def _input_channels(node: onnx.NodeProto, weight: list[int]) -> int:
    """The input's channel count (axis 1), from the weight's shape."""
    if node.op_type == "Conv":
        return weight[1] * groups(node)
    if node.op_type == "ConvTranspose":
        return weight[0]
    return weight[1] if _attribute(node, "transB", 0) else weight[0]


def drop_unused(model: onnx.ModelProto) -> None:
    """Remove Q/DQ nodes nobody reads any more, then initializers nobody reads."""
    outputs = {o.name for o in model.graph.output}
    while True:
        read = {name for node in model.graph.node for name in node.input} | outputs
        dead = [n for n in model.graph.node if n.op_type in QDQ and not any(o in read for o in n.output)]
        if not dead:
            break
        for node in dead:
            model.graph.node.remove(node)
    read = {name for node in model.graph.node for name in node.input}
    for init in [i for i in model.graph.initializer if i.name not in read]:
        model.graph.initializer.remove(init)


def placement(model: onnx.ModelProto, types: bool = False) -> list[str]:
    """Where a graph's Q/DQ pairs sit, comparable across quantizers that name nodes differently: each dequantized
    input of a compute node as "OpType[input] <- producer OpType" (or "<- weight"), sorted, repeats kept. A Cast
    is looked through (ModelOpt casts the graph input). With ``types``, an activation's entry also says its integer
    type and whether its scale is per-tensor or per-channel ("Conv[0] <- Clip uint8 per-channel")."""
    graph = QdqGraph(model)
    entries = []
    for node in model.graph.node:
        if node.op_type in QDQ or node.op_type == "Cast":
            continue
        for index, name in enumerate(node.input):
            source = graph.quantized_source(name)
            if source is None:
                continue
            while source in graph.producers and graph.producers[source].op_type == "Cast":
                source = graph.producers[source].input[0]
            if source in graph.initializers or graph.quantized_source(source) in graph.initializers:
                entries.append(f"{node.op_type}[{index}] <- weight")
            else:
                producer = graph.producers.get(source)
                entry = f"{node.op_type}[{index}] <- {producer.op_type if producer is not None else 'graph input'}"
                entries.append(f"{entry} {_quantizer_type(graph, name)}" if types else entry)
    return sorted(entries)


def _quantizer_type(graph: QdqGraph, dequantized: str) -> str:
    """ "uint8 per-tensor", "int8 per-channel", ... for the DequantizeLinear that computes ``dequantized``."""
    dq = graph.producers[dequantized]
    zero = graph.initializers.get(dq.input[2]) if len(dq.input) > 2 else None
    integer = onnx.helper.tensor_dtype_to_np_dtype(zero.data_type).name if zero is not None else "uint8"
    return f"{integer} {'per-channel' if graph.initializers[dq.input[1]].dims else 'per-tensor'}"
