"""Calibration statistics, bias correction and the fallback's keep-float edit on tiny hand-made graphs, each held to what
onnxruntime computes (no export, no model)."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploykit.compress.bias_correction import correct_biases
from deploykit.compress.calibrate import collect_stats
from deploykit.compress.qdq import keep_float
from deploykit.runtime.ort_runner import create_session

RNG = np.random.default_rng(0)
WEIGHT = RNG.standard_normal((2, 3, 3, 3)).astype(np.float32)
BIAS = np.array([0.5, -0.25], np.float32)
WEIGHT_SCALE = np.abs(WEIGHT).max(axis=(1, 2, 3)) / 7  # 4-bit-coarse weights: a rounding error bias correction can see
BIAS_SCALE = 1e-4


def model(nodes, inits, channels=2):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, channels, 3, 3])
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 18)])


def fp32_conv():
    """Relu -> Conv(3x3, no padding) with float weights."""
    return model(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Conv", ["r", "w", "b"], ["y"], name="conv")],
        [numpy_helper.from_array(WEIGHT, "w"), numpy_helper.from_array(BIAS, "b")],
    )


def int8_conv(activation_scale=None):
    """The same conv with per-channel int8 weights and an int32 bias behind DequantizeLinear; with ``activation_scale``
    its input goes through a uint8 Q/DQ pair too."""
    integers = np.round(WEIGHT / WEIGHT_SCALE[:, None, None, None]).astype(np.int8)
    inits = [
        numpy_helper.from_array(integers, "w_q"),
        numpy_helper.from_array(WEIGHT_SCALE.astype(np.float32), "w_s"),
        numpy_helper.from_array(np.zeros(2, np.int8), "w_z"),
        numpy_helper.from_array(np.round(BIAS / BIAS_SCALE).astype(np.int32), "b_q"),
        numpy_helper.from_array(np.full(2, BIAS_SCALE, np.float32), "b_s"),
        numpy_helper.from_array(np.zeros(2, np.int32), "b_z"),
    ]
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w_dq"], axis=0),
        helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_z"], ["b_dq"], axis=0),
    ]
    conv_input = "r"
    if activation_scale is not None:
        inits += [numpy_helper.from_array(np.array(activation_scale, np.float32), "a_s"), numpy_helper.from_array(np.array(0, np.uint8), "a_z")]
        nodes += [helper.make_node("QuantizeLinear", ["r", "a_s", "a_z"], ["r_q"]), helper.make_node("DequantizeLinear", ["r_q", "a_s", "a_z"], ["r_dq"])]
        conv_input = "r_dq"
    return model(nodes + [helper.make_node("Conv", [conv_input, "w_dq", "b_dq"], ["y"], name="conv")], inits)


def run(proto, x):
    return create_session(proto.SerializeToString(), ["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_calibration_statistics_are_each_samples_extremes_and_the_conv_inputs_channel_means():
    samples = RNG.standard_normal((6, 3, 5, 5)).astype(np.float32) * np.arange(1, 7, dtype=np.float32)[:, None, None, None]
    stats = collect_stats(fp32_conv(), samples)
    relu = np.maximum(samples, 0)
    assert np.allclose(stats.sample_min["x"], samples.reshape(6, -1).min(axis=1))
    assert np.allclose(stats.sample_max["r"], relu.reshape(6, -1).max(axis=1))
    assert np.allclose(stats.channel_means["r"], relu.mean(axis=(0, 2, 3)), rtol=1e-5)  # what bias correction reads
    y = run(fp32_conv(), samples)
    assert stats.ranges("minmax")["y"] == pytest.approx((float(y.min()), float(y.max())), rel=1e-5)
    robust = stats.ranges("mean-minmax")["y"]
    assert robust == pytest.approx((float(y.reshape(6, -1).min(axis=1).mean()), float(y.reshape(6, -1).max(axis=1).mean())), rel=1e-5)
    assert stats.ranges("mean-minmax")["r"][0] == 0.0  # a range always holds zero


def test_bias_correction_gives_back_the_fp32_output_mean():
    """On an input at the calibration means (constant over space), the corrected INT8 conv's output equals FP32's up to
    the bias's rounding; before correction the coarse weights' rounding moves it."""
    means = np.array([0.3, 1.2, 0.7], np.float32)
    x = np.broadcast_to(means[None, :, None, None], (1, 3, 5, 5)).astype(np.float32).copy()
    fp32, int8 = fp32_conv(), int8_conv()
    before = run(int8, x)
    assert correct_biases(fp32, int8, {"r": means}) == ["conv"]
    after, expected = run(int8, x), run(fp32, x)
    assert np.abs(before - expected).max() > 0.05
    assert np.abs(after - expected).max() < 2 * BIAS_SCALE


def test_keep_float_runs_the_layer_on_the_fp32_graphs_own_input_weights_and_bias():
    """The fallback's one edit: the conv reads its float input (the activation Q/DQ bypassed) and the FP32 graph's
    weights and bias, so it computes exactly what FP32 computes; the pairs nobody reads are gone."""
    x = RNG.standard_normal((2, 3, 5, 5)).astype(np.float32)
    int8 = int8_conv(activation_scale=0.05)
    assert np.abs(run(int8, x) - run(fp32_conv(), x)).max() > 0.01
    keep_float(int8, ["conv"], fp32_conv())
    assert np.array_equal(run(int8, x), run(fp32_conv(), x))
    assert not [node for node in int8.graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert sorted(init.name for init in int8.graph.initializer) == ["b/fp32", "w/fp32"]
