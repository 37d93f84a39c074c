"""Issue 34's smaller items, each as a user meets it: what a command says, and when it says it."""

import os
import warnings

import pytest

from deploykit.data import DEFAULT_CALIBRATION_DIR, find_images
from deploykit.data.images import load_images
from deploykit.choices import IMAGENET_MEAN, IMAGENET_STD
from deploykit.data.preprocess import Preprocess
from tests.cli import run_cli


def test_eval_reads_digits_as_bench_does_and_says_evaluating_not_timing(tmp_path):
    """The earlier export bench made at 32x32 is not taken for --input-size 16: bench's own export is per size."""
    for size in (32, 16):
        result, text = run_cli("eval", "cifar_resnet20", "--data", "digits", "--input-size", size, "--limit", 40, "--out", tmp_path)
        assert result.exit_code == 0, result.output
        assert "digits: the digits' own labels 0-9" in text and " 40 " in text and "timing" not in text
    refused, text = run_cli("eval", "cifar_resnet20", "--data", "digits", "--held-out")
    assert refused.exit_code == 2 and "digits is already its test split" in text


def test_more_workers_than_cores_is_one_note_not_pytorchs_warning_twice(capsys):
    cores = len(os.sched_getaffinity(0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_images(find_images(DEFAULT_CALIBRATION_DIR)[:40], Preprocess.default(16, IMAGENET_MEAN, IMAGENET_STD), workers=cores + 1)
        load_images(find_images(DEFAULT_CALIBRATION_DIR)[:40], Preprocess.default(16, IMAGENET_MEAN, IMAGENET_STD), workers=cores + 1)
    assert not [w for w in caught if "DataLoader will create" in str(w.message)], [str(w.message) for w in caught]
    said = capsys.readouterr()
    assert (said.out + said.err).count(f"{cores + 1} DataLoader workers on {cores} cores") <= 1


def test_another_spelling_is_named_and_random_weights_are_warned_before_the_work(tmp_path):
    result, text = run_cli("export", "CIFAR-ResNet20", "--input-size", 16, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "CIFAR-ResNet20 is read as cifar_resnet20" in text
    assert text.index("warning: random-init weights") < text.index("parity vs PyTorch")
    assert not list(tmp_path.glob(".*.lock")), list(tmp_path.iterdir())  # no empty lock file left behind


@pytest.mark.parametrize("typo, meant", [("cifar_resnt20", "cifar_resnet20"), ("cifar_resnet20/model.int9.onnx", "model.onnx")])
def test_a_mistyped_path_gets_a_did_you_mean(typo, meant, tmp_path):
    (tmp_path / "cifar_resnet20").mkdir()
    (tmp_path / "cifar_resnet20" / "model.onnx").write_bytes(b"")  # the names are what is suggested: nothing is read
    result, text = run_cli("bench", tmp_path / typo, "--engine", "ort")
    assert result.exit_code == 2 and "does not exist; did you mean" in text and meant in text.split("did you mean")[1], text
