"""`deploykit bench`: latency percentiles, throughput, memory and accuracy of one model on one backend.

A model is given as a registry name, ``NAME:CHECKPOINT`` or an export folder. Backends that run
ONNX (ort, openvino, trt) use the folder's model.onnx / model.int8.onnx, exported on the fly into
``out`` when a name is given. Agreement with the FP32 PyTorch reference is measured every time;
accuracy when a labelled folder is given.
"""

from __future__ import annotations

from functools import partial
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np

from deploykit.bench.accuracy import nonfinite_images, nonfinite_note, stream_logits, topk_accuracy
from deploykit.bench.latency import measure_latency
from deploykit.bench.runtimes import RuntimeTimings
from deploykit.bench.throughput import stream_throughput
from deploykit.bench.memory import check_input_memory, peak_rss_mb, reset_peak_rss
from deploykit.compress.configs import Int8Record, QuantizeConfig
from deploykit.errors import DeployKitError
from deploykit.io import sha256_file
from deploykit.manifest import FP16_NAME, INT8_NAME, ONNX_NAME, ExportFolder
from deploykit.choices import CPU_RUNTIMES
from deploykit.parity import compare_logits
from deploykit.progress import report
from deploykit.recipes.export import export
from deploykit.recipes.configs import ExportConfig
from deploykit.recipes.configs import BenchConfig
from deploykit.recipes.ref import warn_random_weights
from deploykit.recipes.subject import Subject, resolve_subject, subject_preprocess
from deploykit.runtime.availability import ORT_PROVIDERS, require_backend
from deploykit.runtime import OrtRunner, Runner, TorchRunner

BENCH_EXPORTS = ".bench-exports"  # OUT/.bench-exports/<key>/NAME: what bench exported for itself


MAX_TIMED_RUNS = 10_000_000  # --duration: runs are bounded by the seconds


