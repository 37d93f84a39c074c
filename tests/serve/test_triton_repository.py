"""`deploykit triton` and `export --triton`: model repositories whose configs come from the exported files, validated by
Triton's own ModelConfig schema (tritonclient's model_config_pb2), published whole, never replacing what deploykit did
not write. No server here: test_serve.py starts one."""

import json

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from deploykit.errors import DeployKitError
from deploykit.io import sha256_file
from deploykit.serve.triton_config import check_config, parse_config
from tests.cli import run_cli


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """cifar_resnet20 (random init) exported with a dynamic batch, INT8 and FP16, and a bench result of its FP32 file."""
    out = tmp_path_factory.mktemp("triton_export")
    result, _ = run_cli("export", "cifar_resnet20", "--dynamic-batch", "--int8", "--calib-size", 8, "--fp16", "--no-timing", "--out", out)
    assert result.exit_code == 0, result.output
    folder = out / "cifar_resnet20"
    result, _ = run_cli("bench", folder, "--engine", "ort", "--batch", "1,4,16", "--runs", 20, "--warmup", 3, "--json", out / "bench.json")
    assert result.exit_code == 0, result.output
    return folder, out / "bench.json"


def read_config(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_configs_come_from_the_files_and_the_bench_result(exported, tmp_path):
    folder, bench = exported
    result, text = run_cli("triton", tmp_path / "repo", folder, "--bench-results", bench)
    assert result.exit_code == 0, result.output
    manifest = json.loads((folder / "manifest.json").read_text())
    rows = {row["batch"]: row for row in json.loads(bench.read_text())["results"]}
    for name, file_name, precision in (("cifar_resnet20", "model.onnx", "fp32"), ("cifar_resnet20_int8", "model.int8.onnx", "int8"), ("cifar_resnet20_fp16", "model.fp16.onnx", "fp16")):
        model = tmp_path / "repo" / name
        config = read_config(model / "config.pbtxt")
        graph = onnx.load(str(folder / file_name)).graph
        assert config.name == name and config.backend == "onnxruntime" and config.default_model_filename == "model.onnx"
        assert [(t.name, list(t.dims)) for t in config.input] == [(graph.input[0].name, [3, 32, 32])]
        assert [(t.name, list(t.dims)) for t in config.output] == [(graph.output[0].name, [10])]
        assert config.input[0].data_type == model_config_pb2.TYPE_FP32
        assert [(g.count, g.kind) for g in config.instance_group] == [(1, model_config_pb2.ModelInstanceGroup.KIND_GPU)]
        assert sha256_file(model / "1" / "model.onnx") == manifest["files"][file_name]["sha256"]
        parameters = {key: value.string_value for key, value in config.parameters.items()}
        assert [float(v) for v in parameters["deploykit.mean"].split(",")] == manifest["input"]["mean"]  # exactly, not rounded
        assert [float(v) for v in parameters["deploykit.std"].split(",")] == manifest["input"]["std"]
        assert parameters["deploykit.size"] == "32" and parameters["deploykit.precision"] == precision
        accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
        assert [(a.name, dict(a.parameters).get("precision_mode")) for a in accelerators] == ([] if precision == "fp32" else [("tensorrt", precision.upper())])
    fp32 = read_config(tmp_path / "repo" / "cifar_resnet20" / "config.pbtxt")
    best = max(row["throughput"] for row in rows.values())  # the smallest batch within 5% of the best throughput
    assert fp32.max_batch_size == min(b for b, row in rows.items() if row["throughput"] >= 0.95 * best)
    assert list(fp32.dynamic_batching.preferred_batch_size) == ([fp32.max_batch_size] if fp32.max_batch_size > 1 else [])
    assert fp32.dynamic_batching.max_queue_delay_microseconds == 100  # benchmarks/serve.py: a longer delay only cost here
    int8 = read_config(tmp_path / "repo" / "cifar_resnet20_int8" / "config.pbtxt")
    assert int8.max_batch_size == 32 and int8.dynamic_batching.max_queue_delay_microseconds == 100  # not benched: the defaults
    records = {name: json.loads((tmp_path / "repo" / name / ".deploykit.json").read_text())["batching_from"] for name in ("cifar_resnet20", "cifar_resnet20_int8")}
    assert records == {"cifar_resnet20": "bench (ort on cpu, batches 1,4,16)", "cifar_resnet20_int8": "defaults"}
    assert "Triton repository" in text


def test_openvino_on_the_cpu_and_no_dynamic_batching(exported, tmp_path):
    folder, _ = exported
    result, _ = run_cli("triton", tmp_path / "repo", folder, "--backend", "openvino", "--instances", 2, "--no-dynamic-batching")
    assert result.exit_code == 0, result.output
    config = read_config(tmp_path / "repo" / "cifar_resnet20_int8" / "config.pbtxt")
    assert config.backend == "openvino" and not config.HasField("dynamic_batching") and not config.HasField("optimization")
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, model_config_pb2.ModelInstanceGroup.KIND_CPU)]
    result, text = run_cli("triton", tmp_path / "other", folder, "--backend", "openvino", "--device", "gpu")
    assert result.exit_code == 2 and "OpenVINO backend runs on the CPU" in text and not (tmp_path / "other").exists()


