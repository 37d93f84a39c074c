"""The installed wheel works outside the repository: package data, console script, declared dependencies."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A new venv holding deploykit installed from a freshly built wheel (not editable).

    Its dependencies come from this test environment's site-packages, put on the new venv's path
    by a .pth file, so the test needs no network; `pip install --no-index` still resolves the wheel's
    declared requirements against them and fails if one is undeclared here or missing there.
    """
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "deploykit", source / "deploykit", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist"), str(source)], check=True, capture_output=True)
    wheel = next((root / "dist").glob("deploykit-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([*pip, "--python", str(python), "install", "--no-index", "-q", str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    return venv


pytestmark = pytest.mark.xdist_group("wheel")


def without_pythonpath() -> dict:
    """This environment minus PYTHONPATH, so only the wheel's venv decides what `import deploykit` finds."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_wheel_ships_the_default_image_sets(wheel_venv):
    code = "import deploykit, deploykit.data as d; print(deploykit.__file__); print(len(list(d.DEFAULT_CALIBRATION_DIR.glob('*.jpg'))), len(list(d.DEFAULT_HOLDOUT_DIR.glob('*.jpg'))))"
    lines = subprocess.run([wheel_venv / "bin" / "python", "-c", code], capture_output=True, text=True, check=True, cwd=wheel_venv, env=without_pythonpath()).stdout.split("\n")
    assert lines[0].startswith(str(wheel_venv)), f"imported {lines[0]}, not the wheel"
    assert lines[1] == "70 48"


def test_installed_wheel_exports_int8_from_an_unrelated_folder(wheel_venv, tmp_path):
    proc = subprocess.run(
        [wheel_venv / "bin" / "deploykit", "export", "mobilenet_v2", "--int8", "--input-size", "96", "96"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=without_pythonpath(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "deploykit-out" / "mobilenet_v2" / "model.int8.onnx").is_file()
    assert "Traceback" not in proc.stderr
