"""``deploykit serve``: a Triton model repository served on 127.0.0.1 by the bundled CPU tritonserver until Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import DeployKitError
from deploykit.serve.cpu_copy import make_cpu_copy
from deploykit.serve.server import Ports, TritonServer, workdir

DEFAULT_START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Serving:
    """A running server: where it answers, what it serves, and what it left out (with the reason)."""

    server: TritonServer
    models: list[str]
    skipped: dict[str, str]
    threads: int

    @property
    def url(self) -> str:
        return self.server.url

    def wait(self) -> None:
        """Until the server stops by itself (then one line with its first error)."""
        while self.server.alive():
            time.sleep(0.2)
        raise DeployKitError(f"tritonserver stopped: {self.server.first_error()}")


@contextlib.contextmanager
def serving(repo: Path, ports: Ports = Ports(), start_timeout_s: float = DEFAULT_START_TIMEOUT_S) -> Iterator[Serving]:
    """Start tritonserver over a CPU working copy of ``repo``; stop it and remove the copy when the block ends."""
    with workdir() as folder:
        copy = make_cpu_copy(Path(repo), folder / "repository", os.cpu_count() or 1)
        server = TritonServer(folder / "repository", ports, copy.threads, folder)
        try:
            server.start(start_timeout_s)
            yield Serving(server, copy.served, copy.skipped, copy.threads)
        finally:
            server.stop()
