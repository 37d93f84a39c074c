"""The one streaming runner of intermediate tensors (runtime/ort_runner.stream_intermediates), which calibration,
saturation, GPTQ and per-layer parity all read through, on a hand-made graph whose values numpy can check."""

import numpy as np
import onnx
from onnx import TensorProto, helper

from deploykit.compress.calibrate import collect_stats
from deploykit.runtime.ort_runner import run_with_intermediates, stream_intermediates


def _graph(batch: int | str = "N") -> onnx.ModelProto:
    """X -> Relu -> Y, and Shape(X), a tensor with no batch dimension."""
    nodes = [helper.make_node("Relu", ["X"], ["Y"], name="relu"), helper.make_node("Shape", ["X"], ["S"], name="shape")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [batch, 2, 4, 4])], [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [batch, 2, 4, 4])]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_chunks_hold_the_input_and_batched_tensors_only():
    x = np.random.default_rng(0).standard_normal((5, 2, 4, 4), dtype=np.float32)
    chunks = list(stream_intermediates(_graph(), ["X", "Y", "S"], x, batch=3))
    assert [count for count, _ in chunks] == [3, 2] and all(set(values) == {"X", "Y"} for _, values in chunks)
    np.testing.assert_array_equal(np.concatenate([v["X"] for _, v in chunks]), x)
    np.testing.assert_array_equal(run_with_intermediates(_graph(), ["Y"], x)["Y"], np.maximum(x, 0))


def test_a_fixed_batch_graph_runs_padded_and_calibration_statistics_are_numpys():
    x = np.random.default_rng(1).standard_normal((3, 2, 4, 4), dtype=np.float32)
    counts = [count for count, _ in stream_intermediates(_graph(1), ["Y"], x, batch=8)]
    assert counts == [1, 1, 1]
    stats = collect_stats(_graph(1), x)
    y = np.maximum(x, 0).reshape(3, -1)
    np.testing.assert_array_equal(stats.sample_min["Y"], y.min(axis=1))
    np.testing.assert_array_equal(stats.sample_max["X"], x.reshape(3, -1).max(axis=1))
    assert "S" not in stats.sample_min