def test_a_fixed_batch_is_refused_with_the_command_that_fixes_it(exported, tmp_path):
    result, text = run_cli("export", "cifar_resnet20", "--triton", tmp_path / "repo", "--out", tmp_path / "out")
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "add --dynamic-batch" in text
    assert not (tmp_path / "out").exists() and not (tmp_path / "repo").exists()  # refused before exporting
    result, _ = run_cli("export", "cifar_resnet20", "--no-timing", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    result, text = run_cli("triton", tmp_path / "repo", tmp_path / "out" / "cifar_resnet20")
    assert result.exit_code == 2 and "fixed batch of 1" in text and "deploykit export cifar_resnet20 --dynamic-batch" in text
    assert not (tmp_path / "repo").exists()


def test_export_triton_writes_the_repository_of_the_export(tmp_path):
    result, text = run_cli("export", "cifar_resnet20", "--dynamic-batch", "--no-timing", "--out", tmp_path / "out", "--triton", tmp_path / "repo", "--triton-device", "cpu")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["cifar_resnet20"]
    assert "Triton repository" in text and f"deploykit serve {tmp_path / 'repo'}" in text
    config = read_config(tmp_path / "repo" / "cifar_resnet20" / "config.pbtxt")
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU


def test_what_deploykit_did_not_write_is_never_replaced(exported, tmp_path):
    folder, _ = exported
    repo = tmp_path / "repo"
    (repo / "mine" / "1").mkdir(parents=True)
    (repo / "mine" / "config.pbtxt").write_text('name: "mine"\n')
    (repo / "cifar_resnet20_int8").mkdir()
    (repo / "cifar_resnet20_int8" / "notes.txt").write_text("my notes")
    result, text = run_cli("triton", repo, folder)
    assert result.exit_code == 2 and "cifar_resnet20_int8 was not written by deploykit" in text
    assert sorted(p.name for p in repo.iterdir()) == ["cifar_resnet20_int8", "mine"]  # nothing written, nothing lost
    (repo / "cifar_resnet20_int8" / "notes.txt").unlink()
    (repo / "cifar_resnet20_int8").rmdir()
    (tmp_path / ".repo.staging-killed" / "cifar_resnet20").mkdir(parents=True)  # what a killed run leaves
    for _ in range(2):  # a second run replaces what the first wrote
        result, _ = run_cli("triton", repo, folder)
        assert result.exit_code == 0, result.output
    assert (repo / "mine" / "config.pbtxt").read_text() == 'name: "mine"\n'
    (repo / "cifar_resnet20" / "1" / "labels.txt").write_text("cat\n")
    result, text = run_cli("triton", repo, folder)
    assert result.exit_code == 2 and "holds files deploykit did not write (1/labels.txt)" in text
    assert not list(tmp_path.glob(".repo.staging-*"))


def test_a_tensorrt_engine_becomes_a_tensorrt_model_checked_against_the_schema(exported, tmp_path):
    """Config only: no TensorRT here, so the engine's bytes are a placeholder and its record is written as build-engine
    writes one; what is checked is the config Triton's schema and rules accept."""
    folder, _ = exported
    copy = tmp_path / "export"
    copy.mkdir()
    for entry in folder.glob("*.*"):  # the files and the manifest
        (copy / entry.name).write_bytes(entry.read_bytes())
    (copy / "model.engine").write_bytes(b"placeholder engine")
    record = {"onnx_sha256": sha256_file(copy / "model.int8.onnx"), "precision": {"fp16": True, "int8_qdq": True}, "config": {"min_batch": 1, "opt_batch": 8, "max_batch": 16}}
    (copy / "model.engine.json").write_text(json.dumps(record))
    result, _ = run_cli("triton", tmp_path / "repo", copy)
    assert result.exit_code == 0, result.output
    config = read_config(tmp_path / "repo" / "export_trt" / "config.pbtxt")
    assert config.backend == "tensorrt" and config.default_model_filename == "model.plan"
    assert config.max_batch_size == 16 and list(config.dynamic_batching.preferred_batch_size) == [8]
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert (tmp_path / "repo" / "export_trt" / "1" / "model.plan").read_bytes() == b"placeholder engine"


def test_the_schema_and_triton_rules_reject_bad_configs():
    with pytest.raises(DeployKitError, match="not a valid Triton model config"):
        parse_config('name: "m"\nmax_batch_size: 8\nbatching_policy: 3\n', "m/config.pbtxt")
    config = parse_config(
        'name: "m"\nbackend: "onnxruntime"\nmax_batch_size: 4\ninput { name: "x" data_type: TYPE_FP32 dims: [3, 0, 8] }\n'
        'output { name: "y" data_type: TYPE_FP32 dims: 10 }\ndynamic_batching { preferred_batch_size: 8 }\n'
        "instance_group { count: 1 kind: KIND_CPU }\n",
        "m/config.pbtxt",
    )
    with pytest.raises(DeployKitError, match=r"x has dims \[3, 0, 8\].*preferred batch sizes \[8\] exceed max_batch_size"):
        check_config(config, "m")
