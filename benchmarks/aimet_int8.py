"""AIMET's INT8 of an FP32 ONNX file, for benchmarks/int8.py, run in a process of its own (AIMET starts its own threads
and imports its own torch stack): BatchNorm folded, per-channel W8A8 (AIMET's default_config_per_channel.json), min-max
ranges on the calibration images, optionally AdaRound first; written as a Q/DQ ONNX file onnxruntime runs.

    python benchmarks/aimet_int8.py FP32.onnx CALIBRATION.npy OUT.onnx [--adaround-iterations N]

Prints one JSON line: {"seconds": ..., "adaround_iterations": ...}. Needs `pip install aimet-onnx==2.42.0`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fp32", type=Path)
    parser.add_argument("calibration", type=Path, help=".npy of preprocessed images, N x 3 x H x W")
    parser.add_argument("out", type=Path)
    parser.add_argument("--adaround-iterations", type=int, default=0, help="0: min-max ranges only")
    args = parser.parse_args()
    import aimet_onnx
    import onnx
    from aimet_onnx.batch_norm_fold import fold_all_batch_norms_to_weight
    from aimet_onnx.quantsim import QuantizationSimModel

    started = time.perf_counter()
    model = onnx.load(str(args.fp32))
    input_name = model.graph.input[0].name
    calibration = np.load(args.calibration)
    inputs = [{input_name: calibration[i : i + 1]} for i in range(len(calibration))]
    fold_all_batch_norms_to_weight(model)
    config = Path(aimet_onnx.__file__).parent / "common" / "quantsim_config" / "default_config_per_channel.json"
    sim = QuantizationSimModel(model, param_type="int8", quant_scheme="min_max", config_file=str(config))
    if args.adaround_iterations:
        aimet_onnx.apply_adaround(sim, inputs, num_iterations=args.adaround_iterations)
    sim.compute_encodings(inputs)
    onnx.save(sim.to_onnx_qdq(), str(args.out))
    print(json.dumps({"seconds": round(time.perf_counter() - started, 1), "adaround_iterations": args.adaround_iterations}))


if __name__ == "__main__":
    main()
