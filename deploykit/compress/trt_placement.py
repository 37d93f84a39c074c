"""TensorRT's Q/DQ placement rules, applied to onnxruntime's QDQ graph for ``--target trt``.

onnxruntime puts a Q/DQ pair on the inputs of every op it can quantize. TensorRT fuses a
convolution with the Add and activation after it, and a Q/DQ pair in between blocks the fusion
and adds reformat layers (the "INT8 slower than FP16" reports). NVIDIA's ModelOpt places Q/DQ by
TensorRT's rules; this pass removes what those rules leave out, so that:

- Conv data and weights keep theirs (int8 kernels); so do MaxPool/AveragePool inputs;
- a residual Add keeps a Q/DQ only on the input that is not the fused convolution's output (the
  first input produced by a Conv that feeds nothing else);
- a pooling mean keeps it only when every reader of its output is a Conv (squeeze-excitation);
- a Mul keeps it only when no input is a Conv output (the SE scale, not a Conv's swish epilogue);
- activations (Relu, Clip, Sigmoid), Gemm/MatMul classifiers and shape ops run in float, between
  the int8 layers, where TensorRT fuses them.

Biases stay float (dequantized, with bias correction folded in). Removed pairs are rewired to the
float tensor they quantized. tests/export/test_trt_placement.py compares the result (``qdq.placement``)
with ModelOpt's placement on resnet18, resnet50, mobilenet_v2 and efficientnet_b0.
"""

from __future__ import annotations

import onnx

from deploykit.compress.qdq import QdqGraph, remove_pairs

POOLS = ("MaxPool", "AveragePool")
MEANS = ("ReduceMean", "GlobalAveragePool")


def apply_tensorrt_rules(model: onnx.ModelProto) -> int:
    """Remove the Q/DQ pairs TensorRT's rules leave out (in place); the number of node inputs rewired to float."""
    return remove_pairs(model, lambda node, index, graph: not _keeps(node, index, graph))


def _keeps(node: onnx.NodeProto, index: int, graph: QdqGraph) -> bool:
    if node.op_type == "Conv":
        return index < 2
    if node.op_type in POOLS:
        return True
    if node.op_type == "Add":
        return index != _fused_add_input(node, graph)
    if node.op_type in MEANS:
        readers = graph.float_consumers(node.output[0])
        return bool(readers) and all(reader.op_type == "Conv" for reader in readers)
    if node.op_type == "Mul":
        return not any(_is_conv_output(name, graph) for name in node.input)
    return False


def _fused_add_input(node: onnx.NodeProto, graph: QdqGraph) -> int | None:
    """Which input of a residual Add TensorRT fuses into the convolution that produced it: the first one that a
    Conv produced and that nothing else reads."""
    for index, name in enumerate(node.input):
        source = graph.quantized_source(name) or name
        if _is_conv_output(name, graph) and len(graph.float_consumers(source)) == 1:
            return index
    return None


def _is_conv_output(name: str, graph: QdqGraph) -> bool:
    producer = graph.float_producer(name)
    return producer is not None and producer.op_type == "Conv"
