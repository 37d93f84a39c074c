"""INT8 on real ImageNet networks, judged as top-1 on real labelled photos: the 500 of ../shared/imagenet-sample and the
20 ImageNet validation photos in foolbox's wheel. Cosine on held-out crops is a diagnostic here, never the verdict."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from deploykit.compress.int8_check import compare_int8
from deploykit.compress.configs import QuantizeConfig
from deploykit.data import DEFAULT_HOLDOUT_DIR, Preprocess, load_labelled_folder
from deploykit.data.calibration import load_samples
from deploykit.models import get_spec
from deploykit.parity import run_all
from deploykit.runtime import OrtRunner
from tests.cli import run_cli

CHECKPOINT = "mobilenet_v2-b0353104.pth"
LITE0 = "efficientnet-lite0-57934424.pth"
pytestmark = pytest.mark.xdist_group("real-mobilenet")


@pytest.fixture(scope="session")
def labelled(imagenet_sample, foolbox_photos):
    """name -> (images, labels) of both labelled sets, preprocessed for the model (cached per model name)."""
    cache = {}

    def load(model: str, folder: Path) -> tuple[np.ndarray, np.ndarray]:
        if (model, folder) not in cache:
            images, labels, mapping = load_labelled_folder(folder, Preprocess.for_model(get_spec(model)), 1000)
            assert mapping.rule in ("synsets", "integers")
            cache[model, folder] = images, labels
        return cache[model, folder]

    return load


def logits(path, images) -> np.ndarray:
    with OrtRunner(path) as runner:
        return run_all(runner, images)


def top1_and_agreement(folder: Path, int8_name: str, images: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """(FP32 top-1, INT8 top-1, INT8's agreement with FP32's top-1) in percent."""
    fp32, int8 = logits(folder / "model.onnx", images).argmax(1), logits(folder / int8_name, images).argmax(1)
    return 100 * np.mean(fp32 == labels), 100 * np.mean(int8 == labels), 100 * np.mean(fp32 == int8)


def with_clipped_logits(path: Path, out: Path, scale: float = 0.0747, zero_point: int = 94) -> Path:
    """The first-round default's flaw put back: a uint8 Q/DQ on the logits (scale and zero point as it had them, so logits
    are clipped to [-7.0, 12.0])."""
    model = onnx.load(str(path))
    logits_name = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [f"{logits_name}_float" if name == logits_name else name for name in node.output]
    model.graph.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), "logits_scale"), numpy_helper.from_array(np.array(zero_point, np.uint8), "logits_zero_point")])
    model.graph.node.extend(
        [
            helper.make_node("QuantizeLinear", [f"{logits_name}_float", "logits_scale", "logits_zero_point"], ["logits_q"]),
            helper.make_node("DequantizeLinear", ["logits_q", "logits_scale", "logits_zero_point"], [logits_name]),
        ]
    )
    onnx.save(model, str(out))
    return out


def test_default_int8_keeps_top1_on_500_labelled_photos(real_int8, labelled, imagenet_sample):
    folder, _, text = real_int8
    fp32, int8, agreement = top1_and_agreement(folder, "model.int8.onnx", *labelled("mobilenet_v2", imagenet_sample))
    assert fp32 > 80 and fp32 - int8 <= 1.0, (fp32, int8)
    assert agreement >= 95.0  # NNCF's defaults on the same FP32 file and photos: 96.2% (benchmarks/results/int8.md)
    manifest = json.loads((folder / "manifest.json").read_text())["int8"]
    assert manifest["check_vs_fp32"]["passed"] and manifest["kept_fp32_by_fallback"] == [] and manifest["biases_corrected"] == 52
    assert "INT8 vs FP32: PASS" in text and "confident on" in text


def test_default_int8_on_foolbox_validation_photos(real_int8, labelled, foolbox_photos):
    folder, _, _ = real_int8
    images, labels = labelled("mobilenet_v2", foolbox_photos)
    fp32, int8, _ = top1_and_agreement(folder, "model.int8.onnx", images, labels)
    assert len(labels) == 20 and fp32 >= 80 and int8 >= fp32 - 5  # at most one photo of the 20 lost


def test_bench_measures_agreement_on_the_photos_export_judged_and_says_so(real_int8, tmp_path):
    """One held-out set, one figure: bench's FP32 agreement of the INT8 file on onnxruntime is export's gate figure,
    on the same 48 bundled held-out photos, and its row names them (it measured 32 of them before)."""
    folder, _, _ = real_int8
    check = json.loads((folder / "manifest.json").read_text())["int8"]["check_vs_fp32"]
    result, _ = run_cli("bench", folder, "--engine", "ort", "--precision", "int8", "--runs", 2, "--warmup", 1, "--json", tmp_path / "b.json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "b.json").read_text())["results"]
    assert row["measured_on"] == f"{check['samples']} images of the bundled held-out photos" and check["samples"] == 48
    assert abs(row["agreement_top1"] - check["top1_agreement"]) < 1e-9, (row["agreement_top1"], check)


def test_compare_per_layer_on_the_int8_twin_is_diagnosis_on_the_gates_photos(real_int8, tmp_path):
    """compare --per-layer on an INT8 twin that passed its gate: no "first divergent layer" by FP32's 0.001 (it named
    features.1 at 0.252), and the clipping is measured on the held-out photos the manifest's figures came from (it
    said 3.087% for the input quantizer on the 12 parity inputs, random tensors among them, against the manifest's
    0.274%)."""
    folder, _, _ = real_int8
    manifest = json.loads((folder / "manifest.json").read_text())["int8"]["saturation_holdout"]["most_clipped"]
    result, text = run_cli("compare", folder / "model.onnx", folder / "model.int8.onnx", "--per-layer", "--json", tmp_path / "c.json")
    assert result.exit_code == 0, result.output
    assert "first divergent layer" not in text and "not judged layer by layer" in text
    assert "on the 48 held-out images the export's gate used" in text
    clipped = {s["tensor"]: s["clipped"] for s in json.loads((tmp_path / "c.json").read_text())["saturation"]}
    assert all(abs(clipped[entry["tensor"]] - entry["clipped"]) < 1e-5 for entry in manifest[:3]), (clipped, manifest[:3])


def test_graph_output_stays_float_and_saturation_is_recorded(real_int8):
    folder, _, _ = real_int8
    graph = onnx.load(str(folder / "model.int8.onnx")).graph
    producers = {out: node for node in graph.node for out in node.output}
    assert producers[graph.output[0].name].op_type == "Gemm"
    saturation = json.loads((folder / "manifest.json").read_text())["int8"]["saturation_holdout"]
    assert saturation["most_clipped"] and all(0 < s["clipped"] < 0.05 for s in saturation["most_clipped"])
    assert [s["tensor"] for s in saturation["classifier_input"]] == ["view"]  # the Gemm's input, at its global extremes


def test_clipped_logits_fail_the_default_gate(real_int8, labelled, imagenet_sample, tmp_path):
    """The file that halved top-1 while every check said PASS: the default gate, without labels, now refuses it."""
    folder, _, _ = real_int8
    clipped = with_clipped_logits(folder / "model.int8.onnx", tmp_path / "clipped.onnx")
    images, labels = labelled("mobilenet_v2", imagenet_sample)
    fp32 = 100 * np.mean(logits(folder / "model.onnx", images).argmax(1) == labels)
    assert 100 * np.mean(logits(clipped, images).argmax(1) == labels) < fp32 - 20  # the collapse is real on labelled photos
    holdout = load_samples(DEFAULT_HOLDOUT_DIR, Preprocess.for_model(get_spec("mobilenet_v2")), 256)
    reference = logits(folder / "model.onnx", holdout)
    good = compare_int8(reference, logits(folder / "model.int8.onnx", holdout), QuantizeConfig())
    bad = compare_int8(reference, logits(clipped, holdout), QuantizeConfig())
    assert good.passed, good.failures
    assert not bad.passed and any("confident images" in failure for failure in bad.failures), bad.failures
    assert bad.confident_images >= 20 and bad.confident_agreement < 0.6


def test_trt_target_is_written_by_default_and_keeps_top1(real_checkpoint, labelled, imagenet_sample, tmp_path):
    result, text = run_cli("export", "mobilenet", "--weights", real_checkpoint(CHECKPOINT), "--int8", "--int8-layout", "trt", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "mobilenet_v2"
    fp32, int8, _ = top1_and_agreement(folder, "model.int8.onnx", *labelled("mobilenet_v2", imagenet_sample))
    assert fp32 - int8 <= 1.5, (fp32, int8)
    graph = onnx.load(str(folder / "model.int8.onnx")).graph
    assert {n.op_type for n in graph.node if graph.output[0].name in n.output} == {"Gemm"}


def test_val_maps_synset_folders_and_the_openvino_layout_is_judged_on_openvino(real_int8, imagenet_sample, tmp_path):
    """`--val ../shared/imagenet-sample` reads the synset folders as `eval` does, so the gate is the real top-1 drop; with
    `--int8-layout openvino` the gate runs the file on OpenVINO, where it is deployed, and it loses at most 1 point."""
    _, weights, _ = real_int8
    result, text = run_cli("export", "mobilenet", "--weights", weights, "--int8", "--int8-layout", "openvino", "--val", imagenet_sample, "--no-timing", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    check = json.loads((tmp_path / "mobilenet_v2" / "manifest.json").read_text())["int8"]["check_vs_fp32"]
    assert check["val_images"] == 500 and check["fp32_top1"] > 0.8 and check["drop_points"] <= 1.0 and check["passed"]
    assert "on 500 labelled images, classes by ImageNet synset (folder n01440764 is class 0): top-1 FP32 8" in text
    runtime = "OpenVINO" if importlib.util.find_spec("openvino") else "onnxruntime"
    assert check["runtime"] == runtime and ("(INT8 run on OpenVINO)" in text) == (runtime == "OpenVINO")


def test_int8_of_real_lite0_keeps_top1(real_checkpoint, labelled, imagenet_sample, tmp_path):
    result, _ = run_cli("export", "efficientnet_lite0", "--weights", real_checkpoint(LITE0), "--int8", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    fp32, int8, agreement = top1_and_agreement(tmp_path / "efficientnet_lite0", "model.int8.onnx", *labelled("efficientnet_lite0", imagenet_sample))
    assert fp32 > 85 and fp32 - int8 <= 1.0 and agreement >= 95.0, (fp32, int8, agreement)


def test_squeezed_calibration_fails_and_keeps_the_fp32_export(real_int8, tmp_path):
    _, weights, _ = real_int8
    samples = load_samples(DEFAULT_HOLDOUT_DIR.parent / "calibration", Preprocess.for_model(get_spec("mobilenet_v2")), 64)
    np.save(tmp_path / "squeezed.npy", samples * 0.1)
    result, text = run_cli("export", "mobilenet_v2", "--weights", weights, "--int8", "--calib", tmp_path / "squeezed.npy", "--out", tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "fails the accuracy gate" in text and "--calib DIR" in text and "no model.int8.onnx was written" in text
    folder = tmp_path / "mobilenet_v2"
    assert (folder / "model.onnx").is_file() and not (folder / "model.int8.onnx").exists()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"].keys() == {"model.onnx"} and manifest["int8"]["check_vs_fp32"]["passed"] is False


def test_random_weights_are_called_out(tmp_path):
    result, text = run_cli("export", "mobilenet_v2", "--int8", "--input-size", 96, 96, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "random-init weights (no --weights): parity and accuracy figures mean nothing" in text
    manifest = json.loads((tmp_path / "mobilenet_v2" / "manifest.json").read_text())
    assert manifest["model"]["weights"]["random"] is True and manifest["int8"]["gate_applied"] is False
    assert any("accuracy gate not applied (random weights)" in note for note in manifest["int8"]["notes"])


def test_label_free_qat_keeps_top1_on_labelled_photos(real_int8, labelled, imagenet_sample, tmp_path):
    """`export --int8 --qat` on the 70 bundled photos, no labels: top-1 on the 500 labelled photos stays within a point of
    FP32 and of the PTQ file it started from, in the same layout, and its model.onnx is still the original FP32."""
    folder, weights, _ = real_int8
    result, text = run_cli("export", "mobilenet", "--weights", weights, "--int8", "--qat", "--epochs", "2", "--qat-lr", "5e-6", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    qat_folder = tmp_path / "mobilenet_v2"
    images, labels = labelled("mobilenet_v2", imagenet_sample)
    fp32, qat, _ = top1_and_agreement(qat_folder, "model.int8.onnx", images, labels)
    _, ptq, _ = top1_and_agreement(folder, "model.int8.onnx", images, labels)
    assert fp32 - qat <= 1.0 and qat >= ptq - 1.0, (fp32, ptq, qat)
    manifest = json.loads((qat_folder / "manifest.json").read_text())["int8"]
    assert manifest["stage"] == "qat" and not manifest["qat"]["labelled"] and manifest["qat"]["images"] == 70
    assert "QAT: 8 steps on 70 unlabelled images" in text
    assert (qat_folder / "model.onnx").read_bytes() == (folder / "model.onnx").read_bytes()
    assert manifest["qdq_nodes"] == json.loads((folder / "manifest.json").read_text())["int8"]["qdq_nodes"]
