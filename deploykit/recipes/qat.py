"""INT8 through quantization-aware fine-tuning: PTQ first, fine-tune against it, quantize again, same gate.

The FP32 export stays the original model (it passed parity against PyTorch); the fine-tuned weights
exist only to make the INT8 file, which is judged against that original FP32 file.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import onnx
import torch

from deploykit.compress.qat import qat_finetune, read_plan
from deploykit.compress.configs import QatConfig
from deploykit.compress.int8_data import QuantizationData
from deploykit.compress.quantize import QuantizeResult, quantize_int8
from deploykit.compress.configs import QuantizeConfig
from deploykit.export.onnx import simplify_onnx, torch_to_onnx
from deploykit.progress import stage


def quantize_with_qat(model: torch.nn.Module, fp32_path: Path, out_path: Path, data: QuantizationData, config: QuantizeConfig,
                      qat: QatConfig, dataset, labelled: bool, source: str, export_options: dict, cache_dir: Path,
                      enforce_gate: bool = True) -> QuantizeResult:
    """Quantize ``model`` (exported as ``fp32_path``) into ``out_path`` with QAT on ``dataset`` (data.training's
    finetune_images, from ``source``).

    ``export_options`` are the FP32 export's: shape, opset, dynamic_batch and simplified, so the
    fine-tuned copy is exported into a graph with the same tensor names.
    """
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".qat-") as work:
        ptq_path = Path(work) / "ptq.int8.onnx"
        # QAT simulates weights rounded to nearest: the PTQ file it starts from, and is compared with, is made so too
        ptq = quantize_int8(fp32_path, ptq_path, data, replace(config, max_fallback_layers=0, rounding="nearest"), cache_dir,
                            enforce_gate=False)
        plan = read_plan(onnx.load(str(ptq_path)))
        student = copy.deepcopy(model)
        report = qat_finetune(student, model, plan, dataset, qat, labelled)
        with stage("exporting the fine-tuned weights"):
            proto = torch_to_onnx(student, export_options["shape"], export_options["opset"], export_options["dynamic_batch"])
            if export_options["simplified"]:
                proto = simplify_onnx(proto)
        tuned_path = Path(work) / "qat.fp32.onnx"
        onnx.save(proto, str(tuned_path))
        # The fine-tuning simulated these ranges and no bias correction: the file is made exactly so.
        result = quantize_int8(tuned_path, out_path, data, replace(config, bias_correction=False, rounding="nearest"), cache_dir,
                               enforce_gate, judged_against=fp32_path, fixed_ranges=plan.ranges())
    result.stage = "qat"
    result.qat = {**report.as_dict(), "config": asdict(qat), "data": source, "ptq_check_vs_fp32": ptq.check.as_dict()}
    return result
