"""Runs an ONNX file (FP32 or Q/DQ INT8) with OpenVINO on the CPU: what Intel CPU and edge users deploy with.

OpenVINO's CPU plugin installs an alternate signal stack (``sigaltstack``) for each compiled model and, when the model is
released, restores the one it replaced. Released out of order, the thread is left with a signal stack that is already
unmapped, and the next signal with a handler (Ctrl-C, SIGCHLD, SIGUSR1) kills the process with SIGSEGV and no
traceback (docs/openvino-sigaltstack.md). So the OpenVINO objects of every runner are held on one stack here and
released last-loaded first, whatever order the runners are closed in.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from deploykit.errors import DeployKitError, first_line
from deploykit.runtime.base import InputMetadata, Runner


def import_openvino():
    """The openvino module, or one line saying whether it is missing or broken."""
    from deploykit.runtime.availability import openvino_problem

    problem = openvino_problem()
    if problem:
        raise DeployKitError(problem)
    import openvino

    return openvino


class _Loaded:
    """One runner's OpenVINO objects (core, compiled model, request), kept until every later one is released."""

    def __init__(self, *objects) -> None:
        self.objects = list(objects)
        self.closed = False


_LOADED: list[_Loaded] = []
_LOADED_LOCK = threading.Lock()


def _hold(*objects) -> _Loaded:
    loaded = _Loaded(*objects)
    with _LOADED_LOCK:
        _LOADED.append(loaded)
    return loaded


def _release(loaded: _Loaded) -> None:
    """Mark ``loaded`` closed, then release from the top of the stack down while the top is closed."""
    with _LOADED_LOCK:
        loaded.closed = True
        while _LOADED and _LOADED[-1].closed:
            top = _LOADED.pop()
            while top.objects:
                top.objects.pop()  # request, then compiled model, then core: the reverse of their creation


@atexit.register
def _release_all() -> None:
    """Runners never closed are released at exit, last-loaded first, before the interpreter tears modules down."""
    for loaded in reversed(list(_LOADED)):
        _release(loaded)


@contextlib.contextmanager
def compiled_on(path: Path, device: str, config: dict) -> Iterator:
    """OpenVINO's compiled model of ``path``, released in stack order when the block ends (for code that needs the
    compiled model itself, such as an AsyncInferQueue)."""
    ov = import_openvino()
    core = ov.Core()
    try:
        compiled = core.compile_model(core.read_model(str(path)), device, config)
    except RuntimeError as exc:
        raise DeployKitError(f"OpenVINO cannot load {path} on {device}: {first_line(exc)}") from exc
    loaded = _hold(core, compiled)
    del core
    try:
        yield compiled
    finally:
        del compiled
        _release(loaded)


class OpenVinoRunner(Runner):
    """``hint`` is OpenVINO's PERFORMANCE_HINT: LATENCY (batch 1 serving) or THROUGHPUT.

    ``precision`` is the INFERENCE_PRECISION_HINT for float layers: f32 by default, since OpenVINO
    otherwise runs them in bf16 on CPUs that have it and FP32 parity would be lost silently.
    """

    def __init__(self, path: str | Path, device: str = "CPU", threads: int | None = None, hint: str = "LATENCY", precision: str = "f32", name: str = "openvino") -> None:
        super().__init__(name)
        self.precision = precision
        self.path = Path(path)
        self.device = device
        self.threads = threads
        self.hint = hint
        self.compiled = None
        self.request = None
        self._loaded: _Loaded | None = None

    def load_impl(self) -> None:
        ov = import_openvino()
        if not self.path.is_file():
            raise DeployKitError(f"model file {self.path} does not exist")
        core = ov.Core()
        config = {"PERFORMANCE_HINT": self.hint, "INFERENCE_PRECISION_HINT": self.precision}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            self.compiled = core.compile_model(core.read_model(str(self.path)), self.device, config)
        except RuntimeError as exc:
            raise DeployKitError(f"OpenVINO cannot load {self.path} on {self.device}: {first_line(exc)}") from exc
        self.request = self.compiled.create_infer_request()
        self._loaded = _hold(core, self.compiled, self.request)

    def input_metadata(self) -> InputMetadata:
        port = self.compiled.input(0)
        shape = tuple(None if dim.is_dynamic else dim.get_length() for dim in port.get_partial_shape())
        return InputMetadata(port.get_any_name(), shape, np.dtype(np.float32))

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        return self.request.infer({0: batch})[self.compiled.output(0)].copy()

    def close_impl(self) -> None:
        self.request = None
        self.compiled = None
        if self._loaded is not None:
            _release(self._loaded)
            self._loaded = None
