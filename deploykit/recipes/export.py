"""The export recipe: build -> ONNX -> check -> simplify -> verify -> [INT8] -> write, with the manifest.

Everything is staged beside the output folder and moved into place only when every stage succeeded, so a failed export
leaves the previous one untouched; an INT8 that fails its gate still leaves the FP32 export, which passed parity.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deploykit.batch import Batch
from deploykit.bench.runtimes import RuntimeTimings, bf16_possible, time_runtimes_apart
from deploykit.bench.memory import check_memory
from deploykit.compress.int8_check import Int8GateError
from deploykit.compress.int8_data import QuantizationData, load_quantization_data
from deploykit.compress.int8 import FineTuning, make_int8
from deploykit.compress.quantize import QuantizeResult
from deploykit.data import Preprocess
from deploykit.data.training import finetune_images
from deploykit.errors import DeployKitError
from deploykit.export.fp16 import checked_fp16
from deploykit.export.onnx import INPUT_NAME, OUTPUT_NAME, OnnxExport, check_onnx, simplify_onnx
from deploykit.io import ensure_writable_dir, sha256_file
from deploykit.manifest import FP16_NAME, INT8_NAME, ONNX_NAME, ExportFolder, InputRecord, Manifest, ModelRecord, WeightsRecord
from deploykit.models.layers import classifier_outputs
from deploykit.parity import ParityReport, Tolerances, compare_logits, compare_runners, parity_inputs, run_all
from deploykit.progress import report, stage
from deploykit.recipes.configs import ExportConfig
from deploykit.recipes.lines import int8_lines, runtime_lines
from deploykit.recipes.ref import ModelRef, module_ref, parse_model_ref, warn_random_weights
from deploykit.recipes.triton import TritonRepository
from deploykit.runtime import CPU_RUNTIMES, OrtRunner, Runner, TorchRunner

if TYPE_CHECKING:
    from torch import nn

    from deploykit.recipes.compress import ChainVerdict

CALIBRATION_CACHE = "calib-cache"


@dataclass
class ExportResult:
    folder: Path
    parity: ParityReport | None  # None when the FP32 file was the user's own ONNX file
    simplified: bool
    export_seconds: float
    notes: list[str]
    random_weights: bool
    fp16_parity: ParityReport | None = None
    int8: QuantizeResult | None = None
    runtimes: RuntimeTimings | None = None  # every file on every CPU runtime, timed in one run
    stages: dict = field(default_factory=dict)  # compression stages run before the export (recipes.compress)
    triton: TritonRepository | None = None  # --triton: the repository it was written into (recipes.compress)
    chain: ChainVerdict | None = None  # after compression stages: the shipped file against the original (recipes.compress)

    @property
    def onnx_path(self) -> Path:
        return ExportFolder(self.folder).onnx_path

    @property
    def int8_path(self) -> Path:
        return ExportFolder(self.folder).int8_path

    @property
    def fp16_path(self) -> Path:
        return ExportFolder(self.folder).fp16_path

    @property
    def int8_runtime(self) -> str:
        """The CPU runtime the INT8 file's layout is for (its speed is judged there)."""
        return "openvino" if self.int8 is not None and self.int8.settings.layout == "openvino" else "ort"

    @property
    def int8_slower(self) -> bool:
        """Whether INT8 ran slower than FP32, beyond noise, on the runtime its layout is for."""
        return bool(self.runtimes and self.int8 and self.runtimes.slower_than_fp32(INT8_NAME, self.int8_runtime))

    @property
    def fp16_slower_on(self) -> list[str]:
        """The CPU runtimes the FP16 file ran slower than FP32 on, beyond noise (none computes in float16 on an x86 CPU)."""
        if self.runtimes is None or self.fp16_parity is None:
            return []
        return [runtime for runtime in CPU_RUNTIMES if self.runtimes.slower_than_fp32(FP16_NAME, runtime)]


@dataclass(frozen=True)
class _Data:
    """The images INT8 and QAT need, loaded and checked before any slow step of the export."""

    quantization: QuantizationData | None
    qat_images: tuple | None

    @classmethod
    def load(cls, config: ExportConfig, preprocess: Preprocess, num_classes: int) -> _Data:
        return cls(load_quantization_data(config.quantize, preprocess, num_classes) if config.quantize else None,
                   finetune_images(_qat_source(config), preprocess, num_classes) if config.qat else None)


