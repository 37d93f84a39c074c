"""INT8 export: Q/DQ graphs that agree with FP32 on held-out real images, calibration cache, fallback."""

import json
import re
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from click.testing import CliRunner

from deploykit import DeployKitError
from deploykit.cli import cli
from deploykit.compress.configs import QuantizeConfig
from deploykit.data import DEFAULT_CALIBRATION_DIR, find_images
from deploykit.recipes.export import export
from deploykit.recipes.configs import ExportConfig

SIZE = 64
# Tests that use the digits-trained models share one xdist worker, so each model is trained once.
pytestmark = pytest.mark.xdist_group("digits")


def int8_export(name, out, **quantize):
    quantize.setdefault("calib_size", 16)
    return export(ExportConfig(name, time_runtimes=False, out=out, input_size=SIZE, quantize=QuantizeConfig(**quantize)))


def trained_int8_export(trained, out, **quantize):
    quantize = {"calib": trained.calib, "holdout": trained.holdout, **quantize}
    return export(
        ExportConfig(
            trained.name, out=out, weights=str(trained.weights), input_size=trained.size, dynamic_batch=True, model_kwargs=trained.model_kwargs, quantize=QuantizeConfig(**quantize)
        )
    )


@pytest.mark.parametrize("name", ["cifar_resnet20", "googlenet"])  # residual, inception
def test_trained_model_keeps_its_accuracy_in_int8(name, train_on_digits, tmp_path):
    from deploykit.runtime import OrtRunner

    trained = train_on_digits(name)
    assert trained.fp32_accuracy > 0.4, "the model must have learnt something for agreement to mean anything"
    result = trained_int8_export(trained, tmp_path)
    int8 = result.int8
    # GoogLeNet flips 4 of 256 images whose FP32 logits nearly tie (cosine 0.99996): every confident one must agree
    assert int8.check.top1_agreement >= 0.98 and int8.check.confident_agreement == 1.0 and int8.check.samples >= 200
    assert int8.check.mean_cosine >= 0.99 and int8.gate_applied and int8.biases_corrected > 10
    path = result.folder / "model.int8.onnx"
    graph = onnx.load(str(path)).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in graph.node} and int8.qdq_nodes > 20
    with OrtRunner(path) as runner:
        int8_accuracy = float((runner.infer(trained.test_images).argmax(1) == trained.test_labels).mean())
    assert int8_accuracy >= trained.fp32_accuracy - 0.01
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.onnx", "model.int8.onnx"}
    assert manifest["int8"]["settings"]["per_channel"] is True
    timed = {(c["runtime"], c["precision"]): c for c in manifest["runtimes"]["combinations"]}
    assert timed[("ort", "int8")]["file"] == "model.int8.onnx" and timed[("ort", "int8")]["p50_ms"] > 0


def test_depthwise_convolutions_are_quantized(train_on_digits, tmp_path):
    """Structure only: a MobileNet trained for seconds has near-tied logits, so agreement is not judged here."""
    result = trained_int8_export(train_on_digits("mobilenet_v1"), tmp_path, min_cosine=-1.0, min_top5=0.0)
    graph = onnx.load(str(result.folder / "model.int8.onnx")).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    depthwise = [n for n in graph.node if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)]
    assert depthwise and all(n.input[0] in dequantized and n.input[1] in dequantized for n in depthwise)


def test_calibration_cache_is_reused_and_invalidated(tmp_path):
    assert int8_export("cifar_resnet20", tmp_path).int8.calibration["cache"] == "computed"
    assert int8_export("cifar_resnet20", tmp_path).int8.calibration["cache"] == "reused"
    assert int8_export("cifar_resnet20", tmp_path, method="percentile").int8.calibration["cache"] == "computed"
    assert int8_export("cifar_resnet20", tmp_path, calib_size=12).int8.calibration["cache"] == "computed"
    assert len(list((tmp_path / "cifar_resnet20" / "calib-cache").glob("*.json"))) == 5  # auto: 2 range files per key


