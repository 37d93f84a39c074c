"""`deploykit bench` and `deploykit report` end to end on the CPU; GPU and TensorRT where they exist."""

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploykit.recipes.export import export
from deploykit.compress.configs import QuantizeConfig
from deploykit.recipes.configs import ExportConfig
from tests.cli import invoke as run

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def digits_export(train_on_digits, tmp_path_factory):
    trained = train_on_digits("cifar_resnet20")
    from deploykit.compress.configs import QuantizeConfig

    result = export(
        ExportConfig(
            trained.name,
            out=tmp_path_factory.mktemp("bench"),
            weights=str(trained.weights),
            input_size=trained.size,
            dynamic_batch=True,
            quantize=QuantizeConfig(calib=trained.calib, holdout=trained.holdout),
        )
    )
    labelled = tmp_path_factory.mktemp("labelled")
    # The digits' test images as a labelled folder: class subfolders 0..9 of PNGs, resized like any photo.
    raw = np.load(trained.holdout)
    for index, (image, label) in enumerate(zip(raw[:120], trained.test_labels[:120])):
        pixels = ((image[0] - image[0].min()) / (np.ptp(image[0]) or 1) * 255).astype(np.uint8)
        (labelled / str(label)).mkdir(exist_ok=True)
        Image.fromarray(pixels).convert("RGB").save(labelled / str(label) / f"{index}.png")
    return result.folder, labelled


pytestmark = pytest.mark.xdist_group("digits-train")


def test_bench_writes_checked_json_and_csv(tmp_path):
    """onnxruntime timed at two batch sizes (the file exported for bench with a dynamic batch), its agreement with the
    PyTorch model measured, and the same rows in the JSON and the CSV."""
    out = tmp_path / "ort.json"
    result = run("bench", "cifar_resnet20", "--engine", "ort", "--runs", 7, "--warmup", 2, "--batch", "1,3", "--json", out, "--csv", tmp_path / "t.csv", "--out", tmp_path / "exports")
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    rows = payload["results"]
    assert [r["batch"] for r in rows] == [1, 3] and all(r["runs"] == 7 and r["warmup"] == 2 for r in rows)
    assert all(r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] for r in rows)
    assert all(r["throughput"] == pytest.approx(r["batch"] * 1000 / r["mean_ms"]) and r["peak_rss_mb"] > 0 for r in rows)
    assert all(r["agreement_top1"] == 1.0 and 0.9999 < r["agreement_min_cosine"] < 1.0 for r in rows)  # two runtimes, one model
    assert all(r["file"].endswith("model.onnx") for r in rows) and payload["config"]["engine"] == "ort"
    assert payload["machine"]["cores"] >= 1 and "onnxruntime" in payload["machine"]["versions"]
    with open(tmp_path / "t.csv") as table:
        assert [(int(r["batch"]), float(r["p50_ms"])) for r in csv.DictReader(table)] == [(r["batch"], r["p50_ms"]) for r in rows]


@pytest.mark.parametrize("engine, precision", [("ort", "fp32"), ("ort", "int8"), ("openvino", "int8")])
def test_bench_onnx_backends_measure_accuracy_on_labelled_data(digits_export, engine, precision, tmp_path):
    if engine == "openvino":
        pytest.importorskip("openvino", reason="OpenVINO is an optional extra")
    folder, labelled = digits_export
    out = tmp_path / "r.json"
    result = run("bench", folder, "--engine", engine, "--precision", precision, "--data", labelled, "--runs", 5, "--json", out)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())["results"]
    assert row["accuracy_images"] == 120 and row["accuracy_top1"] > 0.8
    assert row["agreement_top1"] >= 0.97 and row["engine"] == engine and row["precision"] == precision


