"""INT8, one pipeline: post-training quantization (range choice, gate, fallback: compress/quantize.py), and with
QAT, PTQ -> quantization-aware fine-tuning -> PTQ again from the ranges the fine-tuning simulated, under the same gate.

With QAT the FP32 export stays the original model (it passed parity against PyTorch); the fine-tuned weights
exist only to make the INT8 file, which is judged against that original FP32 file.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import onnx
from torch import nn
from torch.utils.data import Dataset

from deploykit.compress.configs import QatConfig, QuantizeConfig
from deploykit.compress.int8_data import QuantizationData
from deploykit.compress.qat import qat_finetune, read_plan
from deploykit.compress.quantize import QuantizeResult, quantize_int8
from deploykit.export.onnx import OnnxExport
from deploykit.progress import stage


@dataclass(frozen=True)
class FineTuning:
    """What QAT adds to PTQ: the PyTorch model the FP32 file was exported from, how it was exported (so the fine-tuned
    copy gets the same tensor names), and its images (data.training.finetune_images, from ``source``)."""

    model: nn.Module
    export: OnnxExport
    config: QatConfig
    dataset: Dataset
    labelled: bool
    source: str


def make_int8(
    fp32_path: Path, out_path: Path, data: QuantizationData, config: QuantizeConfig, cache_dir: Path, enforce_gate: bool = True, finetuning: FineTuning | None = None
) -> QuantizeResult:
    """Quantize ``fp32_path`` into ``out_path``: PTQ, or with ``finetuning`` PTQ then QAT (quantize_int8 for the rest)."""
    if finetuning is None:
        return quantize_int8(fp32_path, out_path, data, config, cache_dir, enforce_gate=enforce_gate)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".qat-") as work:
        ptq_path = Path(work) / "ptq.int8.onnx"
        # QAT simulates weights rounded to nearest: the PTQ file it starts from, and is compared with, is made so too
        ptq = quantize_int8(fp32_path, ptq_path, data, replace(config, max_fallback_layers=0, rounding="nearest"), cache_dir, enforce_gate=False)
        plan = read_plan(onnx.load(str(ptq_path)))
        student = copy.deepcopy(finetuning.model)
        report = qat_finetune(student, finetuning.model, plan, finetuning.dataset, finetuning.config, finetuning.labelled)
        with stage("exporting the fine-tuned weights"):
            tuned_path = Path(work) / "qat.fp32.onnx"
            onnx.save(finetuning.export.of(student), str(tuned_path))
        # The fine-tuning simulated these ranges and no bias correction: the file is made exactly so.
        result = quantize_int8(
            tuned_path, out_path, data, replace(config, bias_correction=False, rounding="nearest"), cache_dir, enforce_gate, judged_against=fp32_path, fixed_ranges=plan.ranges()
        )
    result.stage = "qat"
    result.qat = {**report.as_dict(), "config": asdict(finetuning.config), "data": finetuning.source, "ptq_check_vs_fp32": ptq.check.as_dict()}
    return result
