"""A ``deploykit bench`` run over several models: its rows, and the JSON, CSV and Markdown files written from them."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from deploykit.bench.machine import machine_info
from deploykit.bench.report import to_markdown
from deploykit.io import atomic_write_bytes, atomic_write_json
from deploykit.progress import live, stage
from deploykit.recipes.bench import run_benchmark
from deploykit.recipes.configs import BenchConfig, ResultFiles
from deploykit.runtime.layer_profile import LayerProfile, profile_layers


@dataclass
class BenchRun:
    """Every model's rows, one per batch size, with the configuration they were measured with."""

    config: BenchConfig
    rows: list[dict] = field(default_factory=list)
    profiles: list[LayerProfile] = field(default_factory=list)  # --profile: each timed file, layer by layer

    @property
    def timed_files(self) -> list[tuple[str, str]]:
        """(model, file) for each ONNX file or engine that was timed, once each."""
        return list(dict.fromkeys((row["model"], row["file"]) for row in self.rows if row["file"]))

    @property
    def random_weights(self) -> bool:
        return any(row["random_weights"] for row in self.rows)

    def write(self, files: ResultFiles) -> None:
        """The rows as JSON (with the machine and configuration), CSV and Markdown, each where asked."""
        payload = {"machine": machine_info().as_dict(), "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.config).items()}, "results": self.rows}
        if self.profiles:
            payload["profiles"] = [asdict(profile) for profile in self.profiles]
        if files.json:
            atomic_write_json(files.json, payload)
        if files.csv:
            atomic_write_bytes(files.csv, _csv(self.rows).encode())
        if files.md:
            atomic_write_bytes(files.md, to_markdown(self.rows).encode())


def run_benchmarks(models: list[str], config: BenchConfig, files: ResultFiles = ResultFiles()) -> BenchRun:
    """Benchmark each model in turn, then write the result files asked for (checked writable before the first model)."""
    files.check_writable()
    run = BenchRun(config)
    for model in models:
        on = "the runtime its export chose by timing" if config.engine == "auto" else f"{config.engine} ({config.device}, {config.precision})"
        with live(), stage(f"benchmarking {model} on {on}"):
            rows = run_benchmark(model, config)
            run.rows += rows
            if config.profile:
                with stage(f"timing each layer of {rows[0]['file']} on {config.engine}"):
                    x = np.random.default_rng(0).standard_normal((rows[0]["batch"], 3, rows[0]["input"], rows[0]["input"]), dtype=np.float32)
                    run.profiles.append(profile_layers(Path(rows[0]["file"]), config.engine, x, threads=config.threads))
    run.write(files)
    return run


def _csv(rows: list[dict]) -> str:
    columns = sorted({key for row in rows for key in row}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 999)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
