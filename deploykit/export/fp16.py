"""FP16 ONNX: float16 weights and compute (onnxconverter-common), float32 where FP16 overflows or loses too much.

Graph inputs and outputs stay float32 by default, so an FP16 file is a drop-in replacement; with
``fp16_io`` they are float16 too (a runner casts float32 batches for it).
"""

from __future__ import annotations

import numpy as np
import onnx

from deploykit.errors import DeployKitError
from deploykit.parity import FP16_TOLERANCES, ParityReport, compare_runners
from deploykit.quiet import quiet
from deploykit.runtime import OrtRunner, Runner

# Reductions and exponentials overflow or lose precision in float16; they stay float32 (with casts around them).
FP32_OPS = ("ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "Softmax", "LogSoftmax", "Exp", "Pow", "Log")


def to_fp16(proto: onnx.ModelProto, fp16_io: bool = False) -> onnx.ModelProto:
    """A float16 copy of an FP32 graph."""
    from onnxconverter_common import float16

    clean = onnx.ModelProto()
    clean.CopyFrom(proto)
    del clean.graph.value_info[:]  # stale float32 shapes would contradict the casts the converter inserts
    with quiet("onnxconverter_common"):
        return float16.convert_float_to_float16(clean, keep_io_types=not fp16_io, op_block_list=[*float16.DEFAULT_OP_BLOCK_LIST, *FP32_OPS])


def checked_fp16(serialized: bytes, fp32_runner: Runner, inputs: np.ndarray, fp16_io: bool) -> tuple[bytes, ParityReport]:
    """The FP16 file and its parity against the FP32 reference; a one-line error when FP16 is too far off."""
    converted = to_fp16(onnx.load_from_string(serialized), fp16_io=fp16_io).SerializeToString()
    parity = compare_runners(fp32_runner, OrtRunner(converted), inputs, FP16_TOLERANCES)
    if not parity.passed:
        raise DeployKitError(f"the FP16 model does not match FP32 within FP16 tolerances, so nothing was written: {parity.summary()}")
    return converted, parity
