"""The real ImageNet MobileNet-v2 exported with `--triton` and served by the real tritonserver, started as a service
would start it (the venv's bin/deploykit by absolute path, the venv not activated, from another folder): top-1 through
the server on the 500 labelled photos of ../shared/imagenet-sample is what `deploykit eval` measures on the same file."""

import json
import signal
import sys
from pathlib import Path

import numpy as np

from deploykit.data import load_labelled_folder
from deploykit.serve.server import Ports
from deploykit.serve.client import RemoteModel
from tests.cli import run_cli
from tests.serve.test_serve import as_a_user_runs_it, start_serve

CHECKPOINT = "mobilenet_v2-b0353104.pth"


def test_top1_through_the_server_is_evals_on_the_same_file(real_checkpoint, imagenet_sample, tmp_path):
    result, _ = run_cli(
        "export",
        "mobilenet_v2",
        "--weights",
        real_checkpoint(CHECKPOINT),
        "--dynamic-batch",
        "--no-timing",
        "--out",
        tmp_path / "out",
        "--triton",
        tmp_path / "repo",
        "--triton-device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    result, _ = run_cli("eval", tmp_path / "out" / "mobilenet_v2", "--data", imagenet_sample, "--engine", "ort", "--json", tmp_path / "eval.json")
    assert result.exit_code == 0, result.output
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    ports, elsewhere = Ports.free(), tmp_path / "elsewhere"
    elsewhere.mkdir()
    process = start_serve([Path(sys.executable).parent / "deploykit"], tmp_path / "repo", ports, as_a_user_runs_it(tmp_path), elsewhere)
    try:
        model = RemoteModel.fetch(f"http://127.0.0.1:{ports.http}", "mobilenet_v2")
        images, labels, mapping = load_labelled_folder(imagenet_sample, model.preprocess, 1000)  # preprocessing from the server
        logits = model.infer(images)
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
    finally:
        process.kill()
    assert mapping.rule == "synsets" and evaluated["images"] == len(labels) == 500
    served_top1 = float(np.mean(logits.argmax(1) == labels))
    assert served_top1 == evaluated["top1"] and served_top1 > 0.8, (served_top1, evaluated["top1"])