def test_bench_with_a_preset(digits_export, tmp_path):
    folder, _ = digits_export
    result = run("bench", folder, "--target", "edge-cpu-1t", "--runs", 5, "--json", tmp_path / "p.json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "p.json").read_text())["results"]
    assert (row["engine"], row["precision"], row["threads"], row["batch"]) == ("ort", "int8", 1, 1)


def test_bench_then_report(digits_export, tmp_path):
    folder, _ = digits_export
    for engine, precision in (("torch", "fp32"), ("ort", "int8")):
        assert run("bench", folder, "--engine", engine, "--precision", precision, "--runs", 5, "--json", tmp_path / f"{engine}.json").exit_code == 0
    result = run("report", tmp_path / "torch.json", tmp_path / "ort.json", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "pareto.png").stat().st_size > 1000
    assert "| cifar_resnet20 | ort |" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the message shown where TensorRT is missing")
def test_trt_without_tensorrt_is_one_clear_line(digits_export):
    result = run("bench", digits_export[0], "--engine", "trt", "--precision", "int8")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["Error: TensorRT is not installed; on a machine with an NVIDIA GPU, in your deploykit clone, run: pip install -e '.[tensorrt]'"]


def test_cuda_without_a_gpu_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run("bench", "cifar_resnet20", "--device", "cuda", "--runs", 2)
    assert result.exit_code == 2 and ("no CUDA GPU is visible" in result.output or "no NVIDIA GPU driver" in result.output)


@pytest.mark.parametrize(
    "args, message",
    [
        (["bench", "no_such_model"], "unknown model"),
        (["bench", "cifar_resnet20", "--batch", "1,x"], "--batch takes comma-separated integers from 1"),
        (["bench", "cifar_resnet20", "--precision", "int8"], "torch engine runs fp32 or fp16"),
        (["bench", "cifar_resnet20", "--target", "nowhere"], "unknown target preset"),
        (["bench", "cifar_resnet20", "--warmup", "soon"], "--warmup takes a number of runs"),
    ],
)
def test_bench_bad_input(args, message):
    result = run(*args)
    assert result.exit_code == 2 and message in result.output


def test_fixed_batch_artifact_refuses_other_batches(small_export):
    result = run("bench", small_export, "--engine", "ort", "--batch", "4", "--runs", 2)
    assert result.exit_code == 2 and "--dynamic-batch" in result.output


@pytest.mark.skipif(not HAS_TENSORRT, reason="TensorRT is not installed (GPU machines only)")
def test_tensorrt_engine_matches_onnx_runtime(digits_export, tmp_path):
    folder, labelled = digits_export
    result = run("bench", folder, "--engine", "trt", "--precision", "int8", "--data", labelled, "--batch", "1,8", "--runs", 5, "--json", tmp_path / "trt.json")
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "trt.json").read_text())["results"]
    assert all(r["agreement_top1"] >= 0.97 for r in rows)


def test_bench_engine_auto_runs_the_combination_the_manifest_chose(digits_export, tmp_path):
    """export timed every file on every CPU runtime and chose one of those that passed its check; bench --engine auto
    times exactly that runtime, precision and file. With the manifest's timings changed so that its slowest combination
    becomes the fastest by far, bench follows the manifest."""
    folder = Path(shutil.copytree(digits_export[0], tmp_path / "export"))
    manifest = json.loads((folder / "manifest.json").read_text())
    timed = manifest["runtimes"]["combinations"]
    assert {(c["runtime"], c["precision"]) for c in timed} >= {("ort", "fp32"), ("ort", "int8")}
    assert all(c["p50_ms"] > 0 and c["passed"] for c in timed)
    assert manifest["runtimes"]["chosen"] in timed
    slowest = max(timed, key=lambda c: c["p50_ms"])
    for expected in (manifest["runtimes"]["chosen"], slowest):
        if expected is slowest:
            slowest["p50_ms"], slowest["rounds_ms"] = 1e-3, [1e-3] * len(slowest["rounds_ms"])
            (folder / "manifest.json").write_text(json.dumps(manifest))
        out = tmp_path / f"{expected['runtime']}-{expected['precision']}.json"
        result = run("bench", folder, "--engine", "auto", "--runs", 3, "--warmup", 1, "--json", out)
        assert result.exit_code == 0, result.output
        (row,) = json.loads(out.read_text())["results"]
        assert (row["engine"], row["precision"], row["chosen_by"]) == (expected["runtime"], expected["precision"], "auto")
        assert Path(row["file"]) == folder / expected["file"]


