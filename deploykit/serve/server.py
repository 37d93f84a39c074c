"""The ``tritonserver`` that ``nvidia-pytriton`` bundles, run on 127.0.0.1 with its Python backend.

The bundled server has no onnxruntime, OpenVINO or TensorRT backend, so ``deploykit serve`` serves a repository through a
working copy of it (a temporary folder, removed on exit): each model keeps its config but for the backend, which becomes
``python`` running ``python_model.py`` with the runtime the config names (onnxruntime, or OpenVINO), on the CPU. The
repository itself is only read.

The Python backend's stub is an isolated interpreter (it ignores PYTHONPATH) that finds its prefix through the first
``python3`` on PATH. So the server gets this interpreter's folder first on PATH, and the served model puts this
process's ``sys.path`` first and checks that it imports the same deploykit and numpy (``SERVE_PYTHON``): the model
runs in the environment of the ``serve`` command that wrote it, activated or not, or fails to load saying why.

tritonserver dies with the process that started it; its working copy and shared-memory regions (named after the copy)
are removed by the next ``serve`` when a killed run left them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import DeployKitError
from deploykit.processes import dying_with_this_process, owned_temp_dir, remove_abandoned

HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0  # every model loaded within this (``serve --start-timeout``)
STOP_WAIT_S = 20.0
_ERROR_LINE = re.compile(r"^E\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] (.*)$")
_LOAD_FAILURE = re.compile(r"^failed to load '([^']+)' version \d+: (?:\w+: )?(.*)$")
_CPU_ONLY_NOTE = "CudaDriverHelper has not been initialized"
SERVE_PYTHON = "DEPLOYKIT_SERVE_PYTHON"  # what the served model checks it runs with: this process's sys.path and modules
WORKDIR_PREFIX = "deploykit-serve-"
SHM_DIR = Path("/dev/shm")


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001

    @classmethod
    def free(cls) -> Ports:
        """Two ports free on 127.0.0.1 now, the kernel's choice (for tests and benchmarks that run side by side)."""
        with socket.socket() as http, socket.socket() as grpc:
            http.bind((HOST, 0))
            grpc.bind((HOST, 0))
            return cls(http.getsockname()[1], grpc.getsockname()[1])


@dataclass(frozen=True)
class Installation:
    """Where the bundled server, its Python backend and the stub for this Python are."""

    binary: Path
    python_backend: Path
    stub: Path
    libraries: Path

    @classmethod
    def find(cls) -> Installation:
        import importlib.util

        try:
            spec = importlib.util.find_spec("pytriton")
        except (ImportError, ValueError):  # a broken or half-removed install
            spec = None
        if spec is None or spec.origin is None:
            raise DeployKitError("deploykit serve needs the tritonserver bundled with nvidia-pytriton: pip install 'deploykit[serve]'")
        root = Path(spec.origin).parent / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        found = cls(
            root / "bin" / "tritonserver",
            root / "backends" / "python",
            root / "python_backend_stubs" / version / "triton_python_backend_stub",
            root.parent.parent / "nvidia_pytriton.libs",
        )
        for path in (found.binary, found.python_backend, found.stub):
            if not path.exists():
                raise DeployKitError(f"nvidia-pytriton's {path.name} is missing ({path}); for Python {version} reinstall it: pip install --force-reinstall 'deploykit[serve]'")
        return found


