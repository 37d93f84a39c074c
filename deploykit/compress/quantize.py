"""INT8 post-training quantization: calibrated, explicit Q/DQ ONNX via onnxruntime.quantization.

The fast path on CPU is ``quant_pre_process`` (shape inference + graph optimisation, so BatchNorm
and friends are folded before Q/DQ nodes go in), per-channel symmetric int8 weights and asymmetric
uint8 activations (the U8S8 kernels of VNNI CPUs; ``reduce_range`` on CPUs without VNNI, where
U8S8 can saturate). For TensorRT both are symmetric int8, as its explicit quantization requires.

After quantizing, INT8 is compared with FP32 on held-out images; below the agreement threshold the
most sensitive layers (largest jump in activation error across the layer) are kept in FP32, one
at a time, until it passes or the fallback budget is spent.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import logging
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from deploykit.data import DEFAULT_CALIBRATION_DIR, DEFAULT_HOLDOUT_DIR, Preprocess
from deploykit.data.calibration import calibration_hash, load_samples
from deploykit.errors import DeployKitError
from deploykit.io import sha256_file
from deploykit.parity import ParityReport, Tolerances, compare_logits, run_all
from deploykit.runtime.base import padded_batches
from deploykit.runtime.ort_runner import OrtRunner, run_with_intermediates

METHODS = ("minmax", "entropy", "percentile")
TARGETS = ("cpu", "trt")
WEIGHTED_OPS = {"Conv", "Gemm", "MatMul", "ConvTranspose"}
HOLDOUT_LIMIT = 256


@dataclass(frozen=True)
class QuantizeConfig:
    """Options of ``deploykit export --int8``; each maps to one command-line option."""

    calib: Path = DEFAULT_CALIBRATION_DIR
    calib_size: int = 64
    method: str = "minmax"
    per_channel: bool = True
    exclude: tuple[str, ...] = ()
    target: str = "cpu"
    min_agreement: float = 0.99
    holdout: Path = DEFAULT_HOLDOUT_DIR
    max_fallback_layers: int = 10


@dataclass(frozen=True)
class KeptLayer:
    """A layer left in FP32 by the accuracy fallback, and why."""

    node: str
    output: str
    error_jump: float


@dataclass
class QuantizeResult:
    path: Path
    agreement: ParityReport
    kept_fp32: list[KeptLayer]
    excluded: list[str]
    calibration: dict
    settings: dict
    qdq_nodes: int = 0
    notes: list[str] = field(default_factory=list)

    def manifest_entry(self) -> dict:
        return {
            "settings": self.settings, "calibration": self.calibration, "excluded_by_user": self.excluded,
            "kept_fp32_by_fallback": [asdict(k) for k in self.kept_fp32], "qdq_nodes": self.qdq_nodes,
            "agreement_vs_fp32": self.agreement.as_dict(), "notes": self.notes,
        }


def has_vnni() -> bool:
    """Whether this CPU has VNNI int8 dot products (AVX512-VNNI or AVX-VNNI)."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.is_file() else ""
    return "avx512_vnni" in flags or "avx_vnni" in flags


