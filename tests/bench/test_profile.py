"""bench --profile: each layer's time and precision, as onnxruntime's profiler and OpenVINO's counters report them;
and a layer kept in FP32 runs in float on onnxruntime (whose WeightBiasQuantization pass quantized such a layer's
weights to per-tensor int8 at load time, behind the file's back)."""

import json

import numpy as np
import pytest

from deploykit.runtime.layer_profile import profile_layers
from tests.cli import invoke

KEPT = "layer3.2.bn2"


@pytest.fixture(scope="module")
def excluded_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("profile")
    result = invoke("export", "cifar_resnet20", "--int8", "--calib-size", 16, "--input-size", 32, "--exclude", KEPT, "--no-timing", "--out", out)
    assert result.exit_code == 0, result.output
    return out / "cifar_resnet20"


@pytest.mark.parametrize("runtime", ["ort", "openvino"])
def test_a_layer_kept_in_fp32_runs_in_float_and_the_rest_in_int8(excluded_export, runtime):
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
    profile = profile_layers(excluded_export / "model.int8.onnx", runtime, x, runs=5)
    kept = [layer for layer in profile.layers if layer.name.startswith(KEPT) and layer.op in ("Conv", "QLinearConv", "Convolution")]
    assert kept and all(layer.precision == "f32" for layer in kept), kept
    convolutions = [layer for layer in profile.layers if "Conv" in layer.op and not layer.name.startswith(KEPT)]
    assert len(convolutions) >= 15 and all(layer.precision == "int8" for layer in convolutions), convolutions
    assert abs(sum(profile.share(layer) for layer in profile.layers) - 1) < 1e-9 and profile.runs == 5


def test_bench_profile_prints_the_slowest_layers_and_what_ran_in_float(excluded_export, tmp_path):
    result = invoke("bench", excluded_export, "--engine", "ort", "--precision", "int8", "--runs", 3, "--profile", "--json", tmp_path / "p.json")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "model.int8.onnx on onnxruntime, batch 1: the slowest 15 of" in text and "time by precision: int8" in text
    assert f"in float, not int8: {KEPT}" in text, result.output
    (profile,) = json.loads((tmp_path / "p.json").read_text())["profiles"]
    assert profile["runtime"] == "ort" and any(l["name"].startswith(KEPT) and l["precision"] == "f32" for l in profile["layers"])
    refused = invoke("bench", excluded_export, "--engine", "torch", "--profile")
    assert refused.exit_code == 2 and "--profile times the layers of an ONNX file on ort or openvino" in refused.output
