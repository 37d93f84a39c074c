"""One reading of a Q/DQ quantizer (QdqGraph.activation_quantizers), held to what onnxruntime computes on a tiny graph:
saturation and QAT read it, so both clamp where the runtime clamps."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploykit.compress.qat import read_plan
from deploykit.compress.qdq import QdqGraph
from deploykit.compress.saturation import activation_saturation
from deploykit.runtime.ort_runner import create_session


def q_dq_graph(zero_point: np.ndarray, scale: float = 0.1) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 1, 6])
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]), helper.make_node("Identity", ["d"], ["y"])]
    inits = [numpy_helper.from_array(np.array(scale, np.float32), "s"), numpy_helper.from_array(zero_point, "z")]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("zero_point, expected_range", [(np.array(0, np.int8), (-128, 127)), (np.array(128, np.uint8), (0, 255)), (np.array(0, np.uint8), (0, 255))])
def test_the_quantizer_clamps_where_onnxruntime_does(zero_point, expected_range):
    model = q_dq_graph(zero_point)
    quantizer = QdqGraph(model).activation_quantizers()["x"]
    assert (quantizer.qmin, quantizer.qmax, quantizer.zero_point) == (*expected_range, int(zero_point))
    x = np.array([[[[-30.0, -12.84, -12.75, 0.04, 12.74, 30.0]]]], np.float32)
    ran = create_session(model.SerializeToString(), ["CPUExecutionProvider"]).run(None, {"x": x})[0]
    levels = np.clip(np.rint(x / 0.1) + quantizer.zero_point, quantizer.qmin, quantizer.qmax)
    assert np.allclose(ran, (levels - quantizer.zero_point) * 0.1, atol=1e-6), (ran, levels)
    outside = ((np.rint(x / 0.1) + quantizer.zero_point) < quantizer.qmin) | ((np.rint(x / 0.1) + quantizer.zero_point) > quantizer.qmax)
    (saturation,) = activation_saturation(model, x)
    expected = outside.mean() if quantizer.zero_point != quantizer.qmin else ((np.rint(x / 0.1)) > quantizer.qmax).mean()
    assert saturation.clipped == pytest.approx(expected), (saturation, outside)


def test_qat_simulates_the_runtimes_range_and_hands_back_the_scale_onnxruntime_computes():
    """Symmetric int8: the simulated clamp is -128..127 as the runtime's; the range handed back to onnxruntime is
    +-127 x scale, from which its quantizer (absmax / 127) computes the same scale."""
    from onnxruntime.quantization.quant_utils import compute_scale_zp, get_qmin_qmax_for_qType

    plan = read_plan(q_dq_graph(np.array(0, np.int8), scale=0.05))
    quantizer = plan.activations["x"]
    assert (quantizer.qmin, quantizer.qmax) == (-128, 127)
    low, high = quantizer.range
    qmin, qmax = get_qmin_qmax_for_qType(TensorProto.INT8, symmetric=True)
    zero, scale = compute_scale_zp(np.array(low, np.float32), np.array(high, np.float32), qmin, qmax, symmetric=True)
    assert float(scale) == pytest.approx(0.05, rel=1e-6) and int(zero) == 0
