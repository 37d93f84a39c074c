"""Records where NVIDIA's ModelOpt ONNX PTQ (TensorRT's Q/DQ placement rules) puts Q/DQ, for test_trt_placement.py.

Run once in a side virtual environment that has ModelOpt (it is not a test dependency: it brings
onnxruntime-gpu and cupy). It quantizes deploykit's own FP32 exports (random weights: placement
depends on the graph, not on trained values) on CPU and writes trt_placement_reference.json:

    python -m venv /tmp/mo && /tmp/mo/bin/pip install "nvidia-modelopt[onnx]==0.47.0"
    for m in resnet18 resnet50 mobilenet_v2 efficientnet_b0; do deploykit export $m --out /tmp/refs; done
    /tmp/mo/bin/python tests/export/make_trt_placement_reference.py /tmp/refs
"""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import onnx

MODELS = ("resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0")
OUT = Path(__file__).with_name("data") / "trt_placement_reference.json"


def placement(proto: onnx.ModelProto) -> list[str]:
    """deploykit's own description of a placement (loaded from its file: this venv need not install deploykit)."""
    path = Path(__file__).resolve().parents[2] / "deploykit" / "compress" / "qdq.py"
    spec = importlib.util.spec_from_file_location("qdq", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.placement(proto)


def main() -> None:
    from modelopt.onnx.quantization import quantize

    folder = Path(sys.argv[1])
    reference = {}
    for name in MODELS:
        source = folder / name / "model.onnx"
        target = folder / name / "model.modelopt.int8.onnx"
        calibration = np.random.default_rng(0).standard_normal((8, 3, 224, 224)).astype(np.float32)
        quantize(str(source), quantize_mode="int8", calibration_data=calibration, calibration_eps=["cpu"], output_path=str(target))
        reference[name] = placement(onnx.load(str(target)))
    import modelopt

    OUT.write_text(json.dumps({"modelopt": modelopt.__version__, "command": " ".join(sys.argv), "placement": reference}, indent=1) + "\n")


if __name__ == "__main__":
    main()
