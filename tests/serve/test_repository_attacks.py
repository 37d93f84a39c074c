"""What ends up in a Triton repository when it is written where users put them (a volume of its own, a read-only
mount), from folders with names Triton cannot take, republished with fewer files, or written over a foreign folder."""

import json
import shutil
import time

import pytest

from deploykit.serve.cpu_copy import make_cpu_copy
from deploykit.serve.repository import read_record
from tests.cli import run_cli
from tests.mounts import tmpfs


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """cifar_resnet20 (random init) with a dynamic batch and its INT8 file, and a copy of the folder without INT8."""
    out = tmp_path_factory.mktemp("repo_attacks")
    result, _ = run_cli("export", "cifar_resnet20", "--input-size", 16, 16, "--dynamic-batch", "--int8", "--calib-size", 8, "--no-timing", "--out", out)
    assert result.exit_code == 0, result.output
    return out / "cifar_resnet20"


def test_a_repository_that_is_its_own_mount_point_is_written_and_republished(exported, tmp_path):
    with tmpfs(tmp_path / "repo", "size=16m") as repo:
        for _ in range(2):
            result, text = run_cli("triton", repo, exported, "--device", "cpu")
            assert result.exit_code == 0, result.output
        assert sorted(p.name for p in repo.iterdir() if not p.name.startswith(".")) == ["cifar_resnet20", "cifar_resnet20_int8"]
        assert not list(repo.glob(".staging-*"))


def test_a_read_only_repository_is_one_line(exported, tmp_path):
    with tmpfs(tmp_path / "ro", "size=1m,ro") as mount:
        result, text = run_cli("triton", mount / "repo", exported, "--device", "cpu")
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert text.startswith(f"Error: cannot write the repository {mount / 'repo'}: Read-only file system"), text


def test_a_repository_on_a_filesystem_that_makes_no_files_is_one_line(exported):
    result, text = run_cli("triton", "/proc/deploykit-repo", exported, "--device", "cpu")
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert text.startswith("Error: cannot write the repository /proc/deploykit-repo: No such file or directory"), text


def test_folder_names_triton_cannot_take_stay_apart(exported, tmp_path):
    for name in ("模型", "数据"):
        shutil.copytree(exported, tmp_path / name)
    result, text = run_cli("triton", tmp_path / "repo", tmp_path / "模型", tmp_path / "数据", "--device", "cpu")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "repo").iterdir() if not p.name.startswith("."))
    assert len(names) == 4 and len({n.removesuffix("_int8") for n in names}) == 2, names
    sources = {read_record(tmp_path / "repo" / n)["source"].split("/")[-2] for n in names}
    assert sources == {"模型", "数据"}


def test_a_republish_without_int8_removes_the_int8_model_it_made(exported, tmp_path):
    folder = tmp_path / "cifar_resnet20"
    shutil.copytree(exported, folder)
    result, _ = run_cli("triton", tmp_path / "repo", folder, "--device", "cpu")
    assert result.exit_code == 0 and (tmp_path / "repo" / "cifar_resnet20_int8").is_dir()
    manifest = json.loads((folder / "manifest.json").read_text())  # the folder as an export without --int8 leaves it
    del manifest["files"]["model.int8.onnx"], manifest["int8"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "model.int8.onnx").unlink()
    result, text = run_cli("triton", tmp_path / "repo", folder, "--device", "cpu")
    assert result.exit_code == 0 and "removed cifar_resnet20_int8: the export it was made from no longer makes it" in text, text
    assert sorted(p.name for p in (tmp_path / "repo").iterdir() if not p.name.startswith(".")) == ["cifar_resnet20"]


def test_export_triton_refuses_a_foreign_model_folder_before_exporting(tmp_path):
    (tmp_path / "repo" / "cifar_resnet20").mkdir(parents=True)
    (tmp_path / "repo" / "cifar_resnet20" / "config.pbtxt").write_text('name: "cifar_resnet20"\n')
    started = time.monotonic()
    result, text = run_cli("export", "cifar_resnet20", "--dynamic-batch", "--no-timing", "--out", tmp_path / "out", "--triton", tmp_path / "repo", "--triton-device", "cpu")
    assert result.exit_code == 2 and "cifar_resnet20 was not written by deploykit" in text, text
    assert not (tmp_path / "out").exists() and time.monotonic() - started < 15


def test_a_file_replaced_in_the_repository_after_serving_started_is_not_what_is_served(exported, tmp_path):
    result, _ = run_cli("triton", tmp_path / "repo", exported, "--device", "cpu")
    assert result.exit_code == 0, result.output
    make_cpu_copy(tmp_path / "repo", tmp_path / "copy", 2)
    served = tmp_path / "copy" / "cifar_resnet20" / "1" / "model.onnx"
    before = served.read_bytes()
    (tmp_path / "repo" / "cifar_resnet20" / "1" / "model.onnx").write_bytes(b"replaced while serving")
    assert not served.is_symlink() and served.read_bytes() == before
