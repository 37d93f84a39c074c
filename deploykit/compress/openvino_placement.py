"""OpenVINO's Q/DQ placement, learnt from the files NNCF makes for OpenVINO's CPU plugin, for ``--int8-layout openvino``.

OpenVINO turns each Q/DQ pair into a FakeQuantize and its low-precision transformations fold it into
the int8 kernel around it. NNCF (``nncf.quantize`` for the CPU) places them so that every fold
succeeds; onnxruntime's QDQ graph differs from that in a few places, which this pass changes:

- activations are symmetric: uint8 with zero point 0 where calibration saw no negative value, int8
  with zero point 0 elsewhere (``quantize_static``'s per-tensor overrides, qdq_build.py), and the
  activation functions stay in the graph with the Q/DQ after them, so Conv+ReLU fuse; here the
  Q/DQ in front of Relu, Clip and Sigmoid is removed;
- a quantizer does not repeat after MaxPool: OpenVINO moves the MaxPool's input quantizer through it;
- the classifier's input is quantized in front of its Reshape/Flatten (the same values, the shape op
  then runs in int8);
- biases stay float (bias correction folded in first), and the first layer's weights use 7 bits, as
  NNCF's overflow fix does, so CPUs without VNNI do not saturate their 16-bit sums on the image input.

Residual Adds keep both inputs quantized, so they run in int8, as onnxruntime already puts them.
tests/export/test_openvino_placement.py compares the result (``qdq.placement``) with NNCF's own
placement on resnet50, mobilenet_v2 and efficientnet_lite0.

One difference is kept on purpose: NNCF gives depthwise convolutions' inputs per-channel scales,
and onnxruntime 1.32 fuses such a pair into a QLinearConv that refuses it ("input zero point must
be a scalar"), for some input sizes, so the file would not run everywhere. Measured on the real
MobileNet-v2 (500 labelled photos, on OpenVINO): per-channel 82.8% top-1, per-tensor 82.4%, FP32
82.8%; the executed graphs are the same, so speed does not change.
"""

from __future__ import annotations

import onnx

from deploykit.compress.qdq import QdqGraph, remove_pairs

ACTIVATIONS = ("Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Tanh")
SHAPE_OPS = ("Reshape", "Flatten")
MATMULS = ("Gemm", "MatMul")


def apply_openvino_rules(model: onnx.ModelProto) -> int:
    """Place Q/DQ as NNCF does for OpenVINO (in place); the number of pairs removed or moved."""
    return remove_pairs(model, _removed) + _quantize_before_shape_ops(model)


def first_layer_weights(model: onnx.ModelProto) -> list[str]:
    """The weights of the convolutions that read the graph input (NNCF's "first layer" for its overflow fix)."""
    graph_input = model.graph.input[0].name
    return [node.input[1] for node in model.graph.node if node.op_type == "Conv" and node.input[0] == graph_input]


def _removed(node: onnx.NodeProto, index: int, graph: QdqGraph) -> bool:
    if node.op_type in ACTIVATIONS:
        return True
    if index == 2 and node.op_type in ("Conv", *MATMULS):  # the bias
        return True
    producer = graph.float_producer(node.input[index])
    return producer is not None and producer.op_type == "MaxPool" and graph.quantized_source(producer.input[0]) is not None


def _quantize_before_shape_ops(model: onnx.ModelProto) -> int:
    """Move the pair between a Reshape/Flatten and the Gemm/MatMul reading it to the shape op's input."""
    graph = QdqGraph(model)
    moved = 0
    for node in model.graph.node:
        if node.op_type not in MATMULS:
            continue
        dq = graph.producers.get(node.input[0])
        source = graph.quantized_source(node.input[0])
        shape_op = graph.producers.get(source) if source else None
        if shape_op is None or shape_op.op_type not in SHAPE_OPS or len(graph.consumers.get(source, [])) != 1:
            continue
        q = graph.producers[dq.input[0]]
        q.input[0], shape_op.input[0], node.input[0] = shape_op.input[0], dq.output[0], source
        nodes = [n for n in model.graph.node if n is not q and n is not dq]
        at = nodes.index(shape_op)
        nodes[at:at] = [q, dq]  # the pair now runs before the shape op: keep the graph topologically sorted
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        moved += 1
    return moved
