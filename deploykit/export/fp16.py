"""FP16 ONNX: float16 weights and compute (onnxconverter-common), float32 where FP16 overflows or loses too much.

Graph inputs and outputs stay float32 by default, so an FP16 file is a drop-in replacement; with
``fp16_io`` they are float16 too (a runner casts float32 batches for it).
"""

from __future__ import annotations

import onnx

from deploykit.quiet import quiet

# Reductions and exponentials overflow or lose precision in float16; they stay float32 (with casts around them).
FP32_OPS = ("ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "Softmax", "LogSoftmax", "Exp", "Pow", "Log")


def to_fp16(proto: onnx.ModelProto, fp16_io: bool = False) -> onnx.ModelProto:
    """A float16 copy of an FP32 graph."""
    from onnxconverter_common import float16

    clean = onnx.ModelProto()
    clean.CopyFrom(proto)
    del clean.graph.value_info[:]  # stale float32 shapes would contradict the casts the converter inserts
    with quiet("onnxconverter_common"):
        return float16.convert_float_to_float16(clean, keep_io_types=not fp16_io,
                                                op_block_list=[*float16.DEFAULT_OP_BLOCK_LIST, *FP32_OPS])
