"""`deploykit bench FOLDER --all`: every file of an export on every runtime here, in one interleaved run, as
``yolo benchmark`` does for its formats: the PyTorch model, each ONNX file (FP32, FP16, INT8) on onnxruntime and
OpenVINO, and OpenVINO's bf16 where the CPU has it. Per combination: the file's size, its latency at batch 1
(median of the rounds' p50, with their range), its throughput at batch 1 and at the best batch the file takes,
top-1 on ``--data`` or agreement with the PyTorch FP32 model on the held-out photos export's gate used, and the
check the file passed. The runtime export would choose is named as export names it (a winner beyond noise, or a tie)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploykit.bench.accuracy import ImageSet, stream_logits, topk_accuracy
from deploykit.bench.machine import machine_info
from deploykit.bench.runtimes import Combination, Decision, RuntimeTimings, file_runners, interleaved_rounds
from deploykit.errors import DeployKitError
from deploykit.io import atomic_write_json
from deploykit.compress.configs import Int8Record
from deploykit.manifest import FP16_NAME, INT8_NAME, ONNX_NAME, ExportFolder, Manifest
from deploykit.parity import FP16_TOLERANCES, ParityRecords, compare_logits
from deploykit.progress import stage
from deploykit.recipes.subject import resolve_subject, subject_preprocess
from deploykit.recipes.configs import BenchConfig

TORCH_FILE = "(PyTorch model)"
BATCHES_TRIED = (1, 8, 32)  # a dynamic-batch export's throughput is timed at these, unless --batch names others (1 always)


@dataclass(frozen=True)
class Entry:
    """One file on one runtime at one precision, with everything ``--all`` measured of it."""

    timing: Combination  # at batch 1, with its rounds
    size_bytes: int | None  # None for the PyTorch model
    check: str  # what the file passed: "parity PASS", "gate PASS", ...
    throughput: dict[int, float]  # batch -> images per second (from the median p50)
    p90_ms: float
    p99_ms: float
    top1: float | None
    agreement: float | None  # top-1 agreement with the PyTorch FP32 model (or the FP32 file without one)
    slower_than_fp32: str | None  # beyond noise, on its own runtime: how much, round by round

    @property
    def best_batch(self) -> int:
        return max(self.throughput, key=self.throughput.get)


@dataclass
class AllFiles:
    """``bench FOLDER --all``: every entry, the images the quality figures were measured on, and the choice."""

    folder: Path
    model: str
    entries: list[Entry]
    images: ImageSet
    decision: Decision | None
    not_timed: list[str] = field(default_factory=list)
    random_weights: bool = False

    def rows(self) -> list[dict]:
        """Rows as ``bench --json`` writes them (one per entry and batch), which ``report`` reads."""
        rows = []
        for entry in self.entries:
            for batch, throughput in entry.throughput.items():
                rows.append(
                    {
                        "model": self.model,
                        "engine": entry.timing.runtime,
                        "device": "cpu",
                        "precision": entry.timing.precision,
                        "batch": batch,
                        "file": entry.timing.file,
                        "p50_ms": round(batch * 1e3 / throughput, 4),
                        "p90_ms": entry.p90_ms,
                        "p99_ms": entry.p99_ms,
                        "throughput": throughput,
                        "size_bytes": entry.size_bytes,
                        "check": entry.check,
                        "agreement_top1": entry.agreement,
                        "accuracy_top1": entry.top1,
                        "measured_on": self.images.describe(),
                        "rounds_ms": list(entry.timing.rounds_ms) if batch == min(entry.throughput) else None,
                        "chosen_by": "all",
                    }
                )
        return rows

    def write(self, path: Path) -> None:
        atomic_write_json(
            path,
            {
                "machine": machine_info().as_dict(),
                "folder": str(self.folder),
                "results": self.rows(),
                "decision": self.decision.describe() if self.decision else None,
                "not_timed": self.not_timed,
            },
        )


def bench_all(text: str, config: BenchConfig, json_path: Path | None = None) -> AllFiles:
    """Time and check every file of the export folder ``text`` on every runtime here (module docstring)."""
    subject = resolve_subject(text, allow_bare_onnx=True)
    manifest = subject.ref.manifest
    if manifest is None or subject.folder is None:
        raise DeployKitError(f"--all benches every file of an export folder, and {text} is not one; export it first (`deploykit export NAME --int8 --dynamic-batch`)")
    folder = ExportFolder(subject.folder)
    checks = _checks(manifest)
    files = {name: precision for name, precision in ((ONNX_NAME, "fp32"), (FP16_NAME, "fp16"), (INT8_NAME, "int8")) if (folder.path / name).is_file() and name in checks}
    size = subject.input_size()
    fixed = manifest.input.batch.size
    batches = (fixed,) if fixed else tuple(sorted({1, *(config.batches or BATCHES_TRIED)}))
    subject.check_batches(batches)
    for name in files:
        folder.verified(name)
    runners, not_timed = file_runners(folder.path, files, bf16=True, threads=config.threads)
    if subject.ref.has_torch:
        import torch

        from deploykit.runtime import TorchRunner

        if config.threads:
            torch.set_num_threads(config.threads)
        runners = {(TORCH_FILE, "torch", "fp32"): TorchRunner(subject.ref.build(), (3, size, size)), **runners}
    else:
        not_timed.append("PyTorch: this export was made from an ONNX file, so there is no PyTorch model to time")
    preprocess = subject_preprocess(subject, size, config.mean, config.std)
    try:
        for runner in runners.values():
            runner.load()
        with stage("running every file on every runtime over the images"):
            measured = stream_logits(list(runners.values()), config.data, preprocess, manifest.model.num_classes, config.data_limit)
        rounds = {}
        for batch in batches:
            with stage(f"timing every combination at batch {batch}, interleaved"):
                rounds[batch] = interleaved_rounds(runners, (batch, 3, size, size))
    finally:
        for runner in runners.values():
            runner.close()
    logits = dict(zip(runners, measured.logits))
    reference = logits[next(iter(runners))]  # PyTorch FP32, else the FP32 file on onnxruntime
    bf16 = logits.get((ONNX_NAME, "openvino", "bf16"))
    if bf16 is not None:  # OpenVINO's bf16 on the FP32 file, judged by FP16's tolerances as export judges it
        checks["bf16"] = f"FP16 tolerances {'PASS' if compare_logits(reference, bf16, FP16_TOLERANCES).passed else 'FAIL'}"
    first = batches[0]  # 1, or a fixed-batch export's batch
    timings = RuntimeTimings(
        first, len(rounds[first][next(iter(runners))]), tuple(Combination.from_rounds(key, "FAIL" not in _check(checks, key), rounds[first][key]) for key in runners)
    )
    entries = [
        Entry(
            timing,
            (folder.path / key[0]).stat().st_size if key[0] != TORCH_FILE else None,
            _check(checks, key),
            {batch: round(batch * 1e3 / _median(rounds[batch][key], "p50_ms"), 1) for batch in batches},
            _median(rounds[first][key], "p90_ms"),
            _median(rounds[first][key], "p99_ms"),
            topk_accuracy(logits[key], measured.labels, 1) if measured.labels is not None else None,
            float(np.mean(logits[key].argmax(1) == reference.argmax(1))),
            _slower(timings, key),
        )
        for key, timing in zip(runners, timings.combinations)
    ]
    result = AllFiles(folder.path, manifest.model.name, entries, measured.images, timings.decision, not_timed, subject.ref.random_weights)
    if json_path is not None:
        result.write(json_path)
    return result


def _slower(timings: RuntimeTimings, key: tuple[str, str, str]) -> str | None:
    pair = timings.slower_than_fp32(key[0], key[1]) if key[2] != "fp32" and key[1] != "torch" else None
    return pair[0].paired(pair[1]) if pair else None


def _checks(manifest: Manifest) -> dict[str, str]:
    """file -> what it passed at export, from the manifest (a file without a record is not benched)."""
    parity = manifest.section(ParityRecords) or ParityRecords({})
    checks = {name: "parity PASS" if passed else "parity FAIL" for name, passed in parity.passed.items() if name in (ONNX_NAME, FP16_NAME)}
    checks.setdefault(ONNX_NAME, "the reference (your ONNX file)")
    int8 = manifest.section(Int8Record)
    if int8 is not None:
        checks[INT8_NAME] = ("gate PASS" if int8.passed else "gate FAIL") if int8.gate_applied else "gate not applied (random weights)"
    return checks


def _check(checks: dict[str, str], key: tuple[str, str, str]) -> str:
    if key[0] == TORCH_FILE:
        return "the reference"
    return checks["bf16"] if key[2] == "bf16" else checks[key[0]]


def _median(stats: list, field: str) -> float:
    return round(float(np.median([getattr(s, field) for s in stats])), 3)
