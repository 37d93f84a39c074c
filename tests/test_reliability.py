"""Bad inputs and faults, as a careless or hostile user meets them: one `Error:` line, exit 2, nothing lost."""

import json
import random

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from deploykit.manifest import ExportFolder
from tests.cli import run_cli
from tests.mounts import tmpfs

pytestmark = pytest.mark.xdist_group("reliability")


def one_line_error(result, text: str, message: str) -> None:
    assert result.exit_code == 2, text
    assert message in text and "Traceback" not in result.output, text


def foreign(path, inputs, outputs, nodes):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


@pytest.mark.parametrize("kind, message", [("identity", "outputs rank-4"), ("two inputs", "has 2 inputs"), ("int64 input", "takes a int64 input"), ("scalar output", "outputs rank-0")])
def test_onnx_files_that_are_no_classifier(kind, message, tmp_path):
    image = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    if kind == "identity":
        path = foreign(tmp_path / "m.onnx", [image], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])], [helper.make_node("Identity", ["x"], ["y"])])
    elif kind == "two inputs":
        other = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, 8, 8])
        path = foreign(tmp_path / "m.onnx", [image, other], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])], [helper.make_node("Add", ["x", "z"], ["y"])])
    elif kind == "int64 input":
        path = foreign(
            tmp_path / "m.onnx",
            [helper.make_tensor_value_info("x", TensorProto.INT64, [1, 3, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.INT64, [1, 3, 8, 8])],
            [helper.make_node("Identity", ["x"], ["y"])],
        )
    else:
        path = foreign(tmp_path / "m.onnx", [image], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], [helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)])
    for command in (["bench", path, "--engine", "ort"], ["compare", path, path], ["eval", path, "--data", tmp_path]):
        one_line_error(*run_cli(*command), message)


def test_presets_that_are_not_utf8_or_wrongly_typed(tmp_path):
    (tmp_path / "latin1.toml").write_bytes('[caf\xe9]\nengine = "ort"\n'.encode("latin-1"))
    one_line_error(*run_cli("bench", "cifar_resnet20", "--target", "x", "--presets", tmp_path / "latin1.toml"), "not UTF-8")
    (tmp_path / "typed.toml").write_text('[x]\nengine = "ort"\ndevice = "cpu"\nprecision = "fp32"\nbatches = [true]\n')
    one_line_error(*run_cli("bench", "cifar_resnet20", "--target", "x", "--presets", tmp_path / "typed.toml"), "batches must be")
    (tmp_path / "ws.toml").write_text('[x]\nengine = "ort"\ndevice = "cpu"\nprecision = "fp32"\nworkspace_gb = "lots"\n')
    one_line_error(*run_cli("bench", "cifar_resnet20", "--target", "x", "--presets", tmp_path / "ws.toml"), "workspace_gb must be")


def test_an_unwritable_json_path_is_refused_before_the_run(tmp_path):
    for command, message in (
        (["bench", "cifar_resnet20", "--json", tmp_path / "missing" / "r.json"], "cannot write"),
        (["compare", "cifar_resnet20", "cifar_resnet20", "--json", tmp_path], "is a directory"),
        (["eval", "cifar_resnet20", "--data", tmp_path, "--json", tmp_path / "no" / "e.json"], "cannot write"),
    ):
        one_line_error(*run_cli(*command), message)


