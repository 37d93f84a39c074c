"""Closed sets of option values that the library and the command line share.

Kept free of heavy imports, so that ``deploykit --help`` can build its options without torch or onnx.
"""

import os

CALIBRATION_METHODS = ("auto", "mean-minmax", "minmax", "entropy", "percentile")
TRITON_BACKENDS = ("onnxruntime", "openvino")  # triton --backend: what the ONNX files run on (engines: tensorrt)
TRITON_DEVICES = ("gpu", "cpu")  # triton --device: the instance kind
NO_BATCHING = -1  # bench --server --queue-delay off: no dynamic batcher
INT8_LAYOUTS = ("cpu", "trt", "openvino")  # export --int8-layout: the Q/DQ placement of the runtime the file is for
CPU_TARGETS = ("auto", "vnni", "avx2")  # export --cpu: the x86 CPU an --int8-layout cpu file is for (auto: this one)
WEIGHT_ROUNDINGS = ("gptq", "nearest")  # export --weight-rounding
PRUNE_METHODS = ("l1", "l2", "taylor", "bn-scale")
DEFAULT_OPSET = 18
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AMP_TYPES = ("off", "bf16", "fp16")
MAX_WORKERS = 16  # DataLoader worker processes
MAX_INPUT_SIZE = 4096  # the largest square input any command feeds
MAX_THREADS = 4 * (os.cpu_count() or 1)  # more threads than that only thrash (and 10^5 segfaults onnxruntime)
CPU_RUNTIMES = {"ort": "onnxruntime", "openvino": "OpenVINO"}  # the runtimes an ONNX file is timed and judged on, by name
RUNTIME_NAMES = {**CPU_RUNTIMES, "torch": "PyTorch"}  # bench --all times the PyTorch model beside the files
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")  # what a manifest's input.interpolation may name
