"""INT8 post-training quantization: calibrated, explicit Q/DQ ONNX that onnxruntime runs fast and stays accurate.

The layout is onnxruntime's own QDQ (``quant_pre_process`` folds BatchNorm first; per-channel
symmetric int8 weights; per-tensor uint8 activations on Conv outputs for ``--target cpu``, the
layout its QLinearConv kernels fuse; symmetric int8 for TensorRT). Accuracy comes from what is
fed into that layout, not from another layout: robust activation ranges (the mean of per-sample
min/max, compress/calibrate.py) and bias correction of the rounded weights
(compress/bias_correction.py).

The result is checked against FP32 on held-out images (mean logit cosine, FP32 top-1 within INT8
top-5, top-1 agreement), or, with a labelled ``val`` folder, by the drop in top-1 accuracy. Below
the gate, the layers that add the most error, ranked once, are kept in FP32 in growing groups and
re-quantized from the cached statistics.
"""

from __future__ import annotations

import fnmatch
import json
import zipfile
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from deploykit.choices import CALIBRATION_METHODS, INT8_TARGETS
from deploykit.compress.bias_correction import correct_biases
from deploykit.compress.trt_placement import apply_tensorrt_rules
from deploykit.compress.qdq import QdqGraph, float_graph_outputs
from deploykit.compress.saturation import Saturation, activation_saturation
from deploykit.compress.calibrate import ROBUST_METHODS, ActivationStats, collect_stats, write_ort_ranges
from deploykit.data import DEFAULT_CALIBRATION_DIR, DEFAULT_HOLDOUT_DIR, Preprocess, load_labelled_folder
from deploykit.data.calibration import DIGITS, calibration_hash, load_samples
from deploykit.data.images import evenly_spaced
from deploykit.errors import DeployKitError
from deploykit.io import sha256_file
from deploykit.progress import stage
from deploykit.quiet import quiet
from deploykit.parity import run_all
from deploykit.runtime.base import padded_batches
from deploykit.runtime.ort_runner import OrtRunner

WEIGHTED_OPS = {"Conv", "Gemm", "MatMul", "ConvTranspose"}
HOLDOUT_LIMIT = 256
SATURATION_IMAGES = 64  # clipping is a share of values: 64 held-out images measure it as well as 256, at a quarter of the cost
VAL_LIMIT = 10_000
SENSITIVITY_SAMPLES = 16
SELECTION_SAMPLES = 32
RANGES_VERSION = "r2"  # in the cached ranges' file names: ranges from an older rule are computed again, not reused
CONFIDENT = 0.5  # FP32 softmax probability of the top-1 above which an image is "confident"
MIN_CONFIDENT_IMAGES = 8  # fewer confident held-out images than this: their agreement is reported, not gated
SATURATION_RECORDED = 10  # the most clipped quantizers the manifest lists


@dataclass(frozen=True)
class QuantizeConfig:
    """Options of ``deploykit export --int8``; each maps to one command-line option."""

    calib: Path = DEFAULT_CALIBRATION_DIR
    calib_size: int = 64
    method: str = "auto"
    per_channel: bool = True
    bias_correction: bool = True
    exclude: tuple[str, ...] = ()
    target: str = "cpu"
    holdout: Path = DEFAULT_HOLDOUT_DIR
    min_cosine: float = 0.985  # mean logit cosine vs FP32 on held-out images (the gate without labels)
    min_top5: float = 0.9  # share of held-out images whose FP32 top-1 is in the INT8 top-5 (likewise)
    min_confident_agreement: float = 0.9  # top-1 agreement on the held-out images FP32 is confident on (likewise)
    val: Path | None = None  # labelled folder: gate on the top-1 drop instead
    max_drop: float = 1.0  # top-1 points INT8 may lose on ``val``
    max_fallback_layers: int = 10

    def gate_record(self) -> dict:
        """The gate's images and thresholds as the manifest keeps them, so that ``compare`` judges the file as export did."""
        return {"holdout": _absolute(self.holdout), "min_cosine": self.min_cosine, "min_top5": self.min_top5,
                "min_confident_agreement": self.min_confident_agreement, "val": _absolute(self.val) if self.val else None,
                "max_drop": self.max_drop}

    @classmethod
    def from_gate_record(cls, record: dict) -> QuantizeConfig:
        """The gate a manifest recorded (defaults for a manifest written before gates were recorded)."""
        val = record.get("val")
        return cls(holdout=Path(record.get("holdout", DEFAULT_HOLDOUT_DIR)), min_cosine=record.get("min_cosine", cls.min_cosine),
                   min_top5=record.get("min_top5", cls.min_top5),
                   min_confident_agreement=record.get("min_confident_agreement", cls.min_confident_agreement),
                   val=Path(val) if val else None, max_drop=record.get("max_drop", cls.max_drop))