def require_free(ports: Ports) -> None:
    """Each port free on 127.0.0.1, or one line naming the one in use."""
    if ports.http == ports.grpc:
        raise DeployKitError(f"--http-port and --grpc-port are both {ports.http}; give them different ports")
    for option, port in (("--http-port", ports.http), ("--grpc-port", ports.grpc)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: a closed connection's TIME_WAIT is no user
            try:
                probe.bind((HOST, port))
            except OSError as exc:
                raise DeployKitError(f"port {port} on {HOST} is in use ({exc.strerror}); choose another with {option}") from exc


class TritonServer:
    """One tritonserver process over a model repository; ``start`` returns once every model is ready."""

    def __init__(self, repository: Path, ports: Ports, threads: int, workdir: Path) -> None:
        self.repository = repository
        self.ports = ports
        self.threads = threads
        self.workdir = workdir
        self.log_path = workdir / "tritonserver.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.ports.http}"

    def start(self, timeout_s: float) -> None:
        installation = Installation.find()
        interpreter = require_stub_python()
        require_free(self.ports)
        backends = self.workdir / "backends"
        (backends / "python").mkdir(parents=True)
        for source in (*installation.python_backend.iterdir(), installation.stub):
            if source.is_file():
                shutil.copy2(source, backends / "python" / source.name)
        command = [
            str(installation.binary),
            "--model-repository",
            str(self.repository),
            "--backend-directory",
            str(backends),
            "--http-address",
            HOST,
            "--http-port",
            str(self.ports.http),
            "--grpc-address",
            HOST,
            "--grpc-port",
            str(self.ports.grpc),
            "--allow-metrics",
            "false",
            "--strict-readiness",
            "true",
            "--exit-on-error",
            "true",
            "--model-control-mode",
            "explicit",
            "--load-model",
            "*",
            "--exit-timeout-secs",
            str(int(STOP_WAIT_S / 2)),
            f"--backend-config=python,shm-region-prefix-name={self.workdir.name}_",
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                dying_with_this_process(command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._environment(installation, interpreter),
                start_new_session=True,
            )
        self._wait_ready(timeout_s)

    def _environment(self, installation: Installation, interpreter: Path) -> dict[str, str]:
        libraries = [str(installation.libraries), sysconfig.get_config_var("LIBDIR") or "", os.environ.get("LD_LIBRARY_PATH", "")]
        import numpy

        import deploykit

        python = {"prefix": sys.prefix, "path": [entry for entry in sys.path if entry and Path(entry).is_dir()], "modules": {"deploykit": deploykit.__file__, "numpy": numpy.__file__}}
        return {
            **os.environ,
            "LD_LIBRARY_PATH": os.pathsep.join(p for p in libraries if p),
            "PATH": os.pathsep.join([str(interpreter.parent), os.environ.get("PATH", "")]),
            SERVE_PYTHON: json.dumps(python),
            "OMP_NUM_THREADS": str(self.threads),
        }

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DeployKitError(f"tritonserver stopped while starting: {self.first_error()}")
            if self.ready():
                return
            time.sleep(0.1)
        why = self.first_error()  # before it is stopped, which would be all it says then
        self.stop()
        raise DeployKitError(f"tritonserver was not ready within {timeout_s:g} s ({why}); raise --start-timeout")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def first_error(self) -> str:
        """What went wrong, on one line: the first model that failed to load and why, else the first error tritonserver
        logged (but the note every CPU-only machine gets about CUDA), else its log's last line."""
        code = self.process.poll() if self.process is not None else None
        if code is not None and code < 0:
            return f"it was killed by {signal.Signals(-code).name}"
        lines = self.log_path.read_text(errors="replace").splitlines() if self.log_path.is_file() else []
        errors = [match.group(1).strip().strip('"') for match in map(_ERROR_LINE.match, lines) if match]
        errors = [text.split("\\n\\nAt:", 1)[0].replace("\\n", " ") for text in errors if not text.startswith(_CPU_ONLY_NOTE)]
        for text in errors:
            failed = _LOAD_FAILURE.match(text)
            if failed:
                return f"Triton could not load model {failed.group(1)}: {failed.group(2)}"[:600]
        if errors:
            return errors[0][:600]
        return lines[-1][:600] if lines else "it logged nothing"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGINT (Triton's own graceful shutdown), then SIGKILL to its process group after ``STOP_WAIT_S``."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(STOP_WAIT_S)
                except subprocess.TimeoutExpired:
                    pass
            os.killpg(self.process.pid, signal.SIGKILL)  # the Python stubs too, should any outlive the server
        self.process.wait()


def require_stub_python() -> Path:
    """The ``python3`` the stub will find first on PATH (this interpreter's), and the shared libpython it links; one line
    naming what is missing, before the server starts."""
    interpreter = Path(sys.executable).parent / "python3"
    if not interpreter.exists():
        raise DeployKitError(
            f"Triton's Python backend runs served models with the python3 beside this Python ({interpreter}), "
            "which does not exist; run deploykit serve from a virtual environment or a Python that has one"
        )
    library = Path(sysconfig.get_config_var("LIBDIR") or "") / (sysconfig.get_config_var("INSTSONAME") or "")
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not library.is_file():
        raise DeployKitError(
            f"this Python ({sys.executable}) has no shared libpython, which Triton's Python backend stub links "
            "against; serve from a Python built with --enable-shared (python.org, Debian and pyenv with "
            "PYTHON_CONFIGURE_OPTS=--enable-shared are)"
        )
    return interpreter


def _remove_shared_memory(folder: Path) -> None:
    for region in SHM_DIR.glob(f"{folder.name}_*"):
        with contextlib.suppress(OSError):
            region.unlink()


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    """A temporary folder for the working repository, backend and log, removed afterwards with the server's shared-memory
    regions; those of runs that were killed are removed first."""
    remove_abandoned(WORKDIR_PREFIX, _remove_shared_memory)
    with owned_temp_dir(WORKDIR_PREFIX) as path:
        try:
            yield path
        finally:
            _remove_shared_memory(path)
