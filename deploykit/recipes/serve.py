"""``deploykit serve``: a Triton model repository served on 127.0.0.1 by the bundled CPU tritonserver until Ctrl-C; and
``deploykit bench --server``: load on a served model, measured."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from deploykit.bench.machine import machine_info
from deploykit.data import DEFAULT_CALIBRATION_DIR
from deploykit.data.images import find_images, load_images
from deploykit.errors import DeployKitError
from deploykit.io import atomic_write_json, check_writable_file
from deploykit.progress import stage
from deploykit.recipes.configs import ServerBenchConfig
from deploykit.serve.client import RemoteModel
from deploykit.serve.cpu_copy import make_cpu_copy
from deploykit.serve.load import Configuration, LoadLevel, measure_level, original_config, reload_with
from deploykit.serve.server import START_TIMEOUT_S, Ports, TritonServer, require_free, workdir

MAX_DISTINCT_REQUESTS = 16


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
def serving(repo: Path, ports: Ports = Ports(), start_timeout_s: float = START_TIMEOUT_S) -> Iterator[Serving]:
    """Start tritonserver over a CPU working copy of ``repo``; stop it and remove the copy when the block ends."""
    require_free(ports)  # before any copy is made
    with workdir() as folder:
        copy = make_cpu_copy(Path(repo), folder / "repository", os.cpu_count() or 1)
        server = TritonServer(folder / "repository", ports, copy.threads, folder)
        try:
            server.start(start_timeout_s)
            yield Serving(server, copy.served, copy.skipped, copy.threads)
        finally:
            server.stop()


def serve_until_stopped(repo: Path, ports: Ports, start_timeout_s: float, on_ready: Callable[[Serving], None]) -> None:
    """Serve until Ctrl-C, SIGTERM or SIGHUP (a closed terminal): a clean stop; or until the server stops by itself (then
    one line)."""

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    # SIGINT is set too: a background job of a script inherits it ignored.
    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        with serving(repo, ports, start_timeout_s) as served:
            on_ready(served)
            with contextlib.suppress(KeyboardInterrupt):
                served.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@dataclass
class LoadRun:
    """A concurrency sweep against one served model: a level per configuration and concurrency."""

    url: str
    model: str
    precision: str
    config: ServerBenchConfig
    levels: list[LoadLevel]
    skipped: list[str] = field(default_factory=list)  # "configuration: clients 8, 16" where --max-latency stopped a sweep

    def rows(self) -> list[dict]:
        """The levels as rows ``deploykit report`` reads (engine ``triton``)."""
        return [{"model": self.model, "engine": "triton", "device": "server", "precision": self.precision, **level.as_dict()} for level in self.levels]

    def write(self, path: Path) -> None:
        atomic_write_json(path, {"machine": machine_info().as_dict(), "server": self.url, "config": asdict(self.config), "results": self.rows(), "skipped": self.skipped})


def measure_server(url: str, model_name: str, config: ServerBenchConfig, json_path: Path | None = None) -> LoadRun:
    """Sweep client concurrency against ``model_name`` at ``url``, for each configuration asked (else as served)."""
    check_writable_file(json_path)
    model = RemoteModel.fetch(url, model_name)
    if model.max_batch_size and config.batch_size > model.max_batch_size:
        raise DeployKitError(f"--batch {config.batch_size} is above {model_name}'s max_batch_size {model.max_batch_size} on {url}; use --batch {model.max_batch_size} or less")
    inputs = request_batches(model, config.batch_size)
    configurations = [Configuration(i, d) for i in (config.instances or (None,)) for d in (config.queue_delays_us or (None,))]
    original = original_config(model) if configurations != [Configuration()] else {}
    run = LoadRun(url, model_name, model.precision, config, [])
    try:
        for configuration in configurations:
            if configuration != Configuration():
                reload_with(model, configuration, original)
            with stage(f"{model_name}: {configuration.label}", total=len(config.concurrency), unit="levels") as advance:
                for index, concurrency in enumerate(config.concurrency):
                    level = measure_level(model, inputs, concurrency, configuration.label, config.warmup_s, config.duration_s, config.timeout_s)
                    run.levels.append(level)
                    advance(1)
                    if config.max_latency_ms is not None and level.p99_ms > config.max_latency_ms and config.concurrency[index + 1 :]:
                        rest = ", ".join(map(str, config.concurrency[index + 1 :]))
                        run.skipped.append(
                            f"{configuration.label}: {rest} clients not measured (p99 {level.p99_ms:.1f} ms at {concurrency} passed --max-latency {config.max_latency_ms:g} ms)"
                        )
                        break
    finally:
        if original:
            reload_with(model, Configuration(), original)  # the repository's own config again
    if json_path:
        run.write(json_path)
    return run


def request_batches(model: RemoteModel, batch_size: int) -> list[np.ndarray]:
    """Requests of real photos (the bundled calibration set), preprocessed as the model's config says."""
    photos = load_images(find_images(DEFAULT_CALIBRATION_DIR)[: MAX_DISTINCT_REQUESTS * batch_size], model.preprocess)
    count = max(1, len(photos) // batch_size)
    return [np.resize(photos, (count * batch_size, *photos.shape[1:]))[i * batch_size : (i + 1) * batch_size] for i in range(count)]