@dataclass
class _Source:
    """The FP32 ONNX file an export publishes, and what it was made from: a PyTorch model, or a user's ONNX file."""

    name: str
    serialized: bytes
    fp32_runner: Runner  # what FP16 is checked against: PyTorch, or the user's file on onnxruntime
    inputs: np.ndarray  # the parity inputs
    preprocess: Preprocess
    record: ModelRecord
    parity: ParityReport | None  # None for a user's ONNX file: it is the reference
    simplified: bool = False
    export_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    model: tuple[nn.Module, OnnxExport] | None = None  # the PyTorch model and how it was exported, for QAT
    random_weights: bool = False
    batch: Batch = Batch(1)
    data: _Data = _Data(None, None)


def export_ref(config: ExportConfig) -> ModelRef:
    """The model an export's options name: NAME (with ``--weights``) or ``--module``, parsed and resolved once."""
    if (config.name is None) == (config.module is None):
        raise DeployKitError("give a model NAME or --module path/to/file.py:function, not both or neither")
    return module_ref(config.module) if config.module else parse_model_ref(config.name).with_weights(config.weights)


def export(config: ExportConfig, ref: ModelRef | None = None) -> ExportResult:
    """Export a registry model (or a user's module) to ONNX and write it only if it matches PyTorch within tolerance;
    or take a user's ONNX file as it is, to make its FP16 and INT8 files with the same checks and manifest.

    ``ref`` is the model, already resolved by the caller; by default, the one ``config`` names."""
    if config.batch < 1:
        raise DeployKitError(f"--batch must be at least 1, got {config.batch}")
    if config.qat and not config.quantize:
        raise DeployKitError("--qat fine-tunes for INT8: add --int8")
    if config.qat and config.quantize.layout == "openvino":
        raise DeployKitError("--qat does not simulate the openvino layout yet (its signed and unsigned symmetric activations, "
                             "its 7-bit first layer): use --int8-layout cpu with --qat, or --int8-layout openvino without it")
    ref = ref or export_ref(config)
    ExportFolder(Path(config.out) / (ref.spec.name if ref.spec else ref.onnx_path.stem)).refuse_foreign_files()  # before any slow step
    if ref.spec is None:
        return _publish(config, _onnx_file_source(ref, config))
    return _publish(config, _torch_source(ref, config))


def _torch_source(ref: ModelRef, config: ExportConfig) -> _Source:
    spec = ref.spec
    size = spec.checked_input_size(ref.input_size(config.input_size))
    preprocess = ref.preprocess(size)
    model = ref.build(**config.model_kwargs)
    record = ModelRecord(spec.name, spec.family, classifier_outputs(model), _weights_record(ref),
                         {**(ref.builder_kwargs or {}), **config.model_kwargs}, list(ref.classes) if ref.classes else None)
    check_memory(model, (max(config.batch, 2), 3, size, size))
    data = _Data.load(config, preprocess, record.num_classes)  # a bad --calib, --val or --qat-data is refused here
    warn_random_weights(ref)  # once the options are known good, before the slow steps
    started, exporting = time.perf_counter(), OnnxExport((config.batch, 3, size, size), config.opset, config.dynamic_batch)
    with stage(f"exporting {spec.name} to ONNX (opset {config.opset})"):
        proto = exporting.of(model)
    export_seconds = time.perf_counter() - started
    raw = proto.SerializeToString()
    with stage("checking the graph (onnx.checker, strict shape inference)"):
        check_onnx(raw)
    inputs = parity_inputs(preprocess, image_dir=config.parity_images)
    pytorch = TorchRunner(model, (3, size, size))
    notes: list[str] = []
    with stage("simplifying with onnxslim"):
        candidates = [(simplify_onnx(proto).SerializeToString(), True)] if config.simplify else []
    for serialized, simplified in [*candidates, (raw, False)]:
        with stage(f"parity vs PyTorch on {len(inputs)} inputs"):
            parity = compare_runners(pytorch, OrtRunner(serialized), inputs, config.tolerances)
        if parity.passed:
            break
        if simplified:
            notes.append(f"simplified graph rejected: {parity.summary()}")
    if not parity.passed:
        raise DeployKitError(f"the ONNX export of {spec.name} does not match PyTorch, so nothing was written: {parity.summary()}")
    report(f"parity vs PyTorch: {parity.summary()}")
    return _Source(spec.name, serialized, pytorch, inputs, preprocess, record, parity, simplified, export_seconds, notes,
                   (model, replace(exporting, simplify=simplified)), ref.random_weights,
                   Batch(None if config.dynamic_batch else config.batch), data)


