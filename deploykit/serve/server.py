"""The ``tritonserver`` that ``nvidia-pytriton`` bundles, run on 127.0.0.1 with its Python backend.

The bundled server has no onnxruntime, OpenVINO or TensorRT backend, so ``deploykit serve`` serves a repository through a
working copy of it (a temporary folder, removed on exit): each model keeps its config but for the backend, which becomes
``python`` running ``python_model.py`` with the runtime the config names (onnxruntime, or OpenVINO), on the CPU. The
repository itself is only read.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import DeployKitError

HOST = "127.0.0.1"
STOP_WAIT_S = 20.0
_ERROR_LINE = re.compile(r"^E\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] (.*)$")
_LOAD_FAILURE = re.compile(r"^failed to load '([^']+)' version \d+: (?:\w+: )?(.*)$")
_CPU_ONLY_NOTE = "CudaDriverHelper has not been initialized"


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
        found = cls(root / "bin" / "tritonserver", root / "backends" / "python",
                    root / "python_backend_stubs" / version / "triton_python_backend_stub", root.parent.parent / "nvidia_pytriton.libs")
        for path in (found.binary, found.python_backend, found.stub):
            if not path.exists():
                raise DeployKitError(f"nvidia-pytriton's {path.name} is missing ({path}); for Python {version} reinstall it: "
                                     "pip install --force-reinstall 'deploykit[serve]'")
        return found


def require_free(ports: Ports) -> None:
    """Each port free on 127.0.0.1, or one line naming the one in use."""
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
        require_free(self.ports)
        backends = self.workdir / "backends"
        (backends / "python").mkdir(parents=True)
        for source in (*installation.python_backend.iterdir(), installation.stub):
            if source.is_file():
                shutil.copy2(source, backends / "python" / source.name)
        command = [str(installation.binary), "--model-repository", str(self.repository), "--backend-directory", str(backends),
                   "--http-address", HOST, "--http-port", str(self.ports.http), "--grpc-address", HOST,
                   "--grpc-port", str(self.ports.grpc), "--allow-metrics", "false", "--strict-readiness", "true",
                   "--exit-on-error", "true", "--model-control-mode", "explicit", "--load-model", "*",
                   "--exit-timeout-secs", str(int(STOP_WAIT_S / 2))]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self._environment(installation), start_new_session=True)
        self._wait_ready(timeout_s)

    def _environment(self, installation: Installation) -> dict[str, str]:
        libraries = [str(installation.libraries), sysconfig.get_config_var("LIBDIR") or "", os.environ.get("LD_LIBRARY_PATH", "")]
        python_path = [entry for entry in sys.path if entry and Path(entry).is_dir()]
        return {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(p for p in libraries if p),
                "PYTHONPATH": os.pathsep.join(python_path), "OMP_NUM_THREADS": str(self.threads)}

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DeployKitError(f"tritonserver stopped while starting: {self.first_error()}")
            if self.ready():
                return
            time.sleep(0.1)
        self.stop()
        raise DeployKitError(f"tritonserver was not ready within {timeout_s:g} s ({self.first_error()}); raise --start-timeout")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def first_error(self) -> str:
        """What went wrong, on one line: the first model that failed to load and why, else the first error tritonserver
        logged (but the note every CPU-only machine gets about CUDA), else its log's last line."""
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


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    """A temporary folder for the working repository, backend and log, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="deploykit-serve-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
