"""`deploykit bench`: latency percentiles, throughput, memory and accuracy of one model on one backend.

A model is given as a registry name, ``NAME:CHECKPOINT`` or an export folder. Backends that run
ONNX (ort, openvino, trt) use the folder's model.onnx / model.int8.onnx, exported on the fly into
``out`` when a name is given. Agreement with the FP32 PyTorch reference is measured every time;
accuracy when a labelled folder is given.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploykit.bench.accuracy import topk_accuracy
from deploykit.bench.latency import measure_latency
from deploykit.compress.quantize import QuantizeConfig
from deploykit.data import DEFAULT_HOLDOUT_DIR, Preprocess, load_labelled_folder
from deploykit.errors import DeployKitError
from deploykit.io import sha256_file
from deploykit.manifest import INT8_NAME, ONNX_NAME, ExportFolder
from deploykit.models.pretrained import find_weights, is_weights_tag
from deploykit.parity import compare_logits, parity_inputs, run_all
from deploykit.recipes.export import ExportConfig, export
from deploykit.recipes.ref import ModelRef, parse_model_ref
from deploykit.runtime import OrtRunner, Runner, TorchRunner

ORT_PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                 "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}


@dataclass(frozen=True)
class BenchConfig:
    """Options of ``deploykit bench``; each maps to one command-line option."""

    engine: str = "torch"
    device: str = "cpu"
    precision: str = "fp32"
    batches: tuple[int, ...] = (1,)
    threads: int | None = None
    runs: int = 50
    warmup: int = 10
    warmup_seconds: float | None = None
    data: Path | None = None
    data_limit: int = 500
    out: Path = Path("deploykit-out")
    ort_provider: str | None = None
    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    workspace_gb: float = 4.0


@dataclass
class Subject:
    """What is benchmarked: the model reference, and the export folder holding its ONNX files once exported."""

    ref: ModelRef
    folder: Path | None = None

    @property
    def spec(self):
        return self.ref.spec


def resolve_subject(text: str) -> Subject:
    ref = parse_model_ref(text)
    if ref.spec is None:
        raise DeployKitError(f"{text} is an ONNX file with no manifest beside it; bench it from its export folder, "
                             "or give NAME, NAME:CHECKPOINT or NAME:IMAGENET1K_V1")
    folder = ref.onnx_path.parent if ref.manifest is not None and ref.onnx_path is not None else None
    return Subject(ref, folder)


def run_benchmark(text: str, config: BenchConfig) -> list[dict]:
    """Benchmark one model at every batch size of ``config``; returns one result row per batch."""
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    subject = resolve_subject(text)
    spec = subject.spec
    size = _input_size(subject)
    published = find_weights(spec.name, subject.ref.weights) if is_weights_tag(subject.ref.weights) else None
    preprocess = Preprocess.for_model(spec, size, published)
    reference_model = subject.ref.build()
    if config.data is not None:
        images, labels, _ = load_labelled_folder(config.data, preprocess, config.data_limit)
    else:
        images, labels = parity_inputs(preprocess, random_count=0, image_dir=DEFAULT_HOLDOUT_DIR, image_count=32), None
    with TorchRunner(reference_model, (3, size, size)) as reference:
        reference_logits = run_all(reference, images, batch_size=16)
    runner = _make_runner(subject, config, size)
    rows = []
    with runner:
        fixed = runner.input_metadata().shape[0]
        logits = run_all(runner, images)
        agreement = compare_logits(reference_logits, logits)
        for batch in config.batches:
            if fixed is not None and batch != fixed:
                raise DeployKitError(f"{runner.name} takes a fixed batch of {fixed}; export with --dynamic-batch to bench batch {batch}")
            x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
            stats = measure_latency(lambda: runner.infer(x), batch=batch, warmup=config.warmup, runs=config.runs,
                                    warmup_seconds=config.warmup_seconds)
            row = {
                "model": spec.name, "subject": subject.ref.text, "engine": config.engine, "device": config.device,
                "precision": config.precision, "threads": config.threads or torch.get_num_threads(), "input": size,
                **stats.as_dict(), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "agreement_top1": agreement.top1_agreement, "agreement_min_cosine": agreement.min_cosine,
                "random_weights": subject.ref.random_weights,
            }
            if config.device == "cuda":
                row["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            if labels is not None:
                row["accuracy_top1"] = topk_accuracy(logits, labels, 1)
                row["accuracy_top5"] = topk_accuracy(logits, labels, 5)
                row["accuracy_images"] = len(labels)
            rows.append(row)
    return rows


def _input_size(subject: Subject) -> int:
    if subject.folder is not None:
        return ExportFolder(subject.folder).read().input.size
    return subject.spec.input_size


def _make_runner(subject: Subject, config: BenchConfig, size: int) -> Runner:
    if config.engine == "torch":
        if config.precision == "int8":
            raise DeployKitError("the torch engine runs fp32 or fp16; INT8 runs on ort, openvino or trt")
        model = subject.ref.build()
        return TorchRunner(model, (3, size, size), device=config.device, precision=config.precision,
                           channels_last=config.channels_last, compile=config.compile, cuda_graphs=config.cuda_graphs,
                           name=f"torch-{config.device}-{config.precision}")
    onnx_path = _onnx_for(subject, config)
    if config.engine == "ort":
        provider = config.ort_provider or config.device
        if provider not in ORT_PROVIDERS:
            raise DeployKitError(f"unknown ONNX Runtime provider {provider!r}; choose cpu, cuda or tensorrt")
        return OrtRunner(onnx_path, providers=ORT_PROVIDERS[provider], threads=config.threads, name=f"ort-{provider}-{config.precision}")
    if config.engine == "openvino":
        from deploykit.runtime.openvino_runner import OpenVinoRunner

        return OpenVinoRunner(onnx_path, threads=config.threads, name=f"openvino-{config.precision}")
    if config.engine == "trt":
        from deploykit.export.tensorrt import EngineConfig, build_engine
        from deploykit.runtime.trt_engine import check_engine_compatible
        from deploykit.runtime.trt_runner import TensorRTRunner

        engine_path = onnx_path.with_suffix(".engine")
        try:
            if check_engine_compatible(engine_path)["onnx_sha256"] != sha256_file(onnx_path):
                raise DeployKitError(f"{engine_path} was built from another version of {onnx_path.name}")
        except DeployKitError:  # missing, stale, or built by another TensorRT/GPU: the ONNX is at hand, so rebuild
            build_engine(onnx_path, engine_path, EngineConfig(fp16=config.precision == "fp16", max_batch=max(config.batches),
                                                              workspace_gb=config.workspace_gb,
                                                              timing_cache=onnx_path.parent / "timing.cache"))
        return TensorRTRunner(engine_path, name=f"trt-{config.precision}")
    raise DeployKitError(f"unknown engine {config.engine!r}; choose torch, ort, trt or openvino")


def _onnx_for(subject: Subject, config: BenchConfig) -> Path:
    """The ONNX file for the requested precision, exported (with a dynamic batch) when not at hand."""
    if config.engine == "trt":
        from deploykit.runtime.trt_engine import gpu_identity, import_tensorrt

        import_tensorrt()
        gpu_identity()
    name = INT8_NAME if config.precision == "int8" else ONNX_NAME
    if subject.folder is not None:
        path = subject.folder / name
        if not path.is_file():
            raise DeployKitError(f"{subject.folder} has no {name}; export it with `deploykit export {subject.spec.name}"
                                 f"{' --int8' if config.precision == 'int8' else ''} --dynamic-batch`")
        return path
    int8 = QuantizeConfig(target="trt" if config.engine == "trt" else "cpu") if config.precision == "int8" else None
    result = export(ExportConfig(subject.ref.text, out=config.out, dynamic_batch=True, int8=int8))
    subject.folder = result.folder
    return result.folder / name
