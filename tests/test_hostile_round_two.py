"""Issue 22, with real files (in-process through click's runner, or as a user runs it where the process is what is tested): an export never deletes what it did not write
(cause 1), NaN logits are no accuracy (cause 2), the weights cache is checked at every use (cause 3), memory is bounded
before anything is allocated (cause 5), report checks its input and writes both files or neither (cause 6), runtime and
user-code errors are one line (cause 7), manifests are validated (cause 8), presets and QAT folders are read strictly
(cause 9). The download path (cause 4) is in tests/models/test_hostile_downloads.py."""

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from tests.cli import deploykit_here
from tests.mounts import tmpfs


def test_a_folder_holding_the_users_files_is_refused_untouched(tmp_path):
    folder = tmp_path / "p" / "squeezenet1_1"
    folder.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    (folder / ".env").write_text("S=1\n")
    (folder / "notes.txt").write_text("n\n")
    (folder / ".venv").mkdir()
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    proc = deploykit_here("export", "squeezenet1_1", "--input-size", 64, "--out", "p", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("Error: p/squeezenet1_1 holds files deploykit did not write (.env, .git, .venv, notes.txt)")
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    assert (folder / ".env").read_text() == "S=1\n" and stat.S_IMODE(folder.stat().st_mode) == 0o755


def test_a_linked_output_folder_stays_a_link(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "cifar_resnet20").symlink_to(tmp_path / "elsewhere")
    for size in (16, 24):  # a first export into the link's target, then a second one replacing it
        proc = deploykit_here("export", "cifar_resnet20", "--input-size", size, "--out", "out", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "out" / "cifar_resnet20").is_symlink()
        assert (tmp_path / "elsewhere" / "model.onnx").is_file() and (tmp_path / "elsewhere" / "manifest.json").is_file()
    assert stat.S_IMODE((tmp_path / "elsewhere").stat().st_mode) == 0o755
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == ["cifar_resnet20"]


def nan_model(path: Path) -> Path:
    """A 10-class ONNX classifier whose every output is NaN: ReduceMean, MatMul with zero weights, then 0 / 0."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMean", ["input", "axes"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "weights"], ["zeros"]),
        helper.make_node("Div", ["zeros", "zeros"], ["logits"]),
    ]
    initializers = [numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes"), numpy_helper.from_array(np.zeros((3, 10), dtype=np.float32), "weights")]
    graph = helper.make_graph(
        nodes,
        "nan",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializers,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def test_nan_logits_are_no_accuracy(imagenet_sample, tmp_path):
    """Issue 22, cause 2: eval and bench --data on a model whose outputs are all NaN count every image as wrong."""
    nan_model(tmp_path / "nan.onnx")
    photos = sorted(imagenet_sample.glob("n0*/*"))[:8]
    for index, photo in enumerate(photos):
        (tmp_path / "d" / str(index % 2)).mkdir(parents=True, exist_ok=True)
        (tmp_path / "d" / str(index % 2) / photo.name).symlink_to(photo)
    proc = deploykit_here("eval", "nan.onnx", "--data", "d", "--json", "e.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "8 of 8 images gave NaN or inf logits: counted as wrong" in " ".join(proc.stdout.split())
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["top1"] == 0.0 and result["top5"] == 0.0
    proc = deploykit_here("bench", "nan.onnx", "--engine", "ort", "--data", "d", "--runs", 2, "--warmup", 0, "--json", "b.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    row = json.loads((tmp_path / "b.json").read_text())["results"][0]
    assert row["accuracy_top1"] == 0.0 and row["accuracy_top5"] == 0.0 and row["nonfinite_images"] == 8


def test_a_changed_cached_checkpoint_is_refused_at_every_use(real_checkpoint, tmp_path):
    """Issue 22, cause 3: zeroed tensors in the weights cache are refused, the file named, not exported as IMAGENET1K_V1."""
    import torch

    checkpoints = tmp_path / "home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    name = "mobilenet_v2-b0353104.pth"
    (checkpoints / name).write_bytes(real_checkpoint(name).read_bytes())
    env_home = {"TORCH_HOME": str(tmp_path / "home")}
    state = torch.load(checkpoints / name, weights_only=True)
    torch.save({key: torch.zeros_like(value) for key, value in state.items()}, checkpoints / name)
    proc = subprocess.run(
        [sys.executable, "-m", "deploykit", "export", "mobilenet_v2", "--weights", "IMAGENET1K_V1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, **env_home},
        timeout=600,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"Error: the cached checkpoint {checkpoints / name} is not the published {name}")
    assert not (tmp_path / "deploykit-out" / "mobilenet_v2" / "manifest.json").exists()


def one_line_refusal(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


def test_memory_is_bounded_before_anything_is_allocated(imagenet_sample, tmp_path):
    """Issue 22, cause 5: a huge --batch (given or from a preset), a huge declared ONNX input and a huge .npy header."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    assert "--batch 65536 of shape [65536, 3, 224, 224] needs 36.8 GB" in one_line_refusal(deploykit_here("bench", "squeezenet1_1", "--batch", 65536, cwd=tmp_path))
    (tmp_path / "presets.toml").write_text('[huge]\ndescription = "too big"\nengine = "torch"\ndevice = "cpu"\nprecision = "fp32"\nbatches = [65536]\n')
    assert "--batch 65536" in one_line_refusal(deploykit_here("bench", "squeezenet1_1", "--presets", "presets.toml", "--target", "huge", cwd=tmp_path))
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["pooled"], keepdims=0, axes=None), helper.make_node("Flatten", ["pooled"], ["logits"])],
        "big",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 10000, 10000])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "big.onnx")
    (tmp_path / "d" / "0").mkdir(parents=True)
    photo = sorted(imagenet_sample.glob("n0*/*"))[0]
    (tmp_path / "d" / "0" / photo.name).symlink_to(photo)
    assert "takes 10000x10000 inputs, beyond the 4096x4096" in one_line_refusal(deploykit_here("eval", "big.onnx", "--data", "d", cwd=tmp_path))
    with open(tmp_path / "huge.npy", "wb") as f:  # the header of a 56 GB array, without its data
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (100000, 3, 224, 224)})
    assert "declares an array of shape [100000, 3, 224, 224] (56.1 GB" in one_line_refusal(deploykit_here("export", "cifar_resnet20", "--int8", "--calib", "huge.npy", cwd=tmp_path))


