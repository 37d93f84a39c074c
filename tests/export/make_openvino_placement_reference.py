"""Records where NNCF puts Q/DQ for OpenVINO's CPU plugin, for test_openvino_placement.py.

Run once, in an environment with deploykit and NNCF (the benchmarks extra; NNCF is not a test
dependency). For each model it exports deploykit's FP32 file (random weights, 64x64: placement depends
on the graph, and the integer types on the signs calibration sees, not on trained values), quantizes it
with ``nncf.quantize(..., target_device=CPU)`` on the same calibration images the test's export uses,
and writes openvino_placement_reference.json:

    pip install -e ".[test,benchmarks]"
    python tests/export/make_openvino_placement_reference.py /tmp/ov-refs
"""

import json
import sys
from pathlib import Path

import onnx

from deploykit.compress.configs import QuantizeConfig
from deploykit.compress.int8_data import load_quantization_data
from deploykit.compress.qdq import placement
from deploykit.data import Preprocess
from deploykit.models import get_spec
from deploykit.recipes.configs import ExportConfig
from deploykit.recipes.export import export

MODELS = ("resnet50", "mobilenet_v2", "efficientnet_lite0")
INPUT_SIZE = 64
CALIBRATION_IMAGES = 8
OUT = Path(__file__).with_name("data") / "openvino_placement_reference.json"


def main() -> None:
    import nncf

    folder = Path(sys.argv[1])
    reference = {}
    for name in MODELS:
        fp32 = export(ExportConfig(name, out=folder, input_size=INPUT_SIZE)).onnx_path
        preprocess = Preprocess.for_model(get_spec(name), INPUT_SIZE)
        images = load_quantization_data(QuantizeConfig(calib_size=CALIBRATION_IMAGES), preprocess, 1000).calibration
        model = onnx.load(str(fp32))
        dataset = nncf.Dataset([{model.graph.input[0].name: image[None]} for image in images])
        quantized = nncf.quantize(model, dataset, subset_size=len(images), target_device=nncf.TargetDevice.CPU)
        reference[name] = placement(quantized, types=True)
    OUT.write_text(
        json.dumps({"nncf": nncf.__version__, "command": " ".join(sys.argv), "input_size": INPUT_SIZE, "calibration_images": CALIBRATION_IMAGES, "placement": reference}, indent=1)
        + "\n"
    )


if __name__ == "__main__":
    main()
