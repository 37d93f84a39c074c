"""The calibration cache: activation statistics and each range method's ranges file, kept beside an export by the
hashes of the calibration images and of the FP32 file; a damaged entry is computed again, never trusted."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import onnx

from deploykit.batch import Batch
from deploykit.compress.calibrate import ROBUST_METHODS, ActivationStats, classifier_inputs, collect_stats, write_ort_ranges
from deploykit.compress.configs import Int8Settings
from deploykit.compress.ort_quantization import quantize_static_qdq, quiet_ort
from deploykit.progress import stage
from deploykit.runtime.base import padded_batches

RANGES_VERSION = "r2"  # in the cached ranges' file names: ranges from an older rule are computed again, not reused


def cache_files(cache_dir: Path, data_hash: str, model_hash: str, methods: tuple[str, ...], layout: str) -> tuple[Path, dict[str, Path]]:
    """The statistics file and each method's ranges file for this calibration set, FP32 file and layout."""
    key = f"{data_hash[:16]}-{model_hash[:16]}"
    return (cache_dir / f"stats-{key}.npz", {method: cache_dir / f"{method}-{layout}-{RANGES_VERSION}-{key}.json" for method in methods})


def cached_statistics(
    pre_proto: onnx.ModelProto, pre_path: Path, samples: np.ndarray, settings: Int8Settings, stats_path: Path, ranges: dict[str, Path]
) -> tuple[ActivationStats, bool]:
    """Activation statistics, and each method's ranges file for onnxruntime, from the cache when it has them intact;
    whether everything came from the cache."""
    stats = _cached_stats(stats_path)
    reused = stats is not None
    if stats is None:
        with stage("calibrating: activation statistics", total=len(samples), unit="images") as advance:
            stats = collect_stats(pre_proto, samples, advance)
        stats.save(stats_path)
    for method, path in ranges.items():
        if path.is_file() and _readable_json(path):
            continue
        reused = False
        if method in ROBUST_METHODS:
            write_ort_ranges(stats.ranges(method, classifier_inputs(pre_proto)), path)
        else:  # onnxruntime's histogram calibrators (entropy, percentile) write the ranges themselves
            scratch = path.with_name(f".{path.stem}.onnx")
            with stage(f"calibrating: onnxruntime's {method} histograms", total=len(samples), unit="images") as advance:
                reader = CalibrationReader(samples, Batch.of_graph(pre_proto).size, advance)
                quiet_ort(quantize_static_qdq, pre_path, scratch, reader, settings.with_method(method), [], path)
            scratch.unlink(missing_ok=True)
    return stats, reused


def _readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


def _cached_stats(path: Path) -> ActivationStats | None:
    """The cached statistics, or None when there are none or the file is damaged (then it is recomputed, not trusted)."""
    if not path.is_file():
        return None
    try:
        stats = ActivationStats.load(path)
        if stats.sample_min:
            return stats
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass
    for damaged in path.parent.glob(f"*{path.stem.removeprefix('stats-')}*"):  # its ranges files too
        damaged.unlink(missing_ok=True)
    return None


class CalibrationReader:
    """onnxruntime's CalibrationDataReader over an array; ``advance`` is told how many samples each batch held."""

    def __init__(self, samples: np.ndarray, batch: int | None, advance=lambda n: None) -> None:
        self.batches = list(padded_batches(samples, batch or 8))
        self.index = 0
        self.advance = advance

    def get_next(self) -> dict | None:
        if self.index >= len(self.batches):
            return None
        batch, count = self.batches[self.index]
        self.index += 1
        self.advance(count)
        return {"input": batch}

    def rewind(self) -> None:
        self.index = 0