def _absolute(source: Path | str) -> str:
    """A folder or file as an absolute path, so that a later command run elsewhere finds it; ``digits`` as it is."""
    return DIGITS if str(source) == DIGITS else str(Path(source).resolve())


@dataclass(frozen=True)
class KeptLayer:
    """A layer left in FP32 by the accuracy fallback, and why."""

    node: str
    output: str
    output_gain: float  # mean output cosine vs FP32 gained by keeping this layer alone in FP32


@dataclass
class Int8Check:
    """INT8 against FP32: always on held-out images; on a labelled folder when one is given."""

    samples: int
    top1_agreement: float
    fp32_top1_in_int8_top5: float
    mean_cosine: float
    min_cosine: float
    finite: bool
    confident_images: int = 0  # held-out images whose FP32 top-1 has softmax probability >= CONFIDENT
    confident_agreement: float | None = None  # top-1 agreement on those: quantized, clipped logits collapse it
    val_images: int = 0
    val_classes: str | None = None  # how the labelled folder's subfolders map to classes (ClassMapping.describe)
    fp32_top1: float | None = None
    int8_top1: float | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def drop_points(self) -> float | None:
        return None if self.fp32_top1 is None else 100.0 * (self.fp32_top1 - self.int8_top1)

    def summary(self) -> str:
        text = (f"on {self.samples} held-out images: mean cosine {self.mean_cosine:.4f} (min {self.min_cosine:.4f}), "
                f"FP32 top-1 in INT8 top-5 {self.fp32_top1_in_int8_top5:.1%}, top-1 agreement {self.top1_agreement:.1%}")
        if self.confident_agreement is not None:
            text += f" ({self.confident_agreement:.1%} on the {self.confident_images} FP32 is confident on)"
        if self.fp32_top1 is not None:
            text += (f"; on {self.val_images} labelled images, {self.val_classes}: top-1 FP32 {self.fp32_top1:.2%}, INT8 {self.int8_top1:.2%} "
                     f"(drop {self.drop_points:.2f} points)")
        return text

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed, "drop_points": self.drop_points}


@dataclass
class QuantizeResult:
    path: Path
    check: Int8Check
    kept_fp32: list[KeptLayer]
    excluded: list[str]
    calibration: dict
    settings: dict
    gate_applied: bool
    qdq_nodes: int = 0
    biases_corrected: int = 0
    notes: list[str] = field(default_factory=list)
    saturation: list[Saturation] = field(default_factory=list)  # every activation quantizer on the held-out images
    classifier_inputs: frozenset[str] = frozenset()
    stage: str = "ptq"  # or "qat"
    qat: dict | None = None  # the fine-tuning's record, with the PTQ figures it started from
    gate: dict = field(default_factory=dict)  # QuantizeConfig.gate_record()

    def manifest_entry(self) -> dict:
        return {
            "stage": self.stage, **({"qat": self.qat} if self.qat else {}), "settings": self.settings, "calibration": self.calibration, "excluded_by_user": self.excluded,
            "kept_fp32_by_fallback": [asdict(k) for k in self.kept_fp32], "qdq_nodes": self.qdq_nodes,
            "biases_corrected": self.biases_corrected, "gate_applied": self.gate_applied,
            "gate": self.gate, "check_vs_fp32": self.check.as_dict(), "notes": self.notes,
            "saturation_holdout": {
                "most_clipped": [s.as_dict() for s in self.saturation[:SATURATION_RECORDED] if s.clipped > 0],
                "classifier_input": [s.as_dict() for s in self.saturation if s.tensor in self.classifier_inputs],
            },
        }


class Int8GateError(DeployKitError):
    """INT8 failed the accuracy gate even with the fallback; carries the figures of the best attempt."""

    def __init__(self, message: str, check: Int8Check, kept: list[KeptLayer]) -> None:
        super().__init__(message)
        self.check = check
        self.kept = kept


