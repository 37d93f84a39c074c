"""FP16 files, ONNX files deploykit did not make, `deploykit eval`, and exports that bench leaves alone."""

import json
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from deploykit.data import class_mapping, imagenet_synsets
from deploykit.data.digits import load_digits
from deploykit.recipes.ref import build_model
from tests.cli import run_cli

pytestmark = pytest.mark.xdist_group("digits-train")


@pytest.fixture(scope="module")
def trained(train_on_digits, tmp_path_factory):
    """A digits-trained cifar_resnet20, its labelled test folder (class subfolders 0..9), and a foreign ONNX copy of it."""
    model = train_on_digits("cifar_resnet20")
    root = tmp_path_factory.mktemp("workflow")
    labelled = root / "labelled"
    _, test = load_digits(size=model.size)
    for index, (image, label) in enumerate(zip(test.images[:200], test.labels[:200])):
        pixels = (np.clip(image.transpose(1, 2, 0) * 0.25 + 0.5, 0, 1) * 255).astype(np.uint8)
        (labelled / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(labelled / str(label) / f"{index}.png")
    # A file deploykit did not make: the legacy TorchScript exporter, another input name, a dynamic batch.
    foreign = root / "foreign.onnx"
    net = build_model("cifar_resnet20", str(model.weights))
    torch.onnx.export(net, (torch.randn(1, 3, model.size, model.size),), str(foreign), dynamo=False, input_names=["pixels"], output_names=["scores"], dynamic_axes={"pixels": {0: "n"}})
    return model, labelled, foreign


def test_fp16_export_writes_a_checked_float16_file(trained, tmp_path):
    model, _, _ = trained
    result, text = run_cli("export", f"cifar_resnet20:{model.weights}", "--fp16", "--dynamic-batch", "--out", tmp_path)
    assert result.exit_code == 0, text
    folder = tmp_path / "cifar_resnet20"
    graph = onnx.load(str(folder / "model.fp16.onnx")).graph
    weights = [i for i in graph.initializer if i.dims and len(i.dims) == 4]
    assert weights and all(i.data_type == onnx.TensorProto.FLOAT16 for i in weights)
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 I/O by default
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["parity"]["model.fp16.onnx"]["passed"] and "model.fp16.onnx" in manifest["files"]
    assert "FP16 vs FP32: PASS" in text


def test_fp16_io_and_bench_fp16_runs_the_fp16_file(trained, tmp_path):
    model, _, _ = trained
    assert run_cli("export", f"cifar_resnet20:{model.weights}", "--fp16-io", "--dynamic-batch", "--out", tmp_path)[0].exit_code == 0
    folder = tmp_path / "cifar_resnet20"
    assert onnx.load(str(folder / "model.fp16.onnx")).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    result, text = run_cli("bench", folder, "--engine", "ort", "--precision", "fp16", "--runs", 3, "--warmup", 1, "--json", tmp_path / "fp16.json")
    assert result.exit_code == 0, text
    row = json.loads((tmp_path / "fp16.json").read_text())["results"][0]
    assert row["precision"] == "fp16" and row["agreement_top1"] > 0.9


def test_bench_compare_and_eval_take_a_foreign_onnx(trained, tmp_path):
    model, labelled, foreign = trained
    result, text = run_cli("bench", foreign, "--engine", "ort", "--runs", 3, "--warmup", 1, "--input-size", model.size, "--json", tmp_path / "b.json")
    assert result.exit_code == 0, text
    row = json.loads((tmp_path / "b.json").read_text())["results"][0]
    assert row["agreement_top1"] is None and row["preprocessing"] == "options"
    result, text = run_cli("compare", f"cifar_resnet20:{model.weights}", foreign, "--input-size", model.size)
    assert result.exit_code == 0 and "PASS" in text, text
    result, text = run_cli(
        "eval", foreign, "--data", labelled, "--input-size", model.size, "--workers", 0, "--mean", 0.5, 0.5, 0.5, "--std", 0.25, 0.25, 0.25, "--json", tmp_path / "e.json"
    )
    assert result.exit_code == 0, text
    evaluation = json.loads((tmp_path / "e.json").read_text())
    assert evaluation["images"] == 200 and evaluation["class_rule"].startswith("classes by folder number")
    assert evaluation["top1"] >= model.fp32_accuracy - 0.1  # digits preprocessing given by hand: about the trained accuracy
    assert any("no manifest: preprocessing from options" in note for note in evaluation["notes"])


def test_eval_streams_every_image_on_each_runner(trained, tmp_path):
    model, labelled, _ = trained
    assert (
        run_cli(
            "export",
            f"cifar_resnet20:{model.weights}",
            "--input-size",
            model.size,
            model.size,
            "--int8",
            "--dynamic-batch",
            "--out",
            tmp_path,
            "--calib",
            model.calib,
            "--holdout",
            model.holdout,
        )[0].exit_code
        == 0
    )
    folder = tmp_path / "cifar_resnet20"
    figures = {}
    for engine, precision in [("torch", "fp32"), ("ort", "fp32"), ("ort", "int8"), ("openvino", "fp32")]:
        result, text = run_cli(
            "eval", folder, "--data", labelled, "--engine", engine, "--precision", precision, "--workers", 2, "--batch-size", 16, "--json", tmp_path / f"{engine}-{precision}.json"
        )
        assert result.exit_code == 0, text
        figures[engine, precision] = json.loads((tmp_path / f"{engine}-{precision}.json").read_text())
        assert figures[engine, precision]["images"] == 200
    assert figures["torch", "fp32"]["top1"] == pytest.approx(figures["ort", "fp32"]["top1"], abs=0.01)
    assert figures["ort", "int8"]["top1"] >= figures["ort", "fp32"]["top1"] - 0.05


def test_onnx_to_onnx_per_layer_pairs_fp32_with_its_int8_and_fp16(trained, tmp_path):
    model, _, _ = trained
    assert (
        run_cli(
            "export",
            f"cifar_resnet20:{model.weights}",
            "--input-size",
            model.size,
            model.size,
            "--int8",
            "--fp16",
            "--out",
            tmp_path,
            "--calib",
            model.calib,
            "--holdout",
            model.holdout,
        )[0].exit_code
        == 0
    )
    folder = tmp_path / "cifar_resnet20"
    for other in ("model.int8.onnx", "model.fp16.onnx"):
        result, text = run_cli(
            "compare",
            folder / "model.onnx",
            folder / other,
            "--per-layer",
            "--layer-tolerance",
            1.0,
            "--rel-error",
            1.0,
            "--min-cosine",
            0.9,
            "--min-top1",
            0.5,
            "--json",
            tmp_path / "l.json",
        )
        assert result.exit_code == 0, text
        layers = json.loads((tmp_path / "l.json").read_text())["layers"]
        assert len(layers) >= 10 and {"Conv"} <= {layer["kind"] for layer in layers}
        assert not any("QuantizeLinear" in layer["name"] or "DequantizeLinear" in layer["name"] for layer in layers)


def test_export_of_a_users_own_module(tmp_path):
    source = tmp_path / "net.py"
    source.write_text(
        "import torch\n\ndef tiny():\n    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),"
        " torch.nn.Flatten(), torch.nn.Linear(8, 5))\n"
    )
    result, text = run_cli("export", "--module", f"{source}:tiny", "--input-size", 32, 32, "--out", tmp_path)
    assert result.exit_code == 0 and "PASS" in text, text
    manifest = json.loads((tmp_path / "net_tiny" / "manifest.json").read_text())
    assert manifest["model"]["family"] == "custom" and manifest["model"]["num_classes"] == 5
    result, text = run_cli("bench", tmp_path / "net_tiny" / "model.onnx", "--engine", "ort", "--runs", 2, "--warmup", 0)
    assert result.exit_code == 0, text
    result, text = run_cli("export", "--module", f"{source}:missing", "--out", tmp_path)
    assert result.exit_code == 2 and "has no function 'missing'" in text


def test_bench_reuses_a_matching_export_and_never_replaces_one(trained, tmp_path):
    model, _, _ = trained
    reference = f"cifar_resnet20:{model.weights}"
    assert run_cli("export", reference, "--dynamic-batch", "--fp16", "--out", tmp_path)[0].exit_code == 0  # the model's own size
    folder = tmp_path / "cifar_resnet20"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()}
    for precision in ("fp32", "fp16"):
        result, text = run_cli("bench", reference, "--engine", "ort", "--precision", precision, "--runs", 2, "--warmup", 0, "--out", tmp_path)
        assert result.exit_code == 0, text
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()} == before  # reused, untouched
    assert not (tmp_path / ".bench-exports").exists()
    # another model's weights: bench exports into its own folder, and the user's export stays as it was
    result, text = run_cli("bench", "cifar_resnet20", "--engine", "ort", "--runs", 2, "--warmup", 0, "--out", tmp_path)
    assert result.exit_code == 0, text
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()} == before
    assert list((tmp_path / ".bench-exports").glob("*/cifar_resnet20/model.onnx"))


