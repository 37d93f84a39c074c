"""The options of the compression passes, one typed config each; the command-line options read their defaults here.

Kept free of torch and onnx, so that ``deploykit --help`` starts at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from deploykit.data import DEFAULT_CALIBRATION_DIR, DEFAULT_HOLDOUT_DIR
from deploykit.data.calibration import DIGITS
from deploykit.errors import DeployKitError

if TYPE_CHECKING:
    from deploykit.compress.cpu_target import CpuTarget


@dataclass(frozen=True)
class QuantizeConfig:
    """Options of ``deploykit export --int8``; each maps to one command-line option."""

    calib: Path = DEFAULT_CALIBRATION_DIR
    calib_size: int = 64
    method: str = "auto"
    per_channel: bool = True
    bias_correction: bool = True
    rounding: str = "gptq"  # weights rounded against each layer's FP32 output (compress/weight_rounding.py), or "nearest"
    exclude: tuple[str, ...] = ()
    layout: str = "cpu"  # cpu: onnxruntime's fast x86 layout; trt: TensorRT's placement
    cpu: str = "auto"  # layout cpu: the CPU kind the file is for, "vnni", "avx2" or "auto" (this machine's)
    holdout: Path = DEFAULT_HOLDOUT_DIR
    min_cosine: float = 0.985  # mean logit cosine vs FP32 on held-out images (the gate without labels)
    min_top5: float = 0.9  # share of held-out images whose FP32 top-1 is in the INT8 top-5 (likewise)
    min_confident_agreement: float = 0.9  # top-1 agreement on the held-out images FP32 is confident on (likewise)
    val: Path | None = None  # labelled folder: gate on the top-1 drop instead
    max_drop: float = 1.0  # top-1 points INT8 may lose on ``val``
    max_fallback_layers: int = 10

    @property
    def cpu_target(self) -> CpuTarget:
        """The CPU kind the file is for: ``cpu`` for the cpu layout (``auto``: this machine's kind), any CPU for the others."""
        from deploykit.compress.cpu_target import CpuTarget

        return CpuTarget.resolve(self.layout, self.cpu)

    def gate_record(self) -> dict:
        """The gate's images and thresholds as the manifest keeps them, so that ``compare`` judges the file as export did."""
        return {
            "holdout": _absolute(self.holdout),
            "min_cosine": self.min_cosine,
            "min_top5": self.min_top5,
            "min_confident_agreement": self.min_confident_agreement,
            "val": _absolute(self.val) if self.val else None,
            "max_drop": self.max_drop,
        }

    @classmethod
    def from_gate_record(cls, record: dict) -> QuantizeConfig:
        """The gate a manifest recorded (defaults for a manifest written before gates were recorded)."""
        val = record.get("val")
        return cls(
            holdout=Path(record.get("holdout", DEFAULT_HOLDOUT_DIR)),
            min_cosine=record.get("min_cosine", cls.min_cosine),
            min_top5=record.get("min_top5", cls.min_top5),
            min_confident_agreement=record.get("min_confident_agreement", cls.min_confident_agreement),
            val=Path(val) if val else None,
            max_drop=record.get("max_drop", cls.max_drop),
        )


def _absolute(source: Path | str) -> str:
    """A folder or file as an absolute path, so that a later command run elsewhere finds it; ``digits`` as it is."""
    return DIGITS if str(source) == DIGITS else str(Path(source).resolve())


@dataclass(frozen=True)
class QatConfig:
    """Options of ``deploykit export --int8 --qat``."""

    epochs: int = 10
    lr: float = 3e-6  # Adam; 1e-6 barely moves, 1e-5 starts to overfit 70 photos
    batch_size: int = 16
    label_weight: float = 0.5  # share of cross-entropy in the loss when the images have labels
    seed: int = 0


@dataclass(frozen=True)
class DistillConfig:
    """Options of ``train`` and ``distill``: the fine-tuning recipe (warm-up, cosine, label smoothing, a lower rate for
    pretrained layers under a new classifier) and, for ``distill``, the teacher's share of the loss."""

    epochs: int = 10
    temperature: float = 4.0
    alpha: float = 0.9
    lr: float = 0.01  # the new classifier's (or, without one, every layer's) peak rate (SGD, batch 64)
    backbone_lr: float = 0.1  # the pretrained layers' rate under a new classifier, as a fraction of lr
    warmup_epochs: float = 0.3  # the rate rises linearly over these epochs, then follows a cosine to zero
    label_smoothing: float = 0.1
    min_crop_scale: float = 0.35  # random crops keep at least this share of a photo (0.08 is ImageNet's; small photos need more)
    batch_size: int = 64
    weight_decay: float = 5e-4
    seed: int = 0
    amp: str = "off"  # "bf16" (CPU or CUDA) or "fp16" (CUDA, with loss scaling)


@dataclass(frozen=True)
class PruneConfig:
    """Either ``ratio`` (fraction of channels removed per layer group) or ``target_macs`` (absolute MACs)."""

    ratio: float | None = None
    target_macs: float | None = None
    method: str = "l2"
    global_pruning: bool = False
    round_to: int | None = None
    steps: int = 20


@dataclass(frozen=True)
class Int8Settings:
    """The quantize_static arguments for a layout, decided once from ``QuantizeConfig`` (and recorded in the manifest).

    cpu: uint8 activations with a zero point, the layout onnxruntime's x86 kernels fuse (7-bit weights for a CPU
    without VNNI); trt: symmetric int8 everywhere; openvino: symmetric activations, uint8 where calibration saw no
    negative value, 7-bit weights on the first layer only (NNCF's choices).
    """

    layout: str
    per_channel: bool
    activation_type: str  # int8 or uint8
    activation_symmetric: bool
    unsigned_non_negative_activations: bool
    keep_activation_functions: bool
    cpu_target: str
    cpu_requested: str | None
    reduce_range: bool
    first_layer_7bit_weights: bool
    calibrate_method: str
    bias_correction: bool
    weight_rounding: str
    format: str = "QDQ"
    weight_type: str = "int8"
    weight_symmetric: bool = True

    @classmethod
    def for_config(cls, config: QuantizeConfig) -> Int8Settings:
        symmetric_activations = config.layout in ("trt", "openvino")
        target, openvino = config.cpu_target, config.layout == "openvino"
        return cls(
            config.layout,
            config.per_channel,
            "int8" if symmetric_activations else "uint8",
            symmetric_activations,
            openvino,
            openvino,
            target.kind,
            config.cpu if config.layout == "cpu" else None,
            target.reduce_range,
            openvino,
            config.method,
            config.bias_correction,
            config.rounding,
        )

    def with_method(self, method: str) -> Int8Settings:
        return replace(self, calibrate_method=method)

    def as_dict(self) -> dict:
        """As the manifest records it."""
        return asdict(self)


@dataclass(frozen=True)
class Int8Record:
    """The manifest's ``int8`` section as its readers use it: the layout and CPU the file was made for, the gate it was
    judged by (thresholds and photos) and whether it passed (None where the gate refused the file)."""

    KEY: ClassVar[str] = "int8"
    layout: str
    cpu_target: CpuTarget | None
    gate: QuantizeConfig
    gate_applied: bool
    passed: bool | None

    @classmethod
    def from_dict(cls, data: dict, where: str) -> Int8Record:
        from deploykit.compress.cpu_target import CpuTarget

        try:
            settings, check = data.get("settings", {}), data.get("check_vs_fp32", {})
            return cls(
                str(settings.get("layout", "cpu")),
                CpuTarget.recorded(settings.get("cpu_target")),
                QuantizeConfig.from_gate_record(data.get("gate", {})),
                bool(data.get("gate_applied", True)),
                None if "failed" in data else bool(check.get("passed")),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise DeployKitError(f"{where} is not an INT8 record ({exc}); export again") from exc