MODULE = """import sys
import torch


class Net(torch.nn.Module):
    def __init__(self, returns):
        super().__init__()
        self.conv, self.fc, self.returns = torch.nn.Conv2d(3, 5, 3), torch.nn.Linear(5, 5), returns

    def forward(self, x):
        features = self.conv(x)
        logits = self.fc(features.mean((2, 3)))
        return {"tuple": (logits, features), "dict": {"logits": logits}, "4d": features}.get(self.returns, logits)


def tuple_out():
    return Net("tuple")


def dict_out():
    return Net("dict")


def four_d():
    return Net("4d")


def five_classes():
    return Net("logits")


def exits():
    sys.exit(0)
"""


def helper_nhwc_model(path: Path) -> Path:
    """An NHWC classifier with dynamic sizes: its MatMul takes the last axis (3 channels) as features."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("ReduceMean", ["input", "axes"], ["pooled"], keepdims=0), helper.make_node("MatMul", ["pooled", "weights"], ["logits"])]
    graph = helper.make_graph(
        nodes,
        "nhwc",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", "H", "W", "C"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes"), numpy_helper.from_array(np.ones((3, 10), dtype=np.float32), "weights")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def test_runtime_and_user_code_errors_are_one_line(trained_digits, tmp_path):
    """Issue 22, cause 7."""
    (tmp_path / "nets.py").write_text(MODULE)
    for function, expected in (("tuple_out", "returned a tuple, not a logits tensor"), ("dict_out", "returned a dict, not a logits"), ("four_d", "outputs shape [")):
        line = one_line_refusal(deploykit_here("export", "--module", f"nets.py:{function}", "--input-size", 16, cwd=tmp_path))
        assert expected in line, line
    line = one_line_refusal(deploykit_here("export", "--module", "nets.py:exits", "--input-size", 16, cwd=tmp_path))
    assert "calling nets.py:exits() failed: SystemExit" in line, line
    line = one_line_refusal(deploykit_here("export", "--module", "nets.py:five_classes", "--input-size", 16, "--int8", "--qat", "--data", "digits", "--calib", "digits", cwd=tmp_path))
    assert "the digits have 10 classes and the model 5" in line
    assert not (tmp_path / "deploykit-out" / "nets_five_classes" / "model.int8.onnx").exists()
    nan_model(tmp_path / "nan.onnx")
    same_classes = deploykit_here("compare", "cifar_resnet20", "nan.onnx", "--input-size", 32, "--no-images", cwd=tmp_path)
    assert same_classes.returncode == 1 and "FAIL (outputs contain NaN or inf" in same_classes.stdout  # a verdict, not an error
    nhwc = helper_nhwc_model(tmp_path / "nhwc.onnx")  # [N, H, W, 3] with dynamic sizes: fed NCHW, onnxruntime fails
    line = one_line_refusal(deploykit_here("bench", nhwc.name, "--engine", "ort", "--input-size", 224, "--runs", 1, cwd=tmp_path))
    assert "onnxruntime cannot run" in line and "check its input layout (NCHW)" in line, line
    line = one_line_refusal(deploykit_here("compare", "squeezenet1_1", "nan.onnx", "--input-size", 32, "--no-images", cwd=tmp_path))
    assert "outputs of different shapes ([4, 1000] and [4, 10])" in line, line


def test_presets_and_qat_folders_are_read_strictly(tmp_path):
    """Issue 22, cause 9: deep nesting, a threads count --threads refuses, a .DS_Store beside class folders, and class
    folders that are not the model's classes."""
    (tmp_path / "deep.toml").write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert "nests its tables or arrays too deeply" in one_line_refusal(deploykit_here("bench", "cifar_resnet20", "--presets", "deep.toml", "--target", "x", cwd=tmp_path))
    (tmp_path / "threads.toml").write_text('[t]\nengine = "torch"\ndevice = "cpu"\nprecision = "fp32"\nthreads = 1024\n')
    assert "threads must be an integer from 1 to" in one_line_refusal(deploykit_here("bench", "cifar_resnet20", "--presets", "threads.toml", "--target", "t", cwd=tmp_path))
    photos = sorted((Path(__file__).resolve().parents[1] / "deploykit" / "data" / "sets" / "calibration").glob("*.jpg"))[:16]
    for index, photo in enumerate(photos):
        folder = tmp_path / "qat" / ("cat" if index % 2 else "espresso")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / photo.name).symlink_to(photo)
    (tmp_path / "qat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    line = one_line_refusal(deploykit_here("export", "mobilenet_v2", "--input-size", 64, "--int8", "--qat", "--data", "qat", cwd=tmp_path))
    assert "2 class folders but the model has 1000 classes" in line and "QAT labels must name the model's classes" in line, line


def test_an_edited_manifest_is_refused_naming_the_field(tmp_path):
    """Issue 22, cause 8."""
    assert deploykit_here("export", "cifar_resnet20", "--input-size", 16, cwd=tmp_path).returncode == 0
    manifest_path = tmp_path / "deploykit-out" / "cifar_resnet20" / "manifest.json"
    original = json.loads(manifest_path.read_text())
    edits = [
        (("input", "shape"), [], "input.shape must be"),
        (("input", "shape"), [1, 3, "a", "b"], "input.shape must be"),
        (("model", "num_classes"), "many", "model.num_classes must be"),
        (("model", "builder_kwargs"), {"num_classes": 10**9}, "model.builder_kwargs.num_classes must be"),
    ]
    for (section, key), value, expected in edits:
        edited = json.loads(json.dumps(original))
        edited[section][key] = value
        manifest_path.write_text(json.dumps(edited))
        line = one_line_refusal(deploykit_here("bench", "deploykit-out/cifar_resnet20", "--runs", 2, "--warmup", 0, cwd=tmp_path))
        assert expected in line and "manifest.json" in line, line


def result_row(**fields) -> dict:
    return {
        "model": "m",
        "engine": "ort",
        "device": "cpu",
        "precision": "fp32",
        "batch": 1,
        "p50_ms": 1.0,
        "p90_ms": 1.1,
        "p99_ms": 1.2,
        "throughput": 1000.0,
        "agreement_top1": 1.0,
        "threads": 2,
        **fields,
    }


def test_report_checks_its_input_scales_and_writes_both_files_or_neither(tmp_path):
    """Issue 22, cause 6."""
    bad = {
        "empty row": '{"results": [{}]}',
        "NaN p50": json.dumps({"results": [result_row(p50_ms=float("nan"))]}),
        "batch 0": json.dumps({"results": [result_row(batch=0)]}),
        "negative": json.dumps({"results": [result_row(p50_ms=-1)]}),
        "not a dict": '{"results": [1, 2]}',
        "string batch": json.dumps({"results": [result_row(batch="8")]}),
        "deep": '{"results": ' + "[" * 100_000 + "]" * 100_000 + "}",
    }
    for name, text in bad.items():
        (tmp_path / "bad.json").write_text(text)
        line = one_line_refusal(deploykit_here("report", "bad.json", "--out", "r", cwd=tmp_path))
        assert "bad.json" in line, (name, line)
    (tmp_path / "latin1.json").write_bytes('{"results": [{"model": "caf\xe9"}]}'.encode("latin-1"))
    assert "UnicodeDecodeError" in one_line_refusal(deploykit_here("report", "latin1.json", cwd=tmp_path))

    nan_model(tmp_path / "nan.onnx")  # a foreign ONNX row has no quality figure: a table row, no point
    proc = deploykit_here("bench", "nan.onnx", "--engine", "ort", "--runs", 2, "--warmup", 0, "--input-size", 32, "--md", "n.md", "--json", "n.json", cwd=tmp_path)
    assert proc.returncode == 0 and (tmp_path / "n.md").is_file(), proc.stderr
    assert deploykit_here("report", "n.json", "--out", "n", cwd=tmp_path).returncode == 0

    rows = [result_row(model=f"m{i % 7}", batch=1 + i % 8, p50_ms=1.0 + (i % 97) / 10, agreement_top1=(i % 50) / 50) for i in range(1000)]
    (tmp_path / "many.json").write_text(json.dumps({"results": rows}))
    started = time.monotonic()
    assert deploykit_here("report", "many.json", "--out", "many", cwd=tmp_path).returncode == 0
    assert time.monotonic() - started < 60

    with tmpfs(tmp_path / "full", "size=64k") as disk:  # skips here where mounting is not allowed: the rest has run
        (disk / "report.md").write_text("the user's earlier report\n")
        proc = deploykit_here("report", "many.json", "--out", disk, cwd=tmp_path)
        assert proc.returncode == 2 and "the disk is full" in proc.stderr, proc.stderr
        assert (disk / "report.md").read_text() == "the user's earlier report\n" and not (disk / "pareto.png").exists()