def load_quantization_data(config: QuantizeConfig, preprocess: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """Check the options and load (calibration samples, held-out images): done before any slow step."""
    if config.method not in METHODS:
        raise DeployKitError(f"unknown calibration method {config.method!r}; choose one of {', '.join(METHODS)}")
    if config.target not in TARGETS:
        raise DeployKitError(f"unknown target {config.target!r}; choose one of {', '.join(TARGETS)}")
    samples = load_samples(config.calib, preprocess, config.calib_size, "calibration")
    return samples, load_samples(config.holdout, preprocess, HOLDOUT_LIMIT, "held-out")


def quantize_int8(fp32_path: Path, out_path: Path, samples: np.ndarray, holdout: np.ndarray, config: QuantizeConfig,
                  cache_dir: Path) -> QuantizeResult:
    """Quantize ``fp32_path`` into ``out_path`` (moved into place when done), with the accuracy fallback.

    ``samples`` calibrate; ``holdout`` (images not used for calibration) checks INT8 against FP32.
    """
    settings = _settings(config)
    data_hash = calibration_hash(samples)
    cache_key = f"{config.method}-{config.target}-{data_hash[:16]}-{sha256_file(fp32_path)[:16]}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache_path = cache_dir / f"{cache_key}.json"
    calibration = {
        "source": str(config.calib), "samples": len(samples), "sha256": data_hash, "method": config.method,
        "cache": "reused" if cache_path.is_file() else "computed", "cache_file": cache_path.name,
    }

    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".quantize-") as workdir:
        pre_path = Path(workdir) / "preprocessed.onnx"
        _quiet(_pre_process, fp32_path, pre_path)
        pre_proto = onnx.load(str(pre_path))
        excluded = resolve_exclusions(pre_proto, config.exclude)
        with OrtRunner(fp32_path) as fp32_runner:
            fp32_logits = run_all(fp32_runner, holdout)
        kept: list[KeptLayer] = []
        int8_path = Path(workdir) / "int8.onnx"
        tolerances = Tolerances(rel_error=float("inf"), min_cosine=-1.0, min_top1=config.min_agreement, near_ties=False)
        while True:
            reader = _CalibrationReader(samples, _fixed_batch(pre_proto))
            _quiet(_quantize, pre_path, int8_path, reader, settings, excluded + [k.node for k in kept], cache_path)
            with OrtRunner(int8_path) as int8_runner:
                agreement = compare_logits(fp32_logits, run_all(int8_runner, holdout), tolerances)
            if agreement.passed or len(kept) >= config.max_fallback_layers:
                break
            ranked = layer_sensitivity(pre_proto, onnx.load(str(int8_path)), holdout[:16], excluded + [k.node for k in kept])
            if not ranked:
                break
            kept.append(ranked[0])
        if not agreement.passed:
            raise DeployKitError(
                f"INT8 top-1 agreement with FP32 is {agreement.top1_agreement:.1%} < {config.min_agreement:.1%} on "
                f"{agreement.samples} held-out images even with {len(kept)} layer(s) kept in FP32 "
                f"({', '.join(k.output for k in kept) or 'none'}); nothing was written. Calibrate on more or more "
                "representative images (--calib), try --calib-method entropy/percentile, --exclude layers, or lower --min-agreement"
            )
        qdq_nodes = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in onnx.load(str(int8_path)).graph.node)
        os.replace(int8_path, out_path)
    return QuantizeResult(out_path, agreement, kept, excluded, calibration, settings, qdq_nodes)


def _settings(config: QuantizeConfig) -> dict:
    """The quantize_static arguments for the target, as plain data (also recorded in the manifest)."""
    symmetric_activations = config.target == "trt"
    return {
        "format": "QDQ", "target": config.target, "per_channel": config.per_channel,
        "activation_type": "int8" if symmetric_activations else "uint8", "weight_type": "int8",
        "activation_symmetric": symmetric_activations, "weight_symmetric": True,
        "reduce_range": config.target == "cpu" and not has_vnni(), "calibrate_method": config.method,
    }


def _quantize(pre_path: Path, out_path: Path, reader, settings: dict, exclude: list[str], cache_path: Path) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    extra = {"ActivationSymmetric": settings["activation_symmetric"], "WeightSymmetric": settings["weight_symmetric"]}
    if settings["calibrate_method"] == "percentile":
        extra["CalibPercentile"] = 99.999
    quantize_static(
        str(pre_path), str(out_path), reader, quant_format=QuantFormat.QDQ, per_channel=settings["per_channel"],
        reduce_range=settings["reduce_range"],
        activation_type=QuantType.QInt8 if settings["activation_type"] == "int8" else QuantType.QUInt8,
        weight_type=QuantType.QInt8, nodes_to_exclude=exclude, calibrate_method=methods[settings["calibrate_method"]],
        extra_options=extra, calibration_cache_path=str(cache_path),
    )


def _pre_process(fp32_path: Path, pre_path: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32_path), str(pre_path))


