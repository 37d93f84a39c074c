"""--int8-layout openvino places Q/DQ where NNCF does for OpenVINO's CPU plugin (its placement, recorded as data), and
is accurate where it runs: on OpenVINO."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from deploykit.compress.configs import QuantizeConfig
from deploykit.compress.openvino_placement import first_layer_weights
from deploykit.compress.qdq import placement
from deploykit.recipes.configs import ExportConfig
from deploykit.recipes.export import export
from tests.cli import run_cli

REFERENCE = json.loads((Path(__file__).with_name("data") / "openvino_placement_reference.json").read_text())


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", "efficientnet_lite0"])
def test_openvino_layout_places_qdq_as_nncf_does(name, tmp_path):
    """Structure and integer types (random weights, the reference's input size and calibration images): the same
    quantized inputs, op by op, each with NNCF's type (uint8 where calibration saw no negative value, else int8).
    Where NNCF gives a depthwise input per-channel scales, deploykit keeps one (openvino_placement.py says why)."""
    # rounding changes the weights' integers, never where Q/DQ stand: nearest spares GPTQ's cost on ResNet's wide layers
    config = QuantizeConfig(layout="openvino", calib_size=REFERENCE["calibration_images"], rounding="nearest")
    result = export(ExportConfig(name, out=tmp_path, input_size=REFERENCE["input_size"], quantize=config, time_runtimes=False))
    proto = onnx.load(str(result.int8_path))
    reference = Counter(entry.replace("per-channel", "per-tensor") for entry in REFERENCE["placement"][name])
    ours = Counter(placement(proto, types=True))
    assert ours == reference, f"only deploykit: {dict(ours - reference)}; only NNCF: {dict(reference - ours)}"
    initializers = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    zero_points = [initializers[n.input[2]] for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert not any(zero.any() for zero in zero_points), "activations are symmetric: every zero point is 0"
    weights = {n.input[0]: initializers[n.input[0]] for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in initializers}
    first = [
        w
        for w in weights
        if w.removesuffix("_quantized") in first_layer_weights(proto) or any(w.startswith(f.removesuffix("_float")) for f in first_layer_weights(onnx.load(str(result.onnx_path))))
    ]
    assert first and all(np.abs(weights[w]).max() <= 64 for w in first), "7-bit first layer (NNCF's overflow fix)"
    assert max(np.abs(w).max() for name, w in weights.items() if name not in first) > 64, "8-bit weights elsewhere"


def test_qat_with_the_openvino_layout_is_refused_before_anything_runs(tmp_path):
    result, text = run_cli("export", "cifar_resnet20", "--int8", "--int8-layout", "openvino", "--qat", "--out", tmp_path)
    assert result.exit_code == 2 and text.startswith("Error: --qat does not simulate the openvino layout yet")
    assert not (tmp_path / "cifar_resnet20").exists()