@dataclass(frozen=True)
class QuantizationData:
    """Everything the quantizer reads, loaded and checked before any slow step."""

    calibration: np.ndarray
    holdout: np.ndarray
    val_images: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    val_classes: str | None = None


def has_vnni() -> bool:
    """Whether this CPU has VNNI int8 dot products (AVX512-VNNI or AVX-VNNI)."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.is_file() else ""
    return "avx512_vnni" in flags or "avx_vnni" in flags


def load_quantization_data(config: QuantizeConfig, preprocess: Preprocess, num_classes: int) -> QuantizationData:
    """Check the options and load calibration, held-out and labelled images (``--val`` subfolders mapped to the model's
    ``num_classes`` classes as ``eval`` maps them): done before any slow step."""
    if config.method not in CALIBRATION_METHODS:
        raise DeployKitError(f"unknown calibration method {config.method!r}; choose one of {', '.join(CALIBRATION_METHODS)}")
    if config.target not in INT8_TARGETS:
        raise DeployKitError(f"unknown target {config.target!r}; choose one of {', '.join(INT8_TARGETS)}")
    samples = load_samples(config.calib, preprocess, config.calib_size, "calibration")
    holdout = load_samples(config.holdout, preprocess, HOLDOUT_LIMIT, "held-out")
    if config.val is None:
        return QuantizationData(samples, holdout)
    images, labels, mapping = load_labelled_folder(config.val, preprocess, num_classes, VAL_LIMIT)
    return QuantizationData(samples, holdout, images, labels, mapping.describe())


def quantize_int8(fp32_path: Path, out_path: Path, data: QuantizationData, config: QuantizeConfig, cache_dir: Path,
                  enforce_gate: bool = True, reference: Path | None = None,
                  fixed_ranges: dict[str, tuple[float, float]] | None = None) -> QuantizeResult:
    """Quantize ``fp32_path`` into ``out_path`` (moved into place when done), with the accuracy gate and fallback.

    ``enforce_gate=False`` (random weights, whose figures mean nothing) measures and reports but never refuses.
    ``reference`` is the FP32 file the gate compares with (``fp32_path`` by default; QAT quantizes its
    fine-tuned copy but is judged against the original). ``fixed_ranges`` (tensor -> (low, high))
    replaces the calibrated ranges of those tensors. Raises Int8GateError when the gate is not met.
    """
    settings = _settings(config)
    data_hash, model_hash = calibration_hash(data.calibration), sha256_file(fp32_path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stats_path = cache_dir / f"stats-{data_hash[:16]}-{model_hash[:16]}.npz"
    methods = ("fixed",) if fixed_ranges else ROBUST_METHODS if config.method == "auto" else (config.method,)
    ranges = {m: cache_dir / f"{m}-{config.target}-{RANGES_VERSION}-{data_hash[:16]}-{model_hash[:16]}.json" for m in methods}
    calibration = {"source": str(config.calib), "samples": len(data.calibration), "sha256": data_hash,
                   "method": "fixed (QAT)" if fixed_ranges else config.method}
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".quantize-") as workdir:
        pre_path = Path(workdir) / "preprocessed.onnx"
        _quiet(_pre_process, fp32_path, pre_path)
        pre_proto = onnx.load(str(pre_path))
        excluded = resolve_exclusions(pre_proto, config.exclude)
        stats, reused = _statistics(pre_proto, pre_path, data.calibration, settings, stats_path,
                                    {m: path for m, path in ranges.items() if m != "fixed"})
        if fixed_ranges:  # tensors QAT did not simulate keep their calibrated min/max
            write_ort_ranges(stats.ranges("minmax") | fixed_ranges, ranges["fixed"])
        calibration["cache"] = "reused" if reused else "computed"
        int8_path = Path(workdir) / "int8.onnx"
        if len(methods) > 1:
            with stage(f"choosing activation ranges ({' or '.join(methods)})"):
                method, scores = _choose_ranges(fp32_path, pre_path, pre_proto, int8_path, settings, excluded, ranges,
                                                stats if config.bias_correction else None, data.calibration[:SELECTION_SAMPLES])
            calibration |= {"chosen": method, "selection_mean_cosine": scores}
        else:
            method = methods[0]
        ranges_path = ranges[method]
        calibration["cache_file"] = ranges_path.name
        with OrtRunner(reference or fp32_path) as fp32_runner:
            reference = _Logits(run_all(fp32_runner, data.holdout), _maybe_run(fp32_runner, data.val_images))

        def attempt(kept: list[KeptLayer]) -> tuple[Int8Check, int]:
            corrected = _build(pre_path, pre_proto, int8_path, settings, excluded + [k.node for k in kept], ranges_path,
                               stats if config.bias_correction else None)
            return _check(reference, int8_path, data, config), corrected

        kept: list[KeptLayer] = []
        with stage(f"quantizing and checking INT8 on {len(data.holdout)} held-out images"):
            check, corrected = attempt(kept)
        if not check.passed and enforce_gate and config.max_fallback_layers:
            with stage("ranking layers by what keeping each in FP32 gains"):
                ranked = layer_sensitivity(pre_proto, onnx.load(str(int8_path)), data.calibration[:SENSITIVITY_SAMPLES], excluded)
            limit = min(config.max_fallback_layers, len(ranked))
            for count in _growing(limit):
                kept = ranked[:count]
                with stage(f"fallback: {count} of up to {limit} layers kept in FP32"):
                    check, corrected = attempt(kept)
                if check.passed:
                    break
        if not check.passed and enforce_gate:
            raise Int8GateError(
                f"INT8 fails the accuracy gate ({'; '.join(check.failures)}) {check.summary()}, even with {len(kept)} "
                f"layer(s) kept in FP32 ({', '.join(k.output for k in kept) or 'none'}). Calibrate on more, or more "
                "representative, images (--calib DIR, a few hundred from your data), judge on labelled data (--val DIR), "
                "keep layers in FP32 by hand (--exclude), or deploy the FP32 model", check, kept)
        int8_proto = onnx.load(str(int8_path))
        qdq_nodes = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in int8_proto.graph.node)
        if not qdq_nodes:
            raise DeployKitError("nothing was quantized (every layer excluded or kept in FP32), so no INT8 file was written; "
                                 "exclude fewer layers")
        clipping_images = np.stack(evenly_spaced(data.holdout, SATURATION_IMAGES))
        with stage(f"measuring each quantizer's clipping on {len(clipping_images)} held-out images"):
            saturation = activation_saturation(int8_proto, clipping_images)
        os.replace(int8_path, out_path)
    notes = [] if enforce_gate else [f"accuracy gate not applied (random weights): {'; '.join(check.failures) or 'passed'}"]
    return QuantizeResult(out_path, check, kept, excluded, calibration, settings, enforce_gate, qdq_nodes, corrected, notes,
                          saturation, classifier_inputs(pre_proto), gate=config.gate_record())


@dataclass(frozen=True)
class _Logits:
    holdout: np.ndarray
    val: np.ndarray | None


def _maybe_run(runner: OrtRunner, images: np.ndarray | None) -> np.ndarray | None:
    return None if images is None else run_all(runner, images)


def _growing(limit: int) -> list[int]:
    """1, 2, 4, 8, ... up to ``limit`` (included): few re-quantizations to reach the smallest set that passes."""
    counts, count = [], 1
    while count < limit:
        counts.append(count)
        count *= 2
    return counts + [limit] if limit else []


def _statistics(pre_proto: onnx.ModelProto, pre_path: Path, samples: np.ndarray, settings: dict, stats_path: Path,
                ranges: dict[str, Path]) -> tuple[ActivationStats, bool]:
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
                reader = _CalibrationReader(samples, _fixed_batch(pre_proto), advance)
                _quiet(_quantize, pre_path, scratch, reader, {**settings, "calibrate_method": method}, [], path)
            scratch.unlink(missing_ok=True)
    return stats, reused


def classifier_inputs(proto: onnx.ModelProto) -> frozenset[str]:
    """The activations read by a Gemm/MatMul that computes a graph output: a classifier's features."""
    outputs = {o.name for o in proto.graph.output}
    initializers = {i.name for i in proto.graph.initializer}
    return frozenset(name for node in proto.graph.node if node.op_type in ("Gemm", "MatMul") and set(node.output) & outputs
                     for name in node.input if name not in initializers)


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