def run_benchmark(text: str, config: BenchConfig) -> list[dict]:
    """Benchmark one model at every batch size of ``config``; returns one result row per batch."""
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    if config.engine != "auto":
        require_backend(config.engine, config.device, config.ort_provider)
    subject = resolve_subject(text, allow_bare_onnx=True)
    if config.engine == "auto":
        config = fastest_combination(subject, config)
        require_backend(config.engine, config.device, config.ort_provider)
    if config.profile and (config.engine not in ("ort", "openvino") or config.device != "cpu"):
        raise DeployKitError(f"--profile times the layers of an ONNX file on ort or openvino (CPU), not {config.engine} on {config.device}")
    if config.streams > 1 and (config.engine not in ("ort", "openvino") or config.device != "cpu"):
        raise DeployKitError(f"--streams runs requests in parallel on the CPU with ort or openvino, not {config.engine} on {config.device}")
    size = subject.input_size(config.input_size)
    subject.check_batches(config.batches)
    for batch in config.batches:  # before any model is built or exported
        check_input_memory((batch, 3, size, size), f"--batch {batch}")
    preprocess = subject_preprocess(subject, size, config.mean, config.std)
    num_classes = subject.num_outputs() if subject.ref.manifest or subject.foreign_onnx else subject.spec.num_classes
    warn_random_weights(subject.ref)  # once the options are known good, before the slow steps
    runner = make_runner(subject, config, size)  # may export first: the memory peak below starts after it
    rows = []
    with runner:
        reference = None if subject.foreign_onnx else TorchRunner(subject.ref.build(), (3, size, size))  # FP32, to agree with
        with reference or nullcontext():
            measured = stream_logits([runner, *([reference] if reference else [])], config.data, preprocess, num_classes, config.data_limit)
        logits, labels = measured.logits[0], measured.labels
        if measured.images.images < measured.images.total:
            report(f"--data-limit {config.data_limit}: {measured.images.describe()}")
        if measured.class_rule:
            report(f"{config.data}: {measured.images.images} labelled images, {measured.class_rule}")
        agreement = compare_logits(measured.logits[1], logits) if reference else None
        nonfinite = nonfinite_images(logits)
        if nonfinite:
            report(f"warning: {nonfinite_note(nonfinite, len(logits))}", style="bold red")
        for batch in config.batches:  # a batch the file cannot take was refused before any work (check_batches)
            x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
            reset_peak_rss()
            if config.no_data_transfers and hasattr(runner, "data_transfers"):
                runner.data_transfers = False  # agreement above was measured with the copies; the timing goes without
            stats = measure_latency(
                partial(runner.infer, x),
                batch=batch,
                warmup=config.warmup,
                warmup_seconds=config.warmup_seconds,
                **({"runs": MAX_TIMED_RUNS, "max_seconds": config.duration_s, "min_runs": 1} if config.duration_s else {"runs": config.runs}),
            )
            split = getattr(runner, "last_timings", None)
            row = {
                "model": subject.spec.name if subject.spec else Path(text).name,
                "subject": subject.ref.text,
                "engine": config.engine,
                "device": config.device,
                "precision": config.precision,
                "threads": config.threads or torch.get_num_threads(),
                "input": size,
                **stats.as_dict(),
                "peak_rss_mb": peak_rss_mb(),
                "agreement_top1": agreement.top1_agreement if agreement else None,
                "measured_on": measured.images.describe(),
                "agreement_min_cosine": agreement.min_cosine if agreement else None,
                "random_weights": subject.ref.random_weights,
                "preprocessing": "options" if subject.foreign_onnx else "manifest",
                "file": str(subject.timed_file) if subject.timed_file else None,
                "chosen_by": "auto" if config.auto else "options",
                "streams": 1,
            }
            if split is not None:  # trtexec-style split of the last timed run
                row |= {"h2d_ms": round(split.h2d_ms, 4), "compute_ms": round(split.compute_ms, 4), "d2h_ms": round(split.d2h_ms, 4), "data_transfers": not config.no_data_transfers}
            if config.device == "cuda":
                row["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            if labels is not None:
                row["classes"] = measured.class_rule
                row["accuracy_top1"] = topk_accuracy(logits, labels, 1)
                row["accuracy_top5"] = topk_accuracy(logits, labels, 5)
                row["accuracy_images"] = len(labels)
                row["nonfinite_images"] = nonfinite
            rows.append(row)
            if config.streams > 1:
                parallel = stream_throughput(subject.timed_file, config.engine, x, config.streams, max(config.runs, config.streams))
                rows.append({**row, **parallel.as_dict(), "streams": config.streams, "peak_rss_mb": peak_rss_mb()})
    return rows


def fastest_combination(subject: Subject, config: BenchConfig) -> BenchConfig:
    """``--engine auto``: the runtime and precision the export's manifest chose (the fastest beyond noise, or a tie settled)."""
    folder = subject.folder
    if folder is None and not subject.foreign_onnx:
        folder = _matching_export(subject, config, ONNX_NAME)
    manifest = ExportFolder(folder).read() if folder is not None else None
    timings = manifest.section(RuntimeTimings) if manifest is not None else None
    decision = timings.decision if timings else None
    if decision is None:
        name = subject.spec.name if subject.spec else "NAME"
        raise DeployKitError(
            f"--engine auto runs the fastest runtime an export measured, and {folder or subject.ref.text} has "
            f"no such measurement; export first (`deploykit export {name} --int8 --dynamic-batch`), then "
            f"bench its folder with --engine auto, or name an engine"
        )
    if decision.tie:
        report(f"--engine auto: {folder}'s manifest measured a {decision.describe()}: timing that")
    else:
        report(f"--engine auto: {folder}'s manifest names {decision.describe()}, of its CPU runtimes that passed their check: timing that")
    subject.folder = folder
    fastest = decision.chosen
    return replace(config, engine=fastest.runtime, precision=fastest.precision, device="cpu", auto=True)


def make_runner(subject: Subject, config: BenchConfig, size: int, doing: str = "timing") -> Runner:
    """The runner for ``config.engine`` and precision: the PyTorch model, or the matching ONNX file (exported when not at
    hand), named in a line that says what is ``doing`` with it."""
    if config.engine == "torch":
        if config.precision == "int8":
            raise DeployKitError("the torch engine runs fp32 or fp16; INT8 runs on ort, openvino or trt")
        model = subject.ref.build()
        return TorchRunner(
            model,
            (3, size, size),
            device=config.device,
            precision=config.precision,
            channels_last=config.channels_last,
            compile=config.compile,
            cuda_graphs=config.cuda_graphs,
            name=f"torch-{config.device}-{config.precision}",
        )
    onnx_path = subject.timed_file = _onnx_for(subject, config)
    report(f"{doing} {onnx_path}")
    for warning in (cpu_target_warning(onnx_path, config.engine), slower_file_warning(onnx_path, config.engine)):
        if warning:
            report(f"warning: {warning}", style="bold red")
    if config.engine == "ort":
        provider = config.ort_provider or config.device
        return OrtRunner(onnx_path, providers=ORT_PROVIDERS[provider], threads=config.threads, name=f"ort-{provider}-{config.precision}")
    if config.engine == "openvino":
        from deploykit.runtime.openvino_runner import OpenVinoRunner

        return OpenVinoRunner(onnx_path, threads=config.threads, precision="bf16" if config.precision == "bf16" else "f32", name=f"openvino-{config.precision}")
    if config.engine == "trt":
        from deploykit.export.tensorrt import EngineConfig, build_engine
        from deploykit.runtime.trt_engine import check_engine_compatible
        from deploykit.runtime.trt_runner import TensorRTRunner

        engine_path = subject.timed_file = onnx_path.with_suffix(".engine")
        try:
            if check_engine_compatible(engine_path).onnx_sha256 != sha256_file(onnx_path):
                raise DeployKitError(f"{engine_path} was built from another version of {onnx_path.name}")
        except DeployKitError:  # missing, stale, or built by another TensorRT/GPU: the ONNX is at hand, so rebuild
            build_engine(
                onnx_path,
                engine_path,
                EngineConfig(fp16=config.precision == "fp16", max_batch=max(config.batches), workspace_gb=config.workspace_gb, timing_cache=onnx_path.parent / "timing.cache"),
            )
        return TensorRTRunner(engine_path, name=f"trt-{config.precision}")
    raise DeployKitError(f"unknown engine {config.engine!r}; choose torch, ort, trt or openvino")


def cpu_target_warning(onnx_path: Path, runtime: str) -> str | None:
    """One line where an export's INT8 file, made for another kind of CPU (its manifest says which), is known to lose
    accuracy on this one with ``runtime``; None otherwise."""
    folder = ExportFolder(onnx_path.parent)
    if onnx_path.name != INT8_NAME or not folder.exists():
        return None
    record = folder.read().section(Int8Record)
    target = record.cpu_target if record else None
    return target.mismatch_warning(onnx_path.name, runtime) if target else None


def slower_file_warning(onnx_path: Path, runtime: str) -> str | None:
    """One line where the export measured this INT8 or FP16 file slower than its FP32 file on ``runtime``, beyond noise."""
    folder = ExportFolder(onnx_path.parent)
    if onnx_path.name == ONNX_NAME or not folder.exists():
        return None
    timings = folder.read().section(RuntimeTimings)
    pair = timings.slower_than_fp32(onnx_path.name, runtime) if timings else None
    if pair is None:
        return None
    return f"{onnx_path.name} ran slower than {ONNX_NAME} on {CPU_RUNTIMES[runtime]} when exported ({pair[0].paired(pair[1])}, batch {timings.batch}): deploy the FP32 file on this CPU"


def _onnx_for(subject: Subject, config: BenchConfig) -> Path:
    """The ONNX file for the requested precision, exported (with a dynamic batch) when not at hand."""
    if config.engine == "trt":
        from deploykit.runtime.trt_engine import gpu_identity, require_tensorrt

        require_tensorrt()
        gpu_identity()
    name = {"int8": INT8_NAME, "fp16": FP16_NAME}.get(config.precision, ONNX_NAME)
    if subject.foreign_onnx:
        if config.precision != "fp32":
            raise DeployKitError(f"{subject.ref.text} is one ONNX file and runs as it is; drop --precision {config.precision}")
        return subject.ref.onnx_path
    if subject.folder is not None:
        path = subject.folder / name
        if not path.is_file():
            flag = {"int8": " --int8", "fp16": " --fp16"}.get(config.precision, "")
            raise DeployKitError(f"{subject.folder} has no {name}; export it with `deploykit export {subject.spec.name}{flag} --dynamic-batch`")
        return ExportFolder(subject.folder).verified(name)
    folder = _matching_export(subject, config, name)
    if folder is None:  # exported into bench's own folder: another command's files are never replaced
        quantize = QuantizeConfig(layout=_int8_layout(config)) if config.precision == "int8" else None
        size = subject.ref.input_size(config.input_size)
        out = config.out / BENCH_EXPORTS / _export_key(subject, size)
        report(f"no export of {subject.ref.text} with {name} at hand: exporting it (dynamic batch) into {out / subject.spec.name}")
        result = export(
            ExportConfig(out=out, dynamic_batch=True, quantize=quantize, fp16=config.precision == "fp16", input_size=size, time_runtimes=False), subject.ref
        )  # bench times the one file asked for
        folder = result.folder
    subject.folder = folder
    return folder / name


def _matching_export(subject: Subject, config: BenchConfig, name: str) -> Path | None:
    """An earlier export of this very model (name, weights, the input size asked for, dynamic batch) that holds ``name``."""
    spec = subject.spec
    candidates = [config.out / spec.name, *sorted((config.out / BENCH_EXPORTS).glob(f"*/{spec.name}"))]
    for candidate in candidates:
        folder = ExportFolder(candidate)
        if not folder.exists() or not (candidate / name).is_file():
            continue
        manifest = folder.read()
        int8 = manifest.section(Int8Record)
        if (
            manifest.model.name == spec.name
            and manifest.model.weights.matches(subject.ref.weights)
            and manifest.input.size == subject.ref.input_size(config.input_size)
            and manifest.input.batch.dynamic
            and (name != INT8_NAME or (int8 is not None and int8.layout == _int8_layout(config)))
        ):
            return candidate
    return None


def _export_key(subject: Subject, size: int) -> str:
    """A folder name for bench's own export of this model, weights and input size."""
    import hashlib

    return hashlib.sha256(f"{subject.spec.name}|{subject.ref.weights.identity}|{size}".encode()).hexdigest()[:12]


def _int8_layout(config: BenchConfig) -> str:
    """The INT8 layout of the runtime being timed: TensorRT's placement for trt, onnxruntime's otherwise."""
    return "trt" if config.engine == "trt" else "cpu"