def _onnx_file_source(ref: ModelRef, config: ExportConfig) -> _Source:
    """A user's ONNX classifier, taken as it is (it is the FP32 reference); preprocessing from the options."""
    if config.qat:
        raise DeployKitError(f"--qat fine-tunes a PyTorch model; {ref.text} is an ONNX file: use post-training --int8")
    if not (config.quantize or config.fp16):
        raise DeployKitError(f"{ref.text} is an ONNX file already: add --int8 and/or --fp16 to make those files from it")
    dims = ref.signature.input_dims
    size = config.input_size or dims[-1]
    if not size:
        raise DeployKitError(f"{ref.text} has a dynamic input size; pass --input-size")
    if dims[-1] and size != dims[-1]:
        raise DeployKitError(f"{ref.text} takes {dims[-1]}x{dims[-1]} inputs, not {size}; drop --input-size or pass {dims[-1]}")
    if not ref.signature.num_classes:
        raise DeployKitError(f"{ref.text} has a dynamic class dimension; deploykit needs [N, classes] logits")
    if dims[0] is not None and (config.dynamic_batch or config.batch not in (1, dims[0])):
        raise DeployKitError(f"{ref.text} has a fixed batch of {dims[0]}; --batch and --dynamic-batch cannot change an ONNX file")
    serialized = ref.onnx_path.read_bytes()
    with stage("checking the graph (onnx.checker, strict shape inference)"):
        check_onnx(serialized)
    preprocess = Preprocess.default(size, config.mean, config.std)
    name = ref.onnx_path.stem
    record = ModelRecord(name, "custom", ref.signature.num_classes,
                         WeightsRecord(path=str(ref.onnx_path), sha256=sha256_file(ref.onnx_path)), {})
    notes = [f"{ref.text} was taken as it is, as the FP32 reference (no PyTorch model to check it against); preprocessing "
             f"from the options: input {size}, mean {tuple(config.mean)}, std {tuple(config.std)}"]
    return _Source(name, serialized, OrtRunner(serialized), parity_inputs(preprocess, image_dir=config.parity_images), preprocess,
                   record, None, notes=notes, batch=Batch.of(dims[0]), data=_Data.load(config, preprocess, record.num_classes))


def _publish(config: ExportConfig, source: _Source) -> ExportResult:
    """FP16 and INT8 from the source's FP32 file, each checked, then every file and the manifest published at once."""
    preprocess, size, serialized, notes = source.preprocess, source.preprocess.size, source.serialized, source.notes
    quantization_data = source.data.quantization
    folder = ExportFolder(ensure_writable_dir(Path(config.out) / source.name))
    if config.dynamic_batch and source.parity is not None:
        notes.append(_check_batch_consistency(serialized, source.inputs))
    fp16, fp16_parity = None, None
    if config.fp16:
        with stage("converting to FP16 and checking it"):
            fp16, fp16_parity = checked_fp16(serialized, source.fp32_runner, source.inputs, config.fp16_io)
        report(f"FP16 vs FP32: {fp16_parity.summary()}")

    gate_failure: Int8GateError | None = None
    quantized: QuantizeResult | None = None
    timings: RuntimeTimings | None = None
    with folder.publishing() as staging:  # nothing of this export is visible until every file is ready
        (staging / ONNX_NAME).write_bytes(serialized)
        if fp16 is not None:
            (staging / FP16_NAME).write_bytes(fp16)
        if quantization_data is not None:
            try:
                quantized = make_int8(staging / ONNX_NAME, staging / INT8_NAME, quantization_data, config.quantize,
                                      folder.path / CALIBRATION_CACHE, not source.random_weights, _finetuning(config, source))
            except Int8GateError as exc:  # the FP32 file passed its checks: it is still published
                gate_failure = exc
            else:
                for line in int8_lines(quantized):
                    report(line)
                notes += quantized.notes
        if config.time_runtimes:
            timings = _time_runtimes(staging, source, fp16 is not None, quantized, (source.batch.timed, 3, size, size))
            for line in runtime_lines(timings, quantized is not None):
                report(line)
        inputs_record = InputRecord(shape=[source.batch.dim, 3, size, size],
                                    mean=list(preprocess.mean), std=list(preprocess.std), resize=preprocess.resize,
                                    interpolation=preprocess.interpolation, name=INPUT_NAME, output=OUTPUT_NAME)
        kept = _keep_twins(folder, staging, inputs_record, made={INT8_NAME: quantization_data is not None, FP16_NAME: fp16 is not None},
                           notes=notes)
        exporter = "torch.onnx (dynamo)" if source.parity is not None else f"none: the user's file {source.record.weights.path}"
        sections = {
            "export": {"opset": _file_opset(serialized), "exporter": exporter, "simplified": source.simplified,
                       "dynamic_batch": source.batch.dynamic, "seconds": round(source.export_seconds, 2), "notes": notes},
            "parity": {ONNX_NAME: {"reference": "pytorch", **source.parity.as_dict()}} if source.parity else {},
        }
        if fp16_parity is not None:
            sections["parity"][FP16_NAME] = {"reference": "pytorch fp32" if source.parity else "the fp32 onnx file",
                                             "io": "float16" if config.fp16_io else "float32", **fp16_parity.as_dict()}
        if gate_failure is not None:
            sections["int8"] = {"failed": str(gate_failure), "check_vs_fp32": gate_failure.check.as_dict()}
        if INT8_NAME in kept:
            sections["int8"] = kept[INT8_NAME]
        if FP16_NAME in kept:
            sections["parity"][FP16_NAME] = kept[FP16_NAME]
        files = [ONNX_NAME] + ([FP16_NAME] if fp16 is not None else []) + ([INT8_NAME] if quantized else []) + list(kept)
        records = [record for record in (timings, quantized) if record is not None]
        ExportFolder(staging).write(Manifest(source.record, inputs_record, sections=sections).add(*records), files)
    if quantized is not None:
        quantized.path = folder.int8_path
    if gate_failure is not None:
        raise DeployKitError(f"{gate_failure} The FP32 file passed its checks and was written to {folder.onnx_path}; "
                             f"no {INT8_NAME} was written")
    return ExportResult(folder.path, source.parity, source.simplified, source.export_seconds, notes, source.random_weights,
                        fp16_parity, quantized, timings)