@pytest.mark.parametrize("engine", ["ort", "openvino"])
def test_bench_streams_add_a_parallel_row_per_batch_that_report_plots(digits_export, engine, tmp_path):
    """--streams 2: after each batch's one-request row, a row with two requests in parallel (OpenVINO's THROUGHPUT hint
    with two streams, or two onnxruntime sessions); report draws images per second against batch, one line each."""
    if engine == "openvino":
        pytest.importorskip("openvino", reason="OpenVINO is an optional extra")
    from deploykit.bench.report import draw

    out = tmp_path / "s.json"
    result = run("bench", digits_export[0], "--engine", engine, "--precision", "int8", "--batch", "1,4", "--streams", 2, "--runs", 8, "--json", out)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["results"]
    assert [(r["batch"], r["streams"]) for r in rows] == [(1, 1), (1, 2), (4, 1), (4, 2)]
    assert all(r["throughput"] > 0 and r["p50_ms"] <= r["p99_ms"] for r in rows) and rows[1]["runs"] == 8
    lines = {line.get_label(): line.get_xydata().tolist() for line in draw(rows).axes[1].get_lines()}
    expected = f"cifar_resnet20 {engine}-cpu int8 {rows[0]['threads']}t"
    assert lines[expected] == [[1, rows[0]["throughput"]], [4, rows[2]["throughput"]]]
    assert lines[f"{expected} 2s"] == [[1, rows[1]["throughput"]], [4, rows[3]["throughput"]]]
    refused = run("bench", digits_export[0], "--engine", "torch", "--streams", 2)
    assert refused.exit_code == 2 and "--streams runs requests in parallel on the CPU with ort or openvino" in refused.output


def test_options_that_cannot_apply_are_refused_before_any_work(small_export, tmp_path):
    """--input-size on an export made at another size, and --batch 8 on a fixed-batch export, were ignored or failed
    after the first rows were measured; now each is one line, at once, naming the export that would apply."""

    folder = small_export
    for options, expected in (
        (("--input-size", 160), "exported at 32x32, so --input-size 160 cannot apply; export it at that size (`deploykit export cifar_resnet20 --input-size 160`)"),
        (("--batch", "1,8"), "takes a fixed batch of 1, so --batch 8 cannot apply; export with --dynamic-batch"),
        (("--runs", 3, "--duration", 1), "--runs and --duration both say how long"),
        (("--data-limit", 5), "--data-limit applies to the images of --data"),
    ):
        result = run("bench", folder, "--engine", "ort", *options, "--json", tmp_path / "never.json")
        assert result.exit_code == 2 and result.output.count("\n") == 1 and expected in result.output, result.output
        assert not (tmp_path / "never.json").exists()
    foreign = tmp_path / "elsewhere" / "foreign.onnx"  # no manifest: its fixed 32x32 input, not an internal batch, is named
    foreign.parent.mkdir()
    shutil.copy(folder / "model.onnx", foreign)
    result = run("bench", foreign, "--engine", "ort", "--input-size", 160)
    assert result.exit_code == 2 and "takes 32x32 inputs (fixed in the file), so --input-size 160 cannot apply" in result.output


