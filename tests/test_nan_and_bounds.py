"""Checks that NaN cannot pass, and options that are bounded before they can hang or crash a run."""

import math

import numpy as np
import pytest
import torch

from deploykit.manifest import ExportFolder
from deploykit.parity import Tolerances, compare_logits
from deploykit.recipes.ref import build_model
from tests.cli import run_cli


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_outputs_never_pass_parity(bad):
    reference = np.random.default_rng(0).standard_normal((4, 10))
    candidate = reference.copy()
    candidate[1, 3] = bad
    report = compare_logits(reference, candidate, Tolerances(rel_error=math.inf, min_cosine=-1.0, min_top1=0.0))
    assert not report.passed and "NaN or inf" in report.summary()


def test_an_all_nan_checkpoint_does_not_export(tmp_path):
    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in build_model("cifar_resnet20").state_dict().items()}
    torch.save(state, tmp_path / "nan.pth")
    result, text = run_cli("export", f"cifar_resnet20:{tmp_path / 'nan.pth'}", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "NaN or inf" in text and not list((tmp_path / "out").rglob("*.onnx"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["export", "cifar_resnet20", "--rel-error", "nan"], "is not a finite number"),
        (["export", "cifar_resnet20", "--min-cosine", "nan"], "is not a finite number"),
        (["compare", "cifar_resnet20", "cifar_resnet20", "--rel-error", "inf"], "is not a finite number"),
        (["export", "cifar_resnet20", "--int8", "--int8-min-cosine", "nan"], "is not a finite number"),
        (["bench", "cifar_resnet20", "--threads", "100000"], "--threads"),
        (["bench", "cifar_resnet20", "--warmup", "infs"], "--warmup takes"),
        (["bench", "cifar_resnet20", "--warmup", "nans"], "--warmup takes"),
        (["bench", "cifar_resnet20", "--runs", "10000000"], "--runs"),
        (["eval", "cifar_resnet20", "--data", ".", "--input-size", "100000"], "--input-size"),
    ],
)
def test_bad_numbers_are_refused_up_front(args, message, tmp_path):
    result, text = run_cli(*args, *(["--out", tmp_path] if args[0] == "export" else []))
    assert result.exit_code == 2 and message in text and "Traceback" not in text


def test_int8_with_every_layer_excluded_is_refused(tmp_path):
    result, text = run_cli("export", "cifar_resnet20", "--int8", "--exclude", "*", "--calib-size", 16, "--out", tmp_path)
    assert result.exit_code == 2 and "nothing was quantized" in text
    assert not (tmp_path / "cifar_resnet20" / "model.int8.onnx").exists()


def test_manifest_records_the_opset_the_file_has(tmp_path):
    import json

    import onnx

    result, _ = run_cli("export", "cifar_resnet20", "--opset", 20, "--out", tmp_path)
    assert result.exit_code == 0
    folder = tmp_path / "cifar_resnet20"
    declared = next(o.version for o in onnx.load(str(folder / "model.onnx")).opset_import if o.domain in ("", "ai.onnx"))
    assert json.loads((folder / "manifest.json").read_text())["export"]["opset"] == declared


def test_a_damaged_calibration_cache_is_recomputed(tmp_path):
    assert run_cli("export", "cifar_resnet20", "--int8", "--calib-size", 16, "--out", tmp_path)[0].exit_code == 0
    cache = tmp_path / "cifar_resnet20" / "calib-cache"
    for path in cache.iterdir():
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated, as by a kill or a full disk
    result, text = run_cli("export", "cifar_resnet20", "--int8", "--calib-size", 16, "--out", tmp_path)
    assert result.exit_code == 0 and "cache computed" in text, text


def test_sixteen_bit_images_are_scaled_not_clipped():
    from PIL import Image

    from deploykit.data import Preprocess

    grey = Image.fromarray((np.full((40, 40), 0.5) * 65535).astype(np.uint16))  # mode I;16, mid grey
    array = Preprocess(32, 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))(grey)
    assert abs(float(array.mean()) - 0.5) < 0.01


def test_decompression_bombs_are_one_line_errors(tmp_path):
    from PIL import Image

    from deploykit import DeployKitError
    from deploykit.data import Preprocess, load_images

    path = tmp_path / "bomb.png"
    Image.new("L", (14000, 14000)).save(path)  # 196 megapixels: over twice PIL's limit, where it refuses
    with pytest.raises(DeployKitError, match="cannot read image"):
        load_images([path], Preprocess(32, 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))


SWALLOWED_STOP = """
import os, signal, sys, time
import deploykit.cli as cli

class Finalized:
    def __del__(self):  # Ctrl-C lands while a finalizer runs: Python raises it there, prints it and ignores it
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            pass

def command(prog_name):
    Finalized()
    sys.exit(0)

cli.cli = command
cli.main()
"""


def interruptible() -> None:
    """A child's Ctrl-C as a terminal delivers it to a foreground command: a suite started as a background job of a
    script (`.ci/run &`) starts its children with SIGINT ignored, and Python then keeps it ignored (as nohup wants)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_swallowed_by_a_finalizer_still_ends_the_command_as_interrupted():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SWALLOWED_STOP], capture_output=True, text=True, timeout=60, preexec_fn=interruptible)
    assert "Exception ignored" in done.stderr and "KeyboardInterrupt" in done.stderr, done.stderr  # what Python does with it
    assert done.returncode == 130 and done.stderr.endswith("Error: interrupted; nothing half-written was published\n"), done.stderr


def test_ctrl_c_is_one_line(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "deploykit", "export", "resnet18", "--out", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible
    )
    # Interrupt the export itself, not Python's start-up (which a loaded machine can stretch past a fixed sleep):
    # the command has begun once it made its output folder.
    deadline = time.monotonic() + 60
    while not (tmp_path / "resnet18").is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Error: interrupted" in err and "Traceback" not in err
    # whole or nothing: a Ctrl-C that lands after the swap (a loaded machine can delay it) leaves the new export, whole
    assert not [p for p in tmp_path.rglob("*") if ".staging-" in p.name or p.name.startswith(".export-")]
    if (tmp_path / "resnet18" / "manifest.json").is_file():
        folder = ExportFolder(tmp_path / "resnet18")
        assert [folder.verified(name) for name in folder.read().files]
    else:
        assert not list(tmp_path.rglob("*.onnx"))
