"""Every registered architecture exports to ONNX and matches PyTorch under ONNX Runtime."""

import json

import numpy as np
import onnx
import pytest

from deploykit.io import sha256_file
from deploykit.models import get_spec, list_models
from deploykit.recipes.export import export
from deploykit.recipes.configs import ExportConfig

# One model per family runs at its full input size; the rest at a small valid resolution.
FULL_SIZE = {
    "alexnet",
    "vgg11",
    "googlenet",
    "resnet50",
    "preact_resnet18",
    "cifar_resnet20",
    "resnext50_32x4d",
    "se_resnet50",
    "densenet121",
    "mobilenet_v2",
    "squeezenet1_1",
    "efficientnet_b0",
}


def export_size(name: str) -> int:
    spec = get_spec(name)
    return spec.input_size if name in FULL_SIZE else max(spec.min_input_size, 32)


def test_every_family_has_a_full_size_export():
    assert {get_spec(n).family for n in FULL_SIZE} == {get_spec(n).family for n in list_models()}


@pytest.mark.parametrize("name", list_models())
def test_export_matches_pytorch(name, tmp_path):
    size = export_size(name)
    result = export(ExportConfig(name, out=tmp_path, input_size=size, time_runtimes=False))
    assert result.parity.passed, result.parity.summary()
    assert result.parity.top1_agreement == 1.0 and result.parity.rel_error <= 1e-4
    manifest = json.loads((tmp_path / name / "manifest.json").read_text())
    assert manifest["files"]["model.onnx"]["sha256"] == sha256_file(result.onnx_path)
    assert manifest["input"]["shape"] == [1, 3, size, size]
    assert manifest["parity"]["model.onnx"]["passed"] is True
    onnx.checker.check_model(str(result.onnx_path))
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["manifest.json", "model.onnx"]


def test_dynamic_batch_gives_same_outputs_at_batch_1_and_4(tmp_path):
    import torch

    from deploykit.runtime import OrtRunner
    from deploykit.recipes.ref import build_model

    result = export(ExportConfig("resnet18", time_runtimes=False, out=tmp_path, input_size=64, dynamic_batch=True))
    assert any("batch 1 vs 4" in note for note in result.notes)
    x = np.random.default_rng(1).standard_normal((4, 3, 64, 64), dtype=np.float32)
    with OrtRunner(result.onnx_path) as runner:
        assert runner.input_metadata().shape[0] is None
        batched = runner.infer(x)
        single = np.concatenate([runner.infer(x[i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    with torch.no_grad():
        expected = build_model("resnet18")(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(batched, expected, atol=1e-4 * np.ptp(expected))


def test_fixed_batch_export_has_that_batch(tmp_path):
    result = export(ExportConfig("cifar_resnet20", time_runtimes=False, out=tmp_path, batch=3))
    dims = onnx.load(str(result.onnx_path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [3, 3, 32, 32]
    assert result.parity.passed


def test_tensors_are_named_after_modules(tmp_path):
    result = export(ExportConfig("resnet18", time_runtimes=False, out=tmp_path, input_size=64))
    names = {out for node in onnx.load(str(result.onnx_path)).graph.node for out in node.output}
    assert {"layer1.0.bn1", "layer2.0.downsample", "layer4", "logits"} <= names
