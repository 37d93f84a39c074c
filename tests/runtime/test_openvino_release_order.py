"""OpenVINO's CPU plugin swaps the thread's alternate signal stack per compiled model; released out of order it leaves an
unmapped one, and the next handled signal kills the process with SIGSEGV and no traceback. Each sequence runs in a real
process of its own and must exit cleanly (docs/openvino-sigaltstack.md)."""

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("openvino", reason="OpenVINO is an optional extra: pip install 'deploykit[openvino]'")

LOAD_TWO = """
import os, signal
from pathlib import Path
import numpy as np, onnx
from deploykit.export.onnx import torch_to_onnx
from deploykit.recipes.ref import build_model
from deploykit.runtime.openvino_runner import OpenVinoRunner
folder = Path({folder!r})
model = build_model("cifar_resnet20").eval()
onnx.save(torch_to_onnx(model, (1, 3, 32, 32)), folder / "a.onnx")
onnx.save(torch_to_onnx(model, (1, 3, 32, 32)), folder / "b.onnx")
x = np.zeros((1, 3, 32, 32), np.float32)
"""

SEQUENCES = {
    "closed in creation order": """
a = OpenVinoRunner(folder / "a.onnx").load(); b = OpenVinoRunner(folder / "b.onnx").load()
a.infer(x); b.infer(x); a.close(); b.close()
""",
    "closed in reverse order": """
a = OpenVinoRunner(folder / "a.onnx").load(); b = OpenVinoRunner(folder / "b.onnx").load()
a.infer(x); b.infer(x); b.close(); a.close()
""",
    "time_runtimes in-process": """
from deploykit.bench.runtimes import time_runtimes
import shutil; shutil.copy(folder / "a.onnx", folder / "model.onnx"); shutil.copy(folder / "b.onnx", folder / "model.int8.onnx")
timings = time_runtimes(folder, {"model.onnx": ("fp32", True), "model.int8.onnx": ("int8", True)}, (1, 3, 32, 32))
assert len(timings.combinations) == 4, timings
""",
    "one runner left open at exit": """
a = OpenVinoRunner(folder / "a.onnx").load(); b = OpenVinoRunner(folder / "b.onnx").load()
a.infer(x); b.infer(x); a.close()
""",
}
SIGNAL = """
signal.signal(signal.SIGUSR1, lambda *_: None)
os.kill(os.getpid(), signal.SIGUSR1)
print("survived the signal")
"""


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_a_handled_signal_after_runners_are_released_does_not_crash(sequence, tmp_path):
    script = textwrap.dedent(LOAD_TWO.format(folder=str(tmp_path))) + SEQUENCES[sequence] + SIGNAL
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "survived the signal" in done.stdout, (done.returncode, done.stderr[-2000:])


def test_a_child_that_exits_while_the_interpreter_finalises_does_not_crash_it(tmp_path):
    """Last round's other symptom (a crash in sklearn's teardown under gdb) is where the same forced SIGSEGV lands when a
    handled SIGCHLD (DataLoader installs one) arrives during finalisation: here, while an atexit hook runs."""
    script = (
        textwrap.dedent(LOAD_TWO.format(folder=str(tmp_path)))
        + SEQUENCES["closed in creation order"]
        + """
import atexit, subprocess, time
signal.signal(signal.SIGCHLD, lambda *_: None)
child = subprocess.Popen(["sleep", "0.5"])
atexit.register(time.sleep, 1.0)
print("finalising")
"""
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "finalising" in done.stdout, (done.returncode, done.stderr[-2000:])