def test_class_folders_numbered_out_of_range_and_nan_calibration(tmp_path):
    from PIL import Image

    for name in ("0", "17"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(tmp_path / "data" / name / f"{i}.png")
    one_line_error(*run_cli("train", "cifar_resnet20", "--data", tmp_path / "data", "--epochs", 1, "--out", tmp_path / "t"), "must be 0..1 for 2 classes")
    np.save(tmp_path / "nan.npy", np.full((16, 3, 32, 32), np.nan, np.float32))
    one_line_error(*run_cli("export", "cifar_resnet20", "--int8", "--calib", tmp_path / "nan.npy", "--out", tmp_path / "o"), "contains NaN or inf")
    assert not list((tmp_path / "o").rglob("*.onnx"))


def test_a_truncated_resume_checkpoint_is_one_line(tmp_path):
    args = ("train", "cifar_resnet20", "--data", "digits", "--epochs", 1, "--input-size", 16, "--out", tmp_path)
    assert run_cli(*args)[0].exit_code == 0
    last = tmp_path / "checkpoint.pth"
    last.write_bytes(last.read_bytes()[:1000])
    one_line_error(*run_cli(*[a if a != 1 else 2 for a in args]), "is damaged")


def test_checkpoint_dicts_of_the_wrong_shape(tmp_path):
    torch.save({"format": 1}, tmp_path / "a.pth")
    one_line_error(*run_cli("export", f"cifar_resnet20:{tmp_path / 'a.pth'}", "--out", tmp_path), "does not hold a state_dict")
    torch.save({"format": "deploykit-pruned/1", "source": {"name": 3}}, tmp_path / "b.pth")
    one_line_error(*run_cli("export", f"cifar_resnet20:{tmp_path / 'b.pth'}", "--out", tmp_path), "says it is a pruned checkpoint")


def test_inputs_too_large_for_memory_are_refused_before_allocating(tmp_path):
    one_line_error(*run_cli("export", "vgg16", "--input-size", 4000, 4000, "--out", tmp_path), "use a smaller --input-size")


def test_a_full_disk_leaves_the_previous_export(tmp_path):
    with tmpfs(tmp_path / "disk", "size=3m") as disk:
        assert run_cli("export", "cifar_resnet20", "--out", disk)[0].exit_code == 0  # 1.1 MB fits
        folder = disk / "cifar_resnet20"
        before = {name: entry["sha256"] for name, entry in ExportFolder(folder).read().files.items()}
        # a second version beside the first, plus an INT8 file: more than 3 MB
        result, text = run_cli("export", "cifar_resnet20", "--int8", "--calib-size", 16, "--input-size", 40, 40, "--out", disk)
        assert result.exit_code == 2 and "Traceback" not in result.output, text
        assert {name: entry["sha256"] for name, entry in ExportFolder(folder).read().files.items()} == before
        for name in before:
            ExportFolder(folder).verified(name)


@pytest.fixture(scope="module")
def good_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz")
    assert run_cli("export", "cifar_resnet20", "--input-size", 16, 16, "--out", out)[0].exit_code == 0
    return out


BAD_VALUES = ["nan", "inf", "-inf", "-1", "0", "1e308", "abc", "", "9" * 30, "1,2,x", "0.5s", "-3s"]
BAD_PATHS = ["/nonexistent/x.onnx", "/", "/etc/hostname", "nope:thing", "resnet18:/etc/hostname", "../..", "x.pth", "resnet18:"]


def test_fuzzed_options_never_traceback_or_damage_an_export(good_export):
    """48 random bad command lines (fixed seed): no traceback, user errors exit 2, the earlier export intact."""
    folder = good_export / "cifar_resnet20"
    before = {name: entry["sha256"] for name, entry in ExportFolder(folder).read().files.items()}
    rng = random.Random(20261201)
    templates = [
        ["export", "{path}", "--out", "{out}"],
        ["export", "cifar_resnet20", "--rel-error", "{value}", "--out", "{out}"],
        ["export", "cifar_resnet20", "--input-size", "{value}", "{value}", "--out", "{out}"],
        ["export", "cifar_resnet20", "--int8", "--calib", "{path}", "--out", "{out}"],
        ["export", "cifar_resnet20", "--int8", "--calib-size", "{value}", "--out", "{out}"],
        ["compare", "{path}", "{folder}"],
        ["compare", "{folder}", "{folder}", "--layer-tolerance", "{value}"],
        ["bench", "{path}", "--out", "{out}"],
        ["bench", "{folder}", "--runs", "{value}"],
        ["bench", "{folder}", "--warmup", "{value}"],
        ["bench", "{folder}", "--batch", "{value}"],
        ["bench", "{folder}", "--threads", "{value}"],
        ["eval", "{path}", "--data", "{path}"],
        ["eval", "{folder}", "--data", "/etc", "--workers", "{value}"],
        ["prune", "cifar_resnet20", "--ratio", "{value}", "--no-timing", "--out", "{out}"],
        ["info", "{path}"],
        ["list", "{value}"],
        ["report", "{path}"],
        ["build-engine", "{path}"],
        ["train", "{path}", "--data", "{path}", "--out", "{out}"],
    ]
    for _ in range(48):
        template = rng.choice(templates)
        args = [part.format(path=rng.choice(BAD_PATHS), value=rng.choice(BAD_VALUES), folder=folder, out=good_export) for part in template]
        result, text = run_cli(*args)
        assert result.exit_code in (0, 1, 2), (args, text)
        assert "Traceback" not in result.output and not (result.exception and not isinstance(result.exception, SystemExit)), (args, text, repr(result.exception))
        current = ExportFolder(folder).read().files
        if {name: entry["sha256"] for name, entry in current.items()} != before:  # only a successful re-export may change it
            assert result.exit_code == 0 and template[0] in ("export", "prune"), (args, text)
            before = {name: entry["sha256"] for name, entry in current.items()}
        for name in current:
            ExportFolder(folder).verified(name)


def test_a_manifest_missing_keys_is_one_line(small_export):
    manifest = small_export / "manifest.json"
    data = json.loads(manifest.read_text())
    del data["model"]["name"]
    manifest.write_text(json.dumps(data))
    one_line_error(*run_cli("bench", small_export, "--engine", "ort"), "is not a deploykit manifest")


def _no_traceback(args, result, text) -> None:
    assert result.exit_code in (0, 1, 2), (args, text)
    assert "Traceback" not in result.output and not (result.exception and not isinstance(result.exception, SystemExit)), (args, text, repr(result.exception))


def test_fuzzed_files_never_traceback(good_export, tmp_path, monkeypatch):
    """The files and servers deploykit reads, mutated with a fixed seed: hostile download replies, report inputs,
    manifests, --module returns and preset files. Every run ends in a result or one line, never a traceback."""
    from tests.models.test_hostile_downloads import scripted_server

    rng = random.Random(20261202)
    junk = [None, True, -1, 0, 1e308, float("nan"), "x", [], {}, [1, 3, "a"], {"num_classes": 10**9}, "9" * 40, [[[[]]]]]

    def garbage_reply(connection, stop):
        status = rng.choice([b"HTTP/1.1 200 OK", b"HTTP/1.1 301 Moved", b"HTTP/1.0 404 X", b"HTTP/9 OK", b"", b"\xff\xfe"])
        headers = rng.choice(
            [
                b"Content-Length: " + str(rng.randint(-5, 10**12)).encode(),
                b"Transfer-Encoding: chunked",
                b"Location: " + rng.choice([b"/", b"http://[::1", b"ftp://x"]),
                b"X: " + b"y" * rng.randint(0, 70_000),
            ]
        )
        connection.sendall(status + b"\r\n" + headers + b"\r\n\r\n" + bytes(rng.randrange(256) for _ in range(rng.randint(0, 64))))

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    with scripted_server(garbage_reply) as url:
        monkeypatch.setenv("DEPLOYKIT_WEIGHTS_URL", url)
        for _ in range(12):
            args = ["export", "mobilenet_v2", "--weights", "IMAGENET1K_V1", "--input-size", 32, 32, "--out", tmp_path / "dl"]
            result, text = run_cli(*args)
            _no_traceback(args, result, text)
            assert result.exit_code == 2 and "Error:" in result.output, text
    monkeypatch.delenv("DEPLOYKIT_WEIGHTS_URL")

    row = {"model": "m", "engine": "ort", "device": "cpu", "precision": "fp32", "batch": 1, "p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "throughput": 1.0, "agreement_top1": 1.0}
    for index in range(15):
        mutated = dict(row, **{rng.choice(list(row)): rng.choice(junk)})
        path = tmp_path / f"r{index}.json"
        path.write_text(json.dumps(rng.choice([{"results": [mutated]}, {"results": mutated}, [mutated], {"results": [row, mutated]}])))
        args = ["report", path, "--out", tmp_path / f"report{index}"]
        _no_traceback(args, *run_cli(*args))

    folder = good_export / "cifar_resnet20"
    original = (folder / "manifest.json").read_text()
    try:
        for _ in range(12):
            data = json.loads(original)
            section = rng.choice(["model", "input"])
            data[section][rng.choice(list(data[section]))] = rng.choice(junk)
            (folder / "manifest.json").write_text(json.dumps(data))
            args = rng.choice([["bench", folder, "--runs", 1, "--warmup", 0], ["compare", folder, folder, "--no-images"]])
            _no_traceback(args, *run_cli(*args))
    finally:
        (folder / "manifest.json").write_text(original)

    returns = ["(x, x)", "{'logits': x}", "x[:, :, None, None]", "None", "'text'", "[x]", "x.sum()", "x.int()"]
    for index, expression in enumerate(rng.sample(returns, len(returns))):
        (tmp_path / f"m{index}.py").write_text(
            "import torch\n\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.fc = torch.nn.Linear(3, 4)\n\n    def forward(self, x):\n        x = self.fc(x.mean((2, 3)))\n"
            f"        return {expression}\n\n\ndef build():\n    return Net()\n"
        )
        args = ["export", "--module", f"{tmp_path / f'm{index}.py'}:build", "--input-size", 8, "--out", tmp_path / "modules"]
        _no_traceback(args, *run_cli(*args))

    pieces = [
        'engine = "torch"',
        'device = "cpu"',
        'precision = "fp32"',
        "batches = [1]",
        "threads = 99999",
        "batches = []",
        "engine = 3",
        "workspace_gb = -1",
        "[[x]]",
        "x = [[[[",
        "description = 1",
        "batches = [true]",
    ]
    for index in range(12):
        text = "[fuzz]\n" + "\n".join(rng.sample(pieces, rng.randint(1, 5))) + "\n"
        (tmp_path / f"p{index}.toml").write_text(text)
        args = ["bench", "cifar_resnet20", "--presets", tmp_path / f"p{index}.toml", "--target", "fuzz", "--runs", 1, "--warmup", 0, "--input-size", 16]
        _no_traceback(args, *run_cli(*args))