def test_trt_layout_is_symmetric_and_the_old_target_option_still_asks_for_it(tmp_path):
    """`--target trt` (export's name for the layout before --int8-layout) still works for one release, with a warning."""
    result = CliRunner().invoke(cli, ["export", "cifar_resnet20", "--int8", "--target", "trt", "--calib-size", "16", "--input-size", str(SIZE), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "export --target is now --int8-layout" in result.output
    folder = tmp_path / "cifar_resnet20"
    graph = onnx.load(str(folder / "model.int8.onnx")).graph
    zero_points = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer if i.name.endswith("zero_point")}
    assert zero_points and all(z.dtype in (np.int8, np.int32) and not z.any() for z in zero_points.values())
    assert any(z.dtype == np.int8 for z in zero_points.values())
    settings = json.loads((folder / "manifest.json").read_text())["int8"]["settings"]
    assert settings["layout"] == "trt" and settings["activation_symmetric"] is True
    clash = CliRunner().invoke(cli, ["export", "cifar_resnet20", "--int8", "--target", "trt", "--int8-layout", "cpu"])
    assert clash.exit_code == 2 and "--target trt contradicts --int8-layout cpu" in clash.output


def test_exclude_keeps_layers_in_fp32(tmp_path):
    result = int8_export("cifar_resnet20", tmp_path, exclude=("fc", "layer3.*"))
    graph = onnx.load(str(result.folder / "model.int8.onnx")).graph
    fc = next(n for n in graph.node if n.op_type == "Gemm")
    weight_producers = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    assert fc.input[1] not in weight_producers
    assert len(result.int8.excluded) > 3


def test_fallback_keeps_sensitive_layers_and_says_which(trained_digits, tmp_path):
    """The image's quantizer given a range a hundred times too narrow (the graph input, read by the stem conv alone) clips
    every pixel: PTQ alone fails the gate; the fallback keeps the stem conv in FP32 (so its input is not quantized),
    passes, and names it."""
    from deploykit.compress.int8_check import Int8GateError
    from deploykit.compress.int8_data import load_quantization_data
    from deploykit.compress.quantize import quantize_int8
    from deploykit.data import Preprocess
    from deploykit.models import get_spec
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = export(ExportConfig(trained_digits.name, time_runtimes=False, out=tmp_path, weights=str(trained_digits.weights), input_size=trained_digits.size))
    config = QuantizeConfig(calib=trained_digits.calib, holdout=trained_digits.holdout)
    data = load_quantization_data(config, Preprocess.for_model(get_spec(trained_digits.name), trained_digits.size), 10)
    clipped = {"input": (-0.01, 0.01)}
    with pytest.raises(Int8GateError, match=r"even with 0 layer\(s\) kept in FP32"):
        quantize_int8(fp32.onnx_path, tmp_path / "ptq.onnx", data, replace(config, max_fallback_layers=0), tmp_path / "cache", fixed_ranges=clipped)
    result = quantize_int8(fp32.onnx_path, tmp_path / "int8.onnx", data, config, tmp_path / "cache", fixed_ranges=clipped)
    assert result.check.passed and [k.node for k in result.kept_fp32][:1] == ["bn1/Conv"]
    assert all(k.output_gain > 0 for k in result.kept_fp32)
    kept = result.as_dict()["kept_fp32_by_fallback"]
    assert [k["node"] for k in kept] == [k.node for k in result.kept_fp32] and kept[0]["output"] == "relu"  # the stem conv, its ReLU fused by the pre-processing
    # the file ships the edit the ranking measured: the kept conv reads the image itself and the FP32 graph's own weights
    quant_pre_process(str(fp32.onnx_path), str(tmp_path / "pre.onnx"))
    float_stem, stem = (next(n for n in onnx.load(str(path)).graph.node if n.name == "bn1/Conv") for path in (tmp_path / "pre.onnx", result.path))
    assert stem.input[0] == float_stem.input[0] == "input"
    assert np.array_equal(_initializer(result.path, stem.input[1]), _initializer(tmp_path / "pre.onnx", float_stem.input[1]))


def _initializer(path, name):
    return next(numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer if i.name == name)


def test_sensitivity_blames_the_layer_whose_input_range_is_wrong(trained_digits, tmp_path):
    """With calibration at a tenth of the range, the input Q/DQ clips: the first conv adds the most error."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from deploykit.compress.fallback import candidates, layer_sensitivity
    from deploykit.compress.configs import Int8Settings
    from deploykit.compress.qdq_build import QdqBuild

    squeezed = tmp_path / "squeezed.npy"
    np.save(squeezed, np.load(trained_digits.calib) * 0.5)
    result = export(
        ExportConfig(
            trained_digits.name,
            time_runtimes=False,
            out=tmp_path,
            weights=str(trained_digits.weights),
            input_size=16,
            dynamic_batch=True,
            quantize=QuantizeConfig(calib=squeezed, holdout=trained_digits.holdout, min_cosine=-1.0, min_top5=0.0, min_confident_agreement=0.0),
        )
    )
    quant_pre_process(str(result.onnx_path), str(tmp_path / "pre.onnx"))
    pre = onnx.load(str(tmp_path / "pre.onnx"))
    built = QdqBuild(onnx.load(str(result.folder / "model.int8.onnx")), pre, Int8Settings.for_config(QuantizeConfig()), ())
    ranked = layer_sensitivity(built.shipped, candidates(built.quantized, pre, []), pre, trained_digits.test_images[:16])
    assert ranked[0].node == "bn1/Conv" and ranked[0].output_gain > 0.3


@pytest.mark.parametrize(
    "setup, message",
    [
        ("empty", "no images"),
        ("text_only", "no images"),
        ("too_few", "only 3 calibration samples"),
        ("wrong_shape", "has shape [10, 3, 16, 16], but the model takes [N, 3, 64, 64]"),
        ("missing", "does not exist"),
    ],
)
def test_bad_calibration_data_fails_before_writing(setup, message, tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    if setup == "text_only":
        (calib / "a.txt").write_text("hello")
    elif setup == "too_few":
        for path in find_images(DEFAULT_CALIBRATION_DIR)[:3]:
            (calib / path.name).write_bytes(path.read_bytes())
    elif setup == "wrong_shape":
        calib = tmp_path / "arrays.npy"
        np.save(calib, np.zeros((10, 3, 16, 16), np.float32))
    elif setup == "missing":
        calib = tmp_path / "nope"
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", "resnet18", "--int8", "--calib", str(calib), "--input-size", str(SIZE), str(SIZE), "--out", str(out)])
    assert result.exit_code == 2 and message in " ".join(result.output.split())
    assert not out.exists() or not any(out.rglob("*.onnx"))


def test_unknown_exclude_pattern_names_real_layers(tmp_path):
    with pytest.raises(DeployKitError, match="matches no layer; layers are named like: .*layer1"):
        int8_export("cifar_resnet20", tmp_path, exclude=("no_such_layer",))
    assert not (tmp_path / "cifar_resnet20" / "model.int8.onnx").exists()


def test_cli_prints_int8_summary(tmp_path):
    result = CliRunner().invoke(cli, ["export", "cifar_resnet20", "--int8", "--calib-size", "16", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "model.int8.onnx" in text and "Q/DQ nodes" in text and "INT8 vs FP32" in text
    assert re.search(r"INT8 vs FP32, batch 1, each on the same runtime: onnxruntime [\d.]+ -> [\d.]+ ms \([\d.]+x\)", text)
    assert re.search(r"timed, batch 1, p50 of 7 interleaved rounds: onnxruntime FP32 [\d.]+ ms \[rounds [\d.]+-[\d.]+\]", text)
    chosen = re.search(
        r"(fastest here|chosen), of (\d) timed: (tie within noise of [^;]+; chose )?(onnxruntime|OpenVINO) "
        r"(FP32|INT8) \((model\.onnx|model\.int8\.onnx)",
        text,
    )
    assert chosen and int(chosen.group(2)) >= 2 and (chosen.group(5) == "INT8") == (chosen.group(6) == "model.int8.onnx")
    assert (chosen.group(1) == "chosen") == bool(chosen.group(3)), text
