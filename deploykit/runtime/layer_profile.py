"""Where an ONNX file's time goes, layer by layer, as ``trtexec --dumpProfile`` and ``benchmark_app -pc`` show it:
onnxruntime's profiler or OpenVINO's performance counters, over timed runs after a warm-up, with the precision each
layer computed in (so an INT8 file that is not faster shows which layers fell back to float)."""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploykit.runtime.ort_runner import create_session
from deploykit.runtime.openvino_runner import compiled_on

WARMUP_RUNS = 3
CONVERSIONS = ("QuantizeLinear", "DequantizeLinear", "Cast", "Reorder", "Convert", "FakeQuantize")
_ORT_TYPES = {"uint8": "int8", "int8": "int8", "float16": "f16", "float": "f32", "bfloat16": "bf16"}


@dataclass(frozen=True)
class LayerTime:
    """One layer (a fused kernel, as the runtime ran it): its median time over the runs and the precision it computed in."""

    name: str
    op: str
    precision: str  # int8, f32, f16, bf16, or "convert" for quantize/dequantize/reorder/cast
    ms: float


@dataclass(frozen=True)
class LayerProfile:
    """Every layer that ran, slowest first, on one runtime at one batch."""

    runtime: str
    file: str
    batch: int
    runs: int
    layers: tuple[LayerTime, ...]

    @property
    def total_ms(self) -> float:
        return sum(layer.ms for layer in self.layers)

    def share(self, layer: LayerTime) -> float:
        return layer.ms / self.total_ms if self.total_ms else 0.0

    def by_precision(self) -> dict[str, tuple[int, float]]:
        """Per precision: how many layers ran in it, and their share of the time."""
        counts: dict[str, list] = defaultdict(lambda: [0, 0.0])
        for layer in self.layers:
            counts[layer.precision][0] += 1
            counts[layer.precision][1] += self.share(layer)
        return {precision: (count, share) for precision, (count, share) in sorted(counts.items(), key=lambda i: -i[1][1])}


def profile_layers(path: Path, runtime: str, x: np.ndarray, runs: int = 20, threads: int | None = None) -> LayerProfile:
    """Run ``x`` through ``path`` on ``runtime`` (ort or openvino) ``runs`` times after a warm-up, with per-layer timing."""
    times = _ort_layers(path, x, runs, threads) if runtime == "ort" else _openvino_layers(path, x, runs, threads)
    layers = tuple(sorted((LayerTime(name, op, precision, float(np.median(ms + [0.0] * (runs - len(ms))))) for (name, op, precision), ms in times.items()), key=lambda layer: -layer.ms))
    return LayerProfile(runtime, path.name, int(x.shape[0]), runs, layers)


def _ort_layers(path: Path, x: np.ndarray, runs: int, threads: int | None) -> dict[tuple[str, str, str], list[float]]:
    with tempfile.TemporaryDirectory(prefix="deploykit-profile-") as work:
        options = {"enable_profiling": True, "profile_file_prefix": str(Path(work) / "ort")}
        session = create_session(path, ["CPUExecutionProvider"], threads, session_options=options)
        name = session.get_inputs()[0].name
        for _ in range(WARMUP_RUNS + runs):
            session.run(None, {name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    cutoff = starts[WARMUP_RUNS] if len(starts) > WARMUP_RUNS else 0
    times: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for event in events:
        if event.get("cat") != "Node" or event["ts"] < cutoff or not event["name"].endswith("_kernel_time"):
            continue
        op = event["args"].get("op_name", "?")
        types = [next(iter(shape)) for shape in event["args"].get("input_type_shape", []) if shape]
        precision = "convert" if op in CONVERSIONS else _ORT_TYPES.get(types[0], types[0]) if types else "f32"
        times[event["name"].removesuffix("_kernel_time"), op, precision].append(event["dur"] / 1e3)
    return times


def _openvino_layers(path: Path, x: np.ndarray, runs: int, threads: int | None) -> dict[tuple[str, str, str], list[float]]:
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": True}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    times: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    with compiled_on(path, "CPU", config) as compiled:
        request = compiled.create_infer_request()
        for index in range(WARMUP_RUNS + runs):
            request.infer({0: x})
            if index < WARMUP_RUNS:
                continue
            for info in request.get_profiling_info():
                if str(info.status).endswith("EXECUTED") and not str(info.status).endswith("NOT_EXECUTED"):
                    precision = "convert" if info.node_type in CONVERSIONS else _openvino_precision(info.exec_type)
                    times[info.node_name, info.node_type, precision].append(info.real_time.total_seconds() * 1e3)
        del request
    return times


def _openvino_precision(exec_type: str) -> str:
    """brgconv_avx512_I8 -> int8, jit_avx512_FP32 -> f32, ..._BF16 -> bf16."""
    kind = exec_type.rsplit("_", 1)[-1].lower()
    return {"i8": "int8", "u8": "int8", "fp32": "f32", "f32": "f32", "bf16": "bf16", "fp16": "f16", "f16": "f16"}.get(kind, kind)