def _choose_ranges(fp32_path: Path, pre_path: Path, pre_proto: onnx.ModelProto, int8_path: Path, settings: dict,
                   excluded: list[str], ranges: dict[str, Path], stats: ActivationStats | None,
                   samples: np.ndarray) -> tuple[str, dict[str, float]]:
    """The range method whose INT8 output is closest to FP32 on calibration samples (the held-out set stays unseen).

    Robust ranges win on photos, where a few images stretch the extremes; global extremes win where
    rare large activations carry the signal (strokes on a black background).
    """
    with OrtRunner(fp32_path) as runner:
        reference = run_all(runner, samples)
    scores = {}
    for method, path in ranges.items():
        _build(pre_path, pre_proto, int8_path, settings, excluded, path, stats)
        with OrtRunner(int8_path) as runner:
            scores[method] = round(_mean_cosine(reference, run_all(runner, samples)), 6)
    return max(scores, key=scores.get), scores


def _mean_cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float(_cosines(reference.astype(np.float64), np.nan_to_num(candidate.astype(np.float64))).mean())


def _cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Per-row cosine similarity; 0 where either row is all zeros."""
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    return np.where(norms > 0, np.sum(reference * candidate, axis=1) / np.maximum(norms, 1e-300), 0.0)


def _build(pre_path: Path, pre_proto: onnx.ModelProto, out_path: Path, settings: dict, exclude: list[str], ranges_path: Path,
           stats: ActivationStats | None) -> int:
    """Quantize from the cached ranges, keep the graph outputs float, bias-correct, then (``--target trt``) apply
    TensorRT's placement rules; the number of corrected convolutions."""
    _quiet(_quantize, pre_path, out_path, None, settings, exclude, ranges_path)
    quantized = onnx.load(str(out_path))
    float_graph_outputs(quantized)
    corrected = correct_biases(pre_proto, quantized, stats.channel_means) if stats is not None else 0
    if settings["target"] == "trt":
        apply_tensorrt_rules(quantized)
    onnx.save(quantized, str(out_path))
    return corrected