def _time_runtimes(staging: Path, source: _Source, fp16: bool, quantized: QuantizeResult | None,
                   shape: tuple[int, ...]) -> RuntimeTimings:
    """Every file of this export on every CPU runtime here, and OpenVINO's bf16 judged by FP16's tolerances."""
    files = {ONNX_NAME: ("fp32", True)} | ({FP16_NAME: ("fp16", True)} if fp16 else {})
    if quantized is not None:  # random weights: no gate applies, so the file may still be the fastest
        files[INT8_NAME] = ("int8", quantized.check.passed or not quantized.gate_applied)
    reference = None
    if bf16_possible():
        with source.fp32_runner as fp32:
            reference = (source.inputs, run_all(fp32, source.inputs))
    with stage("timing every file on every CPU runtime, interleaved"):
        return time_runtimes_apart(staging, files, shape, reference)


def _keep_twins(folder: ExportFolder, staging: Path, inputs_record: InputRecord, made: dict[str, bool],
                notes: list[str]) -> dict[str, dict]:
    """The previous export's INT8/FP16 files that this export does not remake, kept (with their manifest sections) when
    they were made from a byte-identical FP32 file with the same preprocessing; the others are dropped, with a note."""
    candidates = [name for name, remade in made.items() if not remade and (folder.path / name).exists()]
    if not candidates:
        return {}
    twins = folder.twins_made_from(sha256_file(staging / ONNX_NAME), inputs_record)
    kept = {name: twins[name] for name in candidates if name in twins}
    folder.link_into(list(kept), staging)
    for name in candidates:
        notes.append(f"kept the previous export's {name}: it was made from this same {ONNX_NAME} (sha256 and preprocessing)"
                     if name in kept else f"the previous export's {name} was not kept: it was made from another {ONNX_NAME}")
    return kept


def _finetuning(config: ExportConfig, source: _Source) -> FineTuning | None:
    """What QAT needs beyond PTQ, with ``--qat``; None for post-training quantization."""
    if config.qat is None or source.model is None:
        return None
    model, onnx_export = source.model
    return FineTuning(model, onnx_export, config.qat, *source.data.qat_images, str(_qat_source(config)))


def _qat_source(config: ExportConfig) -> Path | str:
    return config.qat_data or config.quantize.calib


def _file_opset(serialized: bytes) -> int:
    """The ai.onnx opset the file declares (what the exporter wrote, whatever was asked)."""
    import onnx

    return next(o.version for o in onnx.load_from_string(serialized).opset_import if o.domain in ("", "ai.onnx"))


def _weights_record(ref: ModelRef) -> WeightsRecord:
    if ref.factory is not None:  # a user's module: its file is what the weights came with
        module_file = Path(ref.text.rpartition(":")[0])
        return WeightsRecord(path=str(module_file), sha256=sha256_file(module_file))
    return WeightsRecord.of(ref.weights)


def _check_batch_consistency(serialized: bytes, inputs: np.ndarray) -> str:
    """A dynamic-batch graph must give the same logits run one image at a time and four at a time."""
    with OrtRunner(serialized) as runner:
        single = run_all(runner, inputs[:4], batch_size=1)
        batched = run_all(runner, inputs[:4], batch_size=4)
    consistency = compare_logits(single, batched, Tolerances(rel_error=1e-5))
    if not consistency.passed:
        raise DeployKitError(f"the dynamic-batch ONNX gives different outputs at batch 1 and 4: {consistency.summary()}")
    return f"dynamic batch verified: batch 1 vs 4 max abs error {consistency.max_abs_error:.3g}"
