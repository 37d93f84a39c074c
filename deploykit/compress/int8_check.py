"""The INT8 accuracy gate: INT8 logits against FP32's on held-out images, or top-1 on a labelled folder, with a verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from deploykit.bench.accuracy import topk_hits
from deploykit.compress.configs import QuantizeConfig
from deploykit.compress.fallback import KeptLayer
from deploykit.errors import DeployKitError
from deploykit.parity import row_cosines

CONFIDENT = 0.5  # FP32 softmax probability of the top-1 above which an image is "confident"
MIN_CONFIDENT_IMAGES = 8  # fewer confident held-out images than this: their agreement is reported, not gated


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
    runtime: str = "onnxruntime"  # what ran the INT8 file
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def drop_points(self) -> float | None:
        return None if self.fp32_top1 is None else 100.0 * (self.fp32_top1 - self.int8_top1)

    def summary(self) -> str:
        runs_on = "" if self.runtime == "onnxruntime" else f" (INT8 run on {self.runtime})"
        text = (
            f"on {self.samples} held-out images{runs_on}: mean cosine {self.mean_cosine:.4f} (min {self.min_cosine:.4f}), "
            f"FP32 top-1 in INT8 top-5 {self.fp32_top1_in_int8_top5:.1%}, top-1 agreement {self.top1_agreement:.1%}"
        )
        if self.confident_agreement is not None:
            text += f" ({self.confident_agreement:.1%} on the {self.confident_images} FP32 is confident on)"
        if self.fp32_top1 is not None:
            text += f"; on {self.val_images} labelled images, {self.val_classes}: top-1 FP32 {self.fp32_top1:.2%}, INT8 {self.int8_top1:.2%} (drop {self.drop_points:.2f} points)"
        return text

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed, "drop_points": self.drop_points}


class Int8GateError(DeployKitError):
    """INT8 failed the accuracy gate even with the fallback; carries the figures of the best attempt."""

    def __init__(self, message: str, check: Int8Check, kept: list[KeptLayer]) -> None:
        super().__init__(message)
        self.check = check
        self.kept = kept


def compare_int8(
    fp32_logits: np.ndarray,
    int8_logits: np.ndarray,
    config: QuantizeConfig,
    fp32_val_logits: np.ndarray | None = None,
    int8_val_logits: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    val_classes: str | None = None,
    runtime: str = "onnxruntime",
) -> Int8Check:
    """The gate's figures and verdict (``runtime`` ran the INT8 file). Non-finite INT8 outputs always fail."""
    finite = bool(np.isfinite(int8_logits).all() and (int8_val_logits is None or np.isfinite(int8_val_logits).all()))
    reference, candidate = fp32_logits.astype(np.float64), np.nan_to_num(int8_logits.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    cosine = row_cosines(reference, candidate)
    ref_top1 = reference.argmax(axis=1)
    confident = _softmax_top1(reference) >= CONFIDENT
    agree = ref_top1 == candidate.argmax(axis=1)
    check = Int8Check(
        samples=len(reference),
        top1_agreement=float(np.mean(agree)),
        fp32_top1_in_int8_top5=float(np.mean(topk_hits(candidate, ref_top1, 5))),
        mean_cosine=float(cosine.mean()),
        min_cosine=float(cosine.min()),
        finite=finite,
        confident_images=int(confident.sum()),
        confident_agreement=float(np.mean(agree[confident])) if confident.any() else None,
        runtime=runtime,
    )
    if not finite:
        check.failures.append("INT8 outputs contain NaN or inf")
    if labels is not None:
        check.val_images, check.val_classes = len(labels), val_classes
        check.fp32_top1 = float(np.mean(topk_hits(fp32_val_logits, labels, 1)))
        check.int8_top1 = float(np.mean(topk_hits(int8_val_logits, labels, 1)))
        if not check.drop_points <= config.max_drop:
            check.failures.append(f"top-1 drop {check.drop_points:.2f} points > {config.max_drop:g}")
        return check
    if not check.mean_cosine >= config.min_cosine:
        check.failures.append(f"mean cosine {check.mean_cosine:.4f} < {config.min_cosine:g}")
    if not check.fp32_top1_in_int8_top5 >= config.min_top5:
        check.failures.append(f"FP32 top-1 in INT8 top-5 {check.fp32_top1_in_int8_top5:.1%} < {config.min_top5:.0%}")
    if check.confident_images >= MIN_CONFIDENT_IMAGES and not check.confident_agreement >= config.min_confident_agreement:
        check.failures.append(f"top-1 agreement on the {check.confident_images} confident images {check.confident_agreement:.1%} < {config.min_confident_agreement:.0%}")
    return check


def _softmax_top1(logits: np.ndarray) -> np.ndarray:
    """Each row's largest softmax probability."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return 1.0 / np.exp(shifted).sum(axis=1)
