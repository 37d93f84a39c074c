"""Label-free QAT: simulation faithful to the onnxruntime file, same Q/DQ layout as PTQ, digits at least as accurate."""

import copy
from dataclasses import replace
import json

import numpy as np
import onnx
import pytest
import torch

from deploykit import DeployKitError
from deploykit.compress.qat import SimulatedQuantization, read_plan
from deploykit.compress.configs import QatConfig
from deploykit.compress.configs import QuantizeConfig
from deploykit.recipes.export import export
from deploykit.recipes.configs import ExportConfig
from deploykit.recipes.ref import build_model
from deploykit.runtime import OrtRunner

pytestmark = pytest.mark.xdist_group("digits")


def _export(trained, out, **extra):
    quantize = QuantizeConfig(calib=trained.calib, holdout=trained.holdout, rounding="nearest")  # what QAT simulates
    return export(
        ExportConfig(
            f"{trained.name}:{trained.weights}", time_runtimes=False, out=out, input_size=trained.size, dynamic_batch=True, model_kwargs=trained.model_kwargs, quantize=quantize, **extra
        )
    )


def _quantized_tensors(path):
    graph = onnx.load(str(path)).graph
    initializers = {init.name for init in graph.initializer}
    return sorted(n.input[0] for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in initializers)


def _cosine(a, b):
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def test_qat_on_the_digits_is_at_least_as_accurate_as_ptq_in_the_same_layout(trained_digits, tmp_path):
    ptq = _export(trained_digits, tmp_path / "ptq")
    qat = _export(trained_digits, tmp_path / "qat", qat=QatConfig(epochs=2, lr=1e-4, batch_size=64), qat_data="digits")
    accuracy = {}
    for label, result in (("ptq", ptq), ("qat", qat)):
        with OrtRunner(result.int8_path) as runner:
            accuracy[label] = float((runner.infer(trained_digits.test_images).argmax(1) == trained_digits.test_labels).mean())
    assert accuracy["qat"] >= accuracy["ptq"] >= trained_digits.fp32_accuracy - 0.02
    # Same onnxruntime layout: the same tensors carry Q/DQ, and the same number of Q/DQ nodes.
    assert _quantized_tensors(qat.int8_path) == _quantized_tensors(ptq.int8_path)
    assert qat.int8.qdq_nodes == ptq.int8.qdq_nodes
    manifest = json.loads((qat.folder / "manifest.json").read_text())["int8"]
    assert manifest["stage"] == "qat" and manifest["qat"]["labelled"] and manifest["qat"]["steps"] > 0
    assert manifest["qat"]["unmapped_tensors"] == [] and manifest["gate_applied"]
    assert manifest["calibration"]["method"] == "fixed (QAT)"
    assert json.loads((ptq.folder / "manifest.json").read_text())["int8"]["stage"] == "ptq"
    # The published FP32 file is the original model's, not the fine-tuned copy's.
    assert (qat.folder / "model.onnx").read_bytes() == (ptq.folder / "model.onnx").read_bytes()


def test_the_simulation_matches_the_onnxruntime_int8_file(trained_digits, tmp_path):
    """Before any training, the PyTorch model with the PTQ file's quantizers attached computes what that file computes."""
    ptq = _export(trained_digits, tmp_path)
    model = build_model(trained_digits.name, str(trained_digits.weights), **trained_digits.model_kwargs).eval()
    images = torch.from_numpy(trained_digits.test_images[:200])
    with torch.no_grad():
        fp32 = model(images).numpy()
    simulated = copy.deepcopy(model)
    attached = SimulatedQuantization(simulated, read_plan(onnx.load(str(ptq.int8_path))), images[:1])
    with torch.no_grad():
        fake = simulated(images).numpy()
    with OrtRunner(ptq.int8_path) as runner:
        real = runner.infer(images.numpy())
    assert attached.unmapped == [] and attached.activation_count > 10 and len(attached.parametrized) > 10
    assert _cosine(real, fake) > 0.9995 and _cosine(real, fake) > _cosine(real, fp32)
    attached.remove()
    with torch.no_grad():  # detached: an FP32 model again (with PTQ's bias-corrected biases, where QAT starts: 0.9997 measured)
        assert _cosine(simulated(images).numpy(), fp32) > 0.999


def test_qat_needs_int8_and_its_images_are_checked_before_any_slow_step(tmp_path):
    with pytest.raises(DeployKitError, match="add --int8"):
        export(ExportConfig("cifar_resnet20", time_runtimes=False, out=tmp_path, input_size=16, qat=QatConfig()))
    with pytest.raises(DeployKitError, match="missing does not exist"):
        export(ExportConfig("cifar_resnet20", time_runtimes=False, out=tmp_path, input_size=16, quantize=QuantizeConfig(calib_size=8), qat=QatConfig(), qat_data=tmp_path / "missing"))
    assert not list(tmp_path.rglob("*.onnx"))


@pytest.mark.parametrize("target", ["cpu", "trt"])
def test_fixed_ranges_give_back_the_ptq_scales(target, trained_digits, tmp_path):
    """The ranges QAT hands back to onnxruntime reproduce each activation's scale and zero point exactly, for the
    asymmetric uint8 (cpu) and the symmetric int8 (trt) layouts alike, so the file is what training simulated."""
    from deploykit.compress.int8_data import load_quantization_data
    from deploykit.compress.quantize import quantize_int8
    from deploykit.data import Preprocess
    from deploykit.models import get_spec

    config = QuantizeConfig(calib=trained_digits.calib, holdout=trained_digits.holdout, layout=target, min_cosine=-1.0, min_top5=0.0, max_fallback_layers=0, bias_correction=False)
    ptq = export(
        ExportConfig(
            f"{trained_digits.name}:{trained_digits.weights}",
            time_runtimes=False,
            out=tmp_path,
            input_size=trained_digits.size,
            model_kwargs=trained_digits.model_kwargs,
            quantize=config,
        )
    )
    plan = read_plan(onnx.load(str(ptq.int8_path)))
    data = load_quantization_data(config, Preprocess.for_model(get_spec(trained_digits.name), trained_digits.size), 10)
    other = replace(data, calibration=data.calibration * 0.5)  # calibrating on these alone gives other ranges
    again, calibrated = tmp_path / "again.onnx", tmp_path / "calibrated.onnx"
    quantize_int8(ptq.onnx_path, again, other, config, tmp_path / "cache", fixed_ranges=plan.ranges())
    quantize_int8(ptq.onnx_path, calibrated, other, config, tmp_path / "cache", enforce_gate=False)
    replan, moved = (read_plan(onnx.load(str(path))) for path in (again, calibrated))
    assert replan.activations.keys() == plan.activations.keys()
    for name, quantizer in plan.activations.items():
        assert replan.activations[name].zero_point == quantizer.zero_point
        assert replan.activations[name].scale == pytest.approx(quantizer.scale, rel=1e-6), name
    assert sum(moved.activations[name].scale != pytest.approx(q.scale, rel=1e-3) for name, q in plan.activations.items()) > 5