def test_data_is_read_whole_unless_limited_and_duration_times_by_the_clock(small_export, tmp_path):
    """bench --data streams the whole folder (it stopped at 500 silently); --data-limit N takes N spread over it and
    says so; --duration times each batch for that long (benchmark_app -t) instead of --runs."""
    from deploykit.data import DEFAULT_CALIBRATION_DIR, find_images

    photos = find_images(DEFAULT_CALIBRATION_DIR)
    for index, photo in enumerate(photos):
        (tmp_path / "data" / str(index % 10)).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, tmp_path / "data" / str(index % 10) / photo.name)
    folder = small_export
    whole = run("bench", folder, "--engine", "ort", "--data", tmp_path / "data", "--duration", 0.5, "--json", tmp_path / "a.json")
    assert whole.exit_code == 0, whole.output
    (row,) = json.loads((tmp_path / "a.json").read_text())["results"]
    assert row["accuracy_images"] == len(photos) and row["measured_on"] == f"{len(photos)} images of {tmp_path / 'data'}"
    assert row["runs"] > 3 and 0.4 <= row["runs"] * row["mean_ms"] / 1e3 < 2.0, row  # timed calls only, not the loop
    limited = run("bench", folder, "--engine", "ort", "--data", tmp_path / "data", "--data-limit", 10, "--runs", 2, "--json", tmp_path / "b.json")
    assert limited.exit_code == 0, limited.output
    (row,) = json.loads((tmp_path / "b.json").read_text())["results"]
    assert row["accuracy_images"] == 10 and f"--data-limit 10: 10 (spread over its {len(photos)}) images" in " ".join(limited.output.split())


def test_bench_all_times_and_checks_every_file_on_every_runtime_in_one_table(tmp_path):
    """bench FOLDER --all: the PyTorch model and each file (FP32, FP16, INT8) on onnxruntime and OpenVINO (and its
    bf16 where the CPU has it), in one interleaved run; one table with size, p50 and its rounds, throughput at batch 1
    and the best batch, quality on the images it names, each file's check; JSON that report plots."""
    from deploykit.bench.runtimes import bf16_possible, openvino_installed

    folder = export(ExportConfig("cifar_resnet20", out=tmp_path, input_size=32, dynamic_batch=True, fp16=True, quantize=QuantizeConfig(calib_size=16), time_runtimes=False)).folder
    result = run("bench", folder, "--all", "--batch", "4", "--json", tmp_path / "all.json")
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "all.json").read_text())["results"]
    runtimes = ["ort", "openvino"] if openvino_installed() else ["ort"]
    expected = {("torch", "fp32")} | {(r, p) for r in runtimes for p in ("fp32", "fp16", "int8")}
    expected |= {("openvino", "bf16")} if bf16_possible() else set()
    assert {(r["engine"], r["precision"]) for r in rows} == expected
    assert sorted({r["batch"] for r in rows}) == [1, 4] and len(rows) == 2 * len(expected)
    assert all(r["measured_on"] == "48 images of the bundled held-out photos" and 0 <= r["agreement_top1"] <= 1 for r in rows)
    assert all(len(r["rounds_ms"]) == 7 for r in rows if r["batch"] == 1)
    checks = {r["file"]: r["check"] for r in rows if r["precision"] != "bf16"}
    assert checks == {"(PyTorch model)": "the reference", "model.onnx": "parity PASS", "model.fp16.onnx": "parity PASS", "model.int8.onnx": "gate not applied (random weights)"}
    text = " ".join(result.output.split())
    assert "every file on every runtime, interleaved" in text and ("fastest: " in text or "chosen: tie within noise" in text)
    report = run("report", tmp_path / "all.json", "--out", tmp_path / "report")
    assert report.exit_code == 0 and (tmp_path / "report" / "pareto.png").stat().st_size > 0, report.output
    for options, expected_line in ((("--engine", "ort"), "--engine does not apply with --all"), (("--runs", 5), "--runs does not apply with --all")):
        refused = run("bench", folder, "--all", *options)
        assert refused.exit_code == 2 and expected_line in refused.output and refused.output.count("\n") == 1, refused.output
    bare = run("bench", "cifar_resnet20", "--all")
    assert bare.exit_code == 2 and "--all benches every file of an export folder" in bare.output
