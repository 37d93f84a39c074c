"""`deploykit compare`: two models on the same inputs, and optionally layer by layer."""

from __future__ import annotations

from dataclasses import dataclass, field

from deploykit.compress.int8_check import Int8Check, compare_int8
from deploykit.compress.quantize import judging_runner
from deploykit.compress.int8_data import VAL_LIMIT
from deploykit.compress.configs import Int8Record, QuantizeConfig
from deploykit.compress.saturation import Saturation, activation_saturation
from deploykit.data import Preprocess, load_labelled_folder
from deploykit.data.calibration import HOLDOUT_LIMIT, load_samples
from deploykit.errors import DeployKitError
from deploykit.choices import IMAGENET_MEAN, IMAGENET_STD
from deploykit.manifest import FP16_NAME, INT8_NAME, ONNX_NAME
from deploykit.parity import FP16_TOLERANCES, LayerDiff, ParityReport, compare_runners, first_divergent, onnx_layer_diffs, parity_inputs, per_layer_diffs, run_all
from deploykit.recipes.bench import cpu_target_warning
from deploykit.recipes.configs import CompareConfig
from deploykit.recipes.ref import ModelRef, parse_model_ref
from deploykit.runtime import OrtRunner, Runner, TorchRunner, cpu_runner


SATURATION_ROWS = 10


@dataclass
class CompareResult:
    a: str
    b: str
    parity: ParityReport
    random_weights: bool
    layers: list[LayerDiff] | None = None
    first_divergent: LayerDiff | None = None
    saturation: list[Saturation] = field(default_factory=list)  # with --per-layer, a Q/DQ side's most clipped quantizers
    saturation_on: str = ""  # the images the clipping was measured on
    twin: str | None = None  # "int8" or "fp16": B is A's INT8 or FP16 file from one export, judged as export judged it
    int8_check: Int8Check | None = None  # for an INT8 twin: the export's gate, rerun
    warnings: list[str] = field(default_factory=list)  # a side known to lose accuracy on this CPU

    @property
    def passed(self) -> bool:
        if self.int8_check is not None:  # a quantized file diverges layer by layer by design: its gate is the verdict
            return self.int8_check.passed
        return self.parity.passed and (self.first_divergent is None or self.twin is not None)

    def as_dict(self) -> dict:
        payload = {
            "a": self.a,
            "b": self.b,
            "twin": self.twin,
            "passed": self.passed,
            "parity": self.parity.as_dict(),
            **({"int8_check": self.int8_check.as_dict()} if self.int8_check else {}),
        }
        if self.layers is not None:
            payload["layers"] = [d.as_dict() for d in self.layers]
            payload["first_divergent"] = self.first_divergent.name if self.first_divergent else None
            payload["saturation"] = [s.as_dict() for s in self.saturation]
        return payload


def compare(a: str, b: str, config: CompareConfig = CompareConfig()) -> CompareResult:
    """Run both references on the same inputs; an ONNX side runs on onnxruntime, a PyTorch side in eager mode."""
    first, second = parse_model_ref(a), parse_model_ref(b)
    size = _common_size(first, second, config.input_size)
    spec = first.spec or second.spec
    preprocess = Preprocess.for_model(spec, size) if spec else Preprocess.default(size, IMAGENET_MEAN, IMAGENET_STD)
    inputs = parity_inputs(preprocess, image_dir=config.images)
    twin = _twin(first, second)
    tolerances = FP16_TOLERANCES if twin == "fp16" else config.tolerances
    report = compare_runners(_runner(first, size), _runner(second, size), inputs, tolerances)
    result = CompareResult(a, b, report, first.random_weights or second.random_weights, twin=twin)
    result.warnings = [w for side in (first, second) if side.onnx_path is not None and (w := cpu_target_warning(side.onnx_path, "ort")) is not None]
    holdout = _gate_holdout(first) if twin == "int8" else None  # read once: the gate's rerun and the clipping use them
    if holdout is not None:
        result.int8_check = _int8_check(first, second, holdout[0])
    if config.per_layer:
        from deploykit.export.onnx import load_onnx

        if first.onnx_path is not None and second.onnx_path is not None:
            result.layers = onnx_layer_diffs(load_onnx(first.onnx_path), load_onnx(second.onnx_path), inputs)
        else:
            torch_side, onnx_side = (first, second) if first.onnx_path is None else (second, first)
            if onnx_side.onnx_path is None:
                raise DeployKitError("--per-layer compares with an ONNX file: give at least one .onnx file or export folder")
            result.layers = per_layer_diffs(torch_side.build(), load_onnx(onnx_side.onnx_path), inputs)
        # a twin differs layer by layer by design: the layers are diagnostics there, FP32's tolerance judges nothing
        result.first_divergent = None if twin else first_divergent(result.layers, config.layer_tolerance)
        clipping_inputs, result.saturation_on = holdout or (inputs, f"the {len(inputs)} parity inputs (random tensors and photos)")
        for side in (first, second):
            if side.onnx_path is not None:
                result.saturation += [s for s in activation_saturation(load_onnx(side.onnx_path), clipping_inputs) if s.clipped > 0]
        result.saturation = sorted(result.saturation, key=lambda s: -s.clipped)[:SATURATION_ROWS]
    return result