def _check(reference: _Logits, int8_path: Path, data: QuantizationData, config: QuantizeConfig) -> Int8Check:
    with OrtRunner(int8_path) as runner:
        holdout = run_all(runner, data.holdout)
        val = _maybe_run(runner, data.val_images)
    return compare_int8(reference.holdout, holdout, config, reference.val, val, data.val_labels, data.val_classes)


def compare_int8(fp32: np.ndarray, int8: np.ndarray, config: QuantizeConfig, fp32_val: np.ndarray | None = None,
                 int8_val: np.ndarray | None = None, labels: np.ndarray | None = None, val_classes: str | None = None) -> Int8Check:
    """The gate's figures and verdict. Non-finite INT8 outputs always fail."""
    finite = bool(np.isfinite(int8).all() and (int8_val is None or np.isfinite(int8_val).all()))
    reference, candidate = fp32.astype(np.float64), np.nan_to_num(int8.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    cosine = _cosines(reference, candidate)
    ref_top1 = reference.argmax(axis=1)
    top5 = np.argsort(-candidate, axis=1)[:, :min(5, candidate.shape[1])]
    confident = _softmax_top1(reference) >= CONFIDENT
    agree = ref_top1 == candidate.argmax(axis=1)
    check = Int8Check(
        samples=len(reference), top1_agreement=float(np.mean(agree)),
        fp32_top1_in_int8_top5=float(np.mean([label in row for label, row in zip(ref_top1, top5)])),
        mean_cosine=float(cosine.mean()), min_cosine=float(cosine.min()), finite=finite,
        confident_images=int(confident.sum()), confident_agreement=float(np.mean(agree[confident])) if confident.any() else None,
    )
    if not finite:
        check.failures.append("INT8 outputs contain NaN or inf")
    if labels is not None:
        check.val_images, check.val_classes = len(labels), val_classes
        check.fp32_top1 = float(np.mean(fp32_val.argmax(axis=1) == labels))
        check.int8_top1 = float(np.mean(int8_val.argmax(axis=1) == labels))
        if not check.drop_points <= config.max_drop:
            check.failures.append(f"top-1 drop {check.drop_points:.2f} points > {config.max_drop:g}")
        return check
    if not check.mean_cosine >= config.min_cosine:
        check.failures.append(f"mean cosine {check.mean_cosine:.4f} < {config.min_cosine:g}")
    if not check.fp32_top1_in_int8_top5 >= config.min_top5:
        check.failures.append(f"FP32 top-1 in INT8 top-5 {check.fp32_top1_in_int8_top5:.1%} < {config.min_top5:.0%}")
    if check.confident_images >= MIN_CONFIDENT_IMAGES and not check.confident_agreement >= config.min_confident_agreement:
        check.failures.append(f"top-1 agreement on the {check.confident_images} confident images {check.confident_agreement:.1%} "
                              f"< {config.min_confident_agreement:.0%}")
    return check


def _softmax_top1(logits: np.ndarray) -> np.ndarray:
    """Each row's largest softmax probability."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return 1.0 / np.exp(shifted).sum(axis=1)


def _settings(config: QuantizeConfig) -> dict:
    """The quantize_static arguments for the target, as plain data (also recorded in the manifest)."""
    symmetric_activations = config.target == "trt"
    return {
        "format": "QDQ", "target": config.target, "per_channel": config.per_channel,
        "activation_type": "int8" if symmetric_activations else "uint8", "weight_type": "int8",
        "activation_symmetric": symmetric_activations, "weight_symmetric": True,
        "reduce_range": config.target == "cpu" and not has_vnni(), "calibrate_method": config.method,
        "bias_correction": config.bias_correction,
    }


def _quantize(pre_path: Path, out_path: Path, reader, settings: dict, exclude: list[str], ranges_path: Path) -> None:
    """onnxruntime's quantize_static; with ``reader=None`` it takes the ranges from ``ranges_path``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    extra = {"ActivationSymmetric": settings["activation_symmetric"], "WeightSymmetric": settings["weight_symmetric"]}
    if settings["calibrate_method"] == "percentile":
        extra["CalibPercentile"] = 99.999
    quantize_static(
        str(pre_path), str(out_path), reader, quant_format=QuantFormat.QDQ, per_channel=settings["per_channel"],
        reduce_range=settings["reduce_range"],
        activation_type=QuantType.QInt8 if settings["activation_type"] == "int8" else QuantType.QUInt8,
        weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
        calibrate_method=methods.get(settings["calibrate_method"], CalibrationMethod.MinMax),
        extra_options=extra, calibration_cache_path=str(ranges_path),
    )


def _pre_process(fp32_path: Path, pre_path: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32_path), str(pre_path))