def test_class_folders_map_by_synset_integer_or_sorted_name():
    synsets = imagenet_synsets()
    assert len(synsets) == 1000 and synsets[0] == "n01440764" and synsets[999] == "n15075141"
    by_synset = class_mapping(["n01443537", "n01440764"], 1000)
    assert by_synset.rule == "synsets" and by_synset.index == {"n01443537": 1, "n01440764": 0}
    assert class_mapping(["3", "7"], 10).index == {"3": 3, "7": 7}
    named = class_mapping(["cat", "dog"], 10)
    assert named.rule == "sorted" and named.index == {"cat": 0, "dog": 1} and "2 class folders but the model has 10" in named.warning


def in_a_terminal(args: list, cwd, timeout: float = 600) -> tuple[int, str]:
    """Run ``deploykit ARGS`` with a pseudo-terminal as its stdin, stdout and stderr (so its live display is drawn);
    (exit code, everything it wrote)."""
    import os
    import pty
    import select

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "deploykit", *map(str, args)], stdin=follower, stdout=follower, stderr=follower, cwd=cwd, env={**os.environ, "COLUMNS": "160", "TERM": "xterm"}
    )
    os.close(follower)
    output, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([leader], [], [], 1.0)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closes when the process ends
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=60), output.decode(errors="replace")


