import numpy as np
import pytest

from deploykit import DeployKitError
from deploykit.export.onnx import torch_to_onnx
from deploykit.runtime import OrtRunner, TorchRunner
from deploykit.recipes.ref import build_model


@pytest.fixture(scope="module")
def model_and_onnx():
    model = build_model("cifar_resnet20")
    return model, torch_to_onnx(model, (2, 3, 32, 32)).SerializeToString()


def test_torch_and_ort_runners_give_the_same_logits(model_and_onnx):
    model, serialized = model_and_onnx
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    with TorchRunner(model, (3, 32, 32)) as torch_runner, OrtRunner(serialized) as ort_runner:
        np.testing.assert_allclose(torch_runner.infer(x), ort_runner.infer(x), atol=1e-5)


def test_inputs_are_validated(model_and_onnx):
    model, serialized = model_and_onnx
    with OrtRunner(serialized) as runner:
        with pytest.raises(DeployKitError, match="expects input of shape 2x3x32x32, got 1x3x32x32"):
            runner.infer(np.zeros((1, 3, 32, 32), np.float32))
        with pytest.raises(DeployKitError, match="expects float32 input"):
            runner.infer(np.zeros((2, 3, 32, 32), np.float64))
    with TorchRunner(model, (3, 32, 32)) as runner:
        with pytest.raises(DeployKitError, match="expects input of shape Nx3x32x32"):
            runner.infer(np.zeros((1, 3, 16, 16), np.float32))


def test_runner_must_be_loaded(model_and_onnx):
    with pytest.raises(RuntimeError, match="before load"):
        OrtRunner(model_and_onnx[1]).infer(np.zeros((2, 3, 32, 32), np.float32))


def test_unavailable_provider_is_a_clear_error(model_and_onnx):
    with pytest.raises(DeployKitError, match="onnxruntime has no CUDAExecutionProvider here.*onnxruntime-gpu"):
        OrtRunner(model_and_onnx[1], providers=["CUDAExecutionProvider"]).load()


def test_openvino_runs_the_same_onnx(model_and_onnx, tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is an optional extra: pip install 'deploykit[openvino]'")
    from deploykit.runtime.openvino_runner import OpenVinoRunner

    path = tmp_path / "model.onnx"
    path.write_bytes(model_and_onnx[1])
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    with OrtRunner(path) as ort_runner, OpenVinoRunner(path) as openvino_runner:
        assert openvino_runner.input_metadata().shape == (2, 3, 32, 32)
        np.testing.assert_allclose(openvino_runner.infer(x), ort_runner.infer(x), atol=1e-4)


def test_openvino_refuses_a_missing_file(tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is an optional extra: pip install 'deploykit[openvino]'")
    from deploykit.runtime.openvino_runner import OpenVinoRunner

    with pytest.raises(DeployKitError, match="does not exist"):
        OpenVinoRunner(tmp_path / "nope.onnx").load()
