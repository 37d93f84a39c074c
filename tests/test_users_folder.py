"""An export never deletes what it did not write (issue 22, cause 1): through `python -m deploykit` in a subprocess."""

import os
import stat
import subprocess
import sys
from pathlib import Path


def deploykit(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploykit", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=600, preexec_fn=lambda: os.umask(0o022))


def test_a_folder_holding_the_users_files_is_refused_untouched(tmp_path):
    folder = tmp_path / "p" / "squeezenet1_1"
    folder.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    (folder / ".env").write_text("S=1\n")
    (folder / "notes.txt").write_text("n\n")
    (folder / ".venv").mkdir()
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    proc = deploykit("export", "squeezenet1_1", "--input-size", 64, "--out", "p", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("Error: p/squeezenet1_1 holds files deploykit did not write (.env, .git, .venv, notes.txt)")
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    assert (folder / ".env").read_text() == "S=1\n" and stat.S_IMODE(folder.stat().st_mode) == 0o755


def test_a_linked_output_folder_stays_a_link(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "cifar_resnet20").symlink_to(tmp_path / "elsewhere")
    for size in (16, 24):  # a first export into the link's target, then a second one replacing it
        proc = deploykit("export", "cifar_resnet20", "--input-size", size, "--out", "out", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "out" / "cifar_resnet20").is_symlink()
        assert (tmp_path / "elsewhere" / "model.onnx").is_file() and (tmp_path / "elsewhere" / "manifest.json").is_file()
    assert stat.S_IMODE((tmp_path / "elsewhere").stat().st_mode) == 0o755
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == ["cifar_resnet20"]