def _quiet(function, *args) -> None:
    """Run an onnxruntime.quantization step without its log lines and warnings on the console."""
    with quiet("onnxruntime"):
        function(*args)


class _CalibrationReader:
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
    """Quantized weighted layers ranked by how much closer the INT8 output gets to FP32 when that layer alone runs in
    float (its activation inputs un-quantized, its FP32 weights and bias): the mean output cosine it gains.

    Measured at the output, one layer at a time, because an early layer's error is amplified by every layer after
    it: MobileNet-v2's first block adds little error where it sits and costs the most top-1 (symmetric int8).
    """
    graph = QdqGraph(int8)
    fp32_nodes = {node.name: node for node in fp32.graph.node}
    fp32_initializers = {init.name: init for init in fp32.graph.initializer}
    with OrtRunner(fp32.SerializeToString()) as runner:
        reference = run_all(runner, inputs)
    base = _output_cosine(reference, int8, inputs)
    ranked = []
    for index, node in enumerate(int8.graph.node):
        if node.op_type not in WEIGHTED_OPS or node.name in skip or node.name not in fp32_nodes:
            continue
        if not any(graph.quantized_source(name) for name in node.input):
            continue
        trial = onnx.ModelProto()
        trial.CopyFrom(int8)
        float_node, added = trial.graph.node[index], set()
        for position, name in enumerate(node.input):
            source = graph.quantized_source(name)
            if source is None:
                continue
            if source in graph.initializers:  # a weight or bias: the FP32 graph's own, under a name of its own
                original = fp32_initializers[fp32_nodes[node.name].input[position]]
                source = f"{original.name}/fp32"
                if source not in added:
                    trial.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(original), source))
                    added.add(source)
            float_node.input[position] = source
        ranked.append(KeptLayer(node.name, node.output[0], _output_cosine(reference, trial, inputs) - base))
    return sorted(ranked, key=lambda k: -k.output_gain)


def _output_cosine(reference: np.ndarray, model: onnx.ModelProto, inputs: np.ndarray) -> float:
    with OrtRunner(model.SerializeToString()) as runner:
        return _mean_cosine(reference, run_all(runner, inputs))