def _gate_holdout(side: ModelRef) -> tuple:
    """(images, their description): the held-out photos an INT8 export's gate read, as it read them (its manifest's)."""
    record = side.manifest.section(Int8Record)
    gate = record.gate if record else QuantizeConfig()
    holdout = load_samples(gate.holdout, Preprocess.recorded(side.manifest.input), HOLDOUT_LIMIT, "held-out")
    return holdout, f"the {len(holdout)} held-out images the export's gate used ({gate.holdout})"


def _twin(first: ModelRef, second: ModelRef) -> str | None:
    """ "int8" or "fp16" when one side is an export's model.onnx and the other its INT8 or FP16 file, both described by
    the folder's manifest; None otherwise."""
    if first.manifest is None or second.manifest is None or first.onnx_path is None or second.onnx_path is None:
        return None
    if first.onnx_path.parent.resolve() != second.onnx_path.parent.resolve():
        return None
    names = {first.onnx_path.name, second.onnx_path.name}
    return "int8" if names == {ONNX_NAME, INT8_NAME} else "fp16" if names == {ONNX_NAME, FP16_NAME} else None


def _int8_check(first: ModelRef, second: ModelRef, holdout) -> Int8Check:
    """The INT8 file against its FP32 file on the gate's ``holdout`` images, with the preprocessing and thresholds the
    export's gate used, and on the runtime it judged the INT8 file on (OpenVINO for the openvino layout), all read from
    the manifest."""
    fp32, int8 = (first, second) if first.onnx_path.name == ONNX_NAME else (second, first)
    manifest = fp32.manifest
    record = manifest.section(Int8Record) or Int8Record.from_dict({}, "")
    gate, layout, target = record.gate, record.layout, record.cpu_target
    preprocess = Preprocess.recorded(manifest.input)
    val_images, labels, mapping = load_labelled_folder(gate.val, preprocess, manifest.model.num_classes, VAL_LIMIT) if gate.val else (None, None, None)
    int8_runner, runtime = judging_runner(int8.onnx_path, layout, target)
    logits = []
    for runner in (cpu_runner(fp32.onnx_path, "ort"), int8_runner):
        with runner:
            logits.append((run_all(runner, holdout), run_all(runner, val_images) if gate.val else None))
    (fp32_holdout, fp32_val), (int8_holdout, int8_val) = logits
    return compare_int8(fp32_holdout, int8_holdout, gate, fp32_val, int8_val, labels, mapping.describe() if mapping else None, runtime)


def _runner(ref: ModelRef, size: int) -> Runner:
    if ref.onnx_path is not None:
        return OrtRunner(ref.onnx_path, name=ref.text)
    return TorchRunner(ref.build(), (3, size, size), name=ref.text)


def _common_size(first: ModelRef, second: ModelRef, requested: int | None) -> int:
    """The input size both sides take: as asked, else the ONNX side's, else the model's default."""
    if requested:
        return requested
    sizes = {s for s in (_onnx_size(first), _onnx_size(second)) if s}
    if len(sizes) > 1:
        raise DeployKitError(f"{first.text} and {second.text} take inputs of different sizes {sorted(sizes)}; pass --input-size")
    if sizes:
        return sizes.pop()
    spec = first.spec or second.spec
    if spec is None:
        raise DeployKitError("both sides have a dynamic input size and no manifest; pass --input-size")
    return spec.input_size


def _onnx_size(ref: ModelRef) -> int | None:
    if ref.onnx_path is None:
        return None
    if ref.manifest is not None and ref.manifest.input is not None:
        return ref.manifest.input.size
    if ref.signature is None or not ref.signature.input_dims[-1]:
        raise DeployKitError(f"{ref.text} has a dynamic input size and no manifest; pass --input-size")
    return ref.signature.input_dims[-1]