def test_long_steps_report_stages_inside_one_display(tmp_path):
    """On a terminal, the stages of library code (export, calibration, quantization) are drawn by the command's one
    live display, and result lines print above it as each stage ends (rich allows one live display at a time)."""
    code, shown = in_a_terminal(["export", "cifar_resnet20", "--int8", "--calib-method", "percentile", "--calib-size", 16, "--out", tmp_path], cwd=tmp_path)
    assert code == 0, shown[-2000:]
    assert "Only one live display" not in shown and "Traceback" not in shown
    for drawn in ("exporting cifar_resnet20 to ONNX", "quantizing and checking INT8 on", "parity vs PyTorch: PASS", "INT8 vs FP32"):
        assert drawn in shown, drawn
    assert shown.index("parity vs PyTorch: PASS") < shown.index("quantizing and checking INT8 on")


def test_training_reports_each_epoch_as_it_ends(tmp_path):
    """Each epoch's record arrives before the next epoch trains: its checkpoint (written after the report) is the
    previous epoch's, not the last one's."""
    import torch

    from deploykit.compress.configs import DistillConfig
    from deploykit.recipes.train import run_distill

    def checkpoint_epoch() -> int | None:
        last = tmp_path / "checkpoint.pth"
        return torch.load(last, weights_only=True)["epoch"] + 1 if last.is_file() else None

    seen = []
    result = run_distill(
        "cifar_resnet20", None, "digits", DistillConfig(epochs=3, lr=0.1), tmp_path, input_size=16, on_epoch=lambda record: seen.append((record.epoch, checkpoint_epoch()))
    )
    assert seen == [(1, None), (2, 1), (3, 2)] and [r.epoch for r in result.history] == [1, 2, 3]


def test_report_draws_one_series_per_batch_size(tmp_path):
    from deploykit.bench.report import draw, pareto_front

    rows = [
        {"model": "m", "engine": e, "precision": "fp32", "batch": b, "p50_ms": ms, "agreement_top1": q}
        for e, b, ms, q in [("ort", 1, 2.0, 1.0), ("ort", 8, 8.0, 1.0), ("torch", 1, 5.0, 0.9), ("torch", 8, 24.0, 0.9)]
    ]
    axes = draw(rows, title="t").axes[0]
    series = {collection.get_label(): sorted(map(tuple, collection.get_offsets().tolist())) for collection in axes.collections}
    assert series["batch 1"] == [(2.0, 1.0), (5.0, 0.9)]  # (ms per image, quality)
    assert series["batch 8"] == [(1.0, 1.0), (3.0, 0.9)]
    assert series["Pareto front (per model)"] == [(1.0, 1.0)]
    assert [(r["engine"], r["batch"]) for r in pareto_front(rows)] == [("ort", 8)]  # 1 ms per image beats 2 ms at batch 1


def test_report_plot_panels_series_labels_and_ticks(tmp_path):
    """A throughput panel only where a configuration has several batch sizes; one series per runtime, precision and
    threads; two identical results from two files labelled apart by file; latency ticks labelled past 20 ms."""
    from deploykit.bench.report import draw, unique_labels

    row = {"model": "m", "engine": "openvino", "device": "cpu", "precision": "fp32", "batch": 1, "agreement_top1": 1.0}
    single = [{**row, "threads": t, "p50_ms": ms, "throughput": 1e3 / ms} for t, ms in ((1, 5.0), (2, 120.0))]
    figure = draw(single)
    assert len(figure.axes) == 1  # every row is batch 1: no panel of dots on a 0.5-2.0 axis
    figure.canvas.draw()
    ticks = [float(t.get_text().replace("−", "-")) for t in figure.axes[0].get_xticklabels() if t.get_text()]
    assert any(t > 20 for t in ticks) and any(t < 20 for t in ticks), ticks
    batched = single + [{**r, "batch": 8, "p50_ms": r["p50_ms"] * 4, "throughput": 8e3 / (r["p50_ms"] * 4)} for r in single]
    speed = draw(batched).axes[1]
    assert sorted(line.get_label() for line in speed.get_lines()) == ["m openvino-cpu fp32 1t", "m openvino-cpu fp32 2t"]
    assert [t.get_text() for t in speed.get_xticklabels()] == ["1", "8"]
    twins = [{**single[1], "source": str(tmp_path / "a.json")}, {**single[1], "source": str(tmp_path / "b.json")}]
    assert unique_labels(twins) == ["m openvino-cpu fp32 2t b1 [a.json]", "m openvino-cpu fp32 2t b1 [b.json]"]
    assert unique_labels([single[1], single[1]]) == ["m openvino-cpu fp32 2t b1 #1", "m openvino-cpu fp32 2t b1 #2"]
