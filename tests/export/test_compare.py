"""`deploykit compare` and the per-layer report, on real exports and a deliberately perturbed one."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from deploykit.cli import cli
from deploykit.compress.configs import QuantizeConfig
from deploykit.export.onnx import load_onnx
from deploykit.parity import first_divergent, parity_inputs, per_layer_diffs
from deploykit.recipes.export import export
from deploykit.recipes.configs import ExportConfig
from deploykit.data import Preprocess
from deploykit.models import get_spec
from deploykit.recipes.ref import build_model


@pytest.fixture(scope="module")
def resnet18_export(tmp_path_factory):
    return export(ExportConfig("resnet18", time_runtimes=False, out=tmp_path_factory.mktemp("export"), input_size=64))


def perturb_conv_writing(proto: onnx.ModelProto, tensor: str, factor: float = 1.5) -> None:
    """Scale the weights of the Conv node that writes ``tensor``."""
    node = next(n for n in proto.graph.node if tensor in n.output)
    assert node.op_type == "Conv"
    weight = next(i for i in proto.graph.initializer if i.name == node.input[1])
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * factor, weight.name))


def test_model_matches_its_own_export(resnet18_export, tmp_path):
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["compare", "resnet18", str(resnet18_export.folder), "--json", str(report_path)])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output
    report = json.loads(report_path.read_text())
    assert report["parity"]["passed"] and report["parity"]["samples"] == 12


def test_different_models_fail_with_exit_1(resnet18_export):
    result = CliRunner().invoke(cli, ["compare", str(resnet18_export.onnx_path), "resnet34", "--no-images"])
    assert result.exit_code == 1 and "FAIL" in result.output


@pytest.mark.parametrize("layer", ["layer2.0.bn1", "layer3.1.bn2", "bn1"])
def test_per_layer_names_the_perturbed_layer(resnet18_export, layer):
    proto = load_onnx(resnet18_export.onnx_path)
    perturb_conv_writing(proto, layer)
    inputs = parity_inputs(Preprocess.for_model(get_spec("resnet18"), 64), image_dir=None)
    diffs = per_layer_diffs(build_model("resnet18"), proto, inputs)
    culprit = first_divergent(diffs, 1e-3)
    assert culprit is not None and culprit.name == layer
    before = [d for d in diffs[: diffs.index(culprit)]]
    assert before and all(d.rel_error < 1e-5 for d in before) or layer == "bn1"


def test_per_layer_cli_on_a_perturbed_file(resnet18_export, tmp_path):
    proto = load_onnx(resnet18_export.onnx_path)
    perturb_conv_writing(proto, "layer2.1.bn1", factor=1.2)
    perturbed = tmp_path / "perturbed.onnx"
    onnx.save(proto, str(perturbed))
    result = CliRunner().invoke(cli, ["compare", "resnet18", str(perturbed), "--input-size", "64", "--per-layer", "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 1
    assert "first divergent layer: layer2.1.bn1 (BatchNorm2d)" in " ".join(result.output.split())
    assert json.loads((tmp_path / "r.json").read_text())["first_divergent"] == "layer2.1.bn1"


def test_per_layer_on_an_unperturbed_export_finds_nothing(resnet18_export):
    inputs = parity_inputs(Preprocess.for_model(get_spec("resnet18"), 64), random_count=2)
    diffs = per_layer_diffs(build_model("resnet18"), load_onnx(resnet18_export.onnx_path), inputs)
    assert len(diffs) > 20 and first_divergent(diffs, 1e-4) is None
    assert np.isfinite([d.rel_error for d in diffs]).all()


def test_per_layer_needs_an_onnx_side(resnet18_export):
    """Layers are paired with ONNX tensors: PyTorch vs ONNX, or ONNX vs ONNX; two PyTorch sides have none."""
    result = CliRunner().invoke(cli, ["compare", "resnet18", "resnet18", "--per-layer", "--input-size", "64"])
    assert result.exit_code == 2 and "give at least one .onnx file or export folder" in " ".join(result.output.split())


def test_per_layer_names_the_most_clipped_int8_quantizers(tmp_path):
    """An INT8 file calibrated on a tenth of the value range clips; `compare --per-layer` lists its worst quantizers."""
    spec = get_spec("cifar_resnet20")
    preprocess = Preprocess.for_model(spec, 32)
    np.save(tmp_path / "squeezed.npy", parity_inputs(preprocess, random_count=16) * 0.1)
    export(ExportConfig("cifar_resnet20", time_runtimes=False, out=tmp_path, quantize=QuantizeConfig(calib=tmp_path / "squeezed.npy", calib_size=16)))
    folder = tmp_path / "cifar_resnet20"
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["compare", str(folder / "model.onnx"), str(folder / "model.int8.onnx"), "--per-layer", "--json", str(report_path)])
    assert "Traceback" not in result.output and "most clipped INT8 quantizers" in result.output
    saturation = json.loads(report_path.read_text())["saturation"]
    assert any(s["tensor"] == "input" and s["clipped"] > 0.3 for s in saturation)
    assert saturation == sorted(saturation, key=lambda s: -s["clipped"])