def _quiet(function, *args) -> None:
    """Run an onnxruntime.quantization step without its log lines and warnings on the console."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            function(*args)
    finally:
        root.setLevel(level)


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader over an array, with a progress bar while it is consumed."""

    def __init__(self, samples: np.ndarray, batch: int | None) -> None:
        self.batches = [b for b, _ in padded_batches(samples, batch or 8)]
        self.index = 0
        self.progress = None

    def get_next(self) -> dict | None:
        from rich.progress import Progress

        if self.progress is None:
            self.progress = Progress(transient=True)
            self.progress.start()
            self.task = self.progress.add_task("calibrating", total=len(self.batches))
        if self.index >= len(self.batches):
            self.progress.stop()
            return None
        batch = self.batches[self.index]
        self.index += 1
        self.progress.advance(self.task)
        return {"input": batch}

    def rewind(self) -> None:
        self.index = 0


def _fixed_batch(proto: onnx.ModelProto) -> int | None:
    return proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value or None


def resolve_exclusions(proto: onnx.ModelProto, patterns: tuple[str, ...]) -> list[str]:
    """Node names matched by shell-style patterns over layer names.

    A layer name is the module path a node was exported from (``layer3.1.conv2``, ``fc``; node names
    are ``module/OpType``), the full node name, or the node's output tensor.
    """
    names = []
    for pattern in patterns:
        matched = [n.name for n in proto.graph.node
                   if any(fnmatch.fnmatch(candidate, pattern) for candidate in (n.name, n.name.rsplit("/", 1)[0], *n.output))]
        if not matched:
            examples = ", ".join(n.name.rsplit("/", 1)[0] for n in proto.graph.node if n.op_type in WEIGHTED_OPS)[:160]
            raise DeployKitError(f"--exclude {pattern!r} matches no layer; layers are named like: {examples}")
        names += [m for m in matched if m not in names]
    return names


def layer_sensitivity(fp32: onnx.ModelProto, int8: onnx.ModelProto, inputs: np.ndarray, skip: list[str]) -> list[KeptLayer]:
    """Weighted layers ranked by how much error they add: cosine distance to FP32 at output minus at input.

    Cosine distance is bounded, so a layer whose quantization ruins everything downstream stands out
    by itself instead of being outranked by the accumulated error of the layers after it.
    """
    int8_tensors = {out for node in int8.graph.node for out in node.output} | {i.name for i in int8.graph.input}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in fp32.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    candidates = []
    for node in fp32.graph.node:
        if node.op_type in WEIGHTED_OPS and node.name not in skip:
            output = _observable(node.output[0], int8_tensors, consumers)
            if output and node.input[0] in int8_tensors:
                candidates.append((node, node.input[0], output))
    names = sorted({t for _, i, o in candidates for t in (i, o)})
    reference = run_with_intermediates(fp32, names, inputs)
    quantized = run_with_intermediates(int8, names, inputs)

    def distance(tensor: str) -> float:
        ref = reference[tensor].astype(np.float64).ravel()
        quant = quantized[tensor].astype(np.float64).ravel()
        norms = np.linalg.norm(ref) * np.linalg.norm(quant)
        return float(1.0 - ref @ quant / norms) if norms else 0.0

    graph_inputs = {i.name for i in fp32.graph.input}
    ranked = [KeptLayer(node.name, node.output[0], distance(output) - (0.0 if source in graph_inputs else distance(source)))
              for node, source, output in candidates]
    return sorted(ranked, key=lambda k: -k.error_jump)


def _observable(tensor: str, int8_tensors: set[str], consumers: dict[str, list[onnx.NodeProto]]) -> str | None:
    """The tensor to compare a layer's output at: itself, or, where the quantizer folded a following
    activation into the layer (ReLU under asymmetric quantization), that activation's output."""
    if tensor in int8_tensors:
        return tensor
    following = consumers.get(tensor, [])
    if len(following) == 1 and following[0].op_type in ("Relu", "Clip") and following[0].output[0] in int8_tensors:
        return following[0].output[0]
    return None
