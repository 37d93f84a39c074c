"""What the user named is resolved once: a checkpoint file is opened (read and hashed) once per command, counted by a
Python audit hook on every file open in a real ``deploykit`` process."""

import os
import shutil
import subprocess
import sys

import pytest

COUNT_OPENS = """
import os, sys
target = os.path.realpath(sys.argv[1])
opened = []

def count(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) and os.path.realpath(os.fsdecode(args[0])) == target:
        opened.append(args[1])

sys.addaudithook(count)
from deploykit.cli import main
sys.argv = ["deploykit", *sys.argv[2:]]
try:
    main()
finally:
    print(f"opened {len(opened)} times", file=sys.stderr)
"""


def deploykit_counting_opens(checkpoint, *args, cwd):
    result = subprocess.run(
        [sys.executable, "-c", COUNT_OPENS, str(checkpoint), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stderr.rsplit("opened ", 1)[1].split()[0])


@pytest.mark.parametrize(
    "command",
    [["export", "{model}", "--input-size", "{size}", "--int8", "--calib", "digits", "--holdout", "digits"], ["bench", "{model}", "--engine", "ort", "--runs", "2", "--warmup", "0"]],
)
def test_a_checkpoint_is_read_once_per_command(command, trained_digits, tmp_path):
    checkpoint = tmp_path / "weights.pth"
    shutil.copy(trained_digits.weights, checkpoint)
    model = f"{trained_digits.name}:{checkpoint}"
    args = [part.format(model=model, size=trained_digits.size) for part in command]
    assert deploykit_counting_opens(checkpoint, *args, cwd=tmp_path) == 1
