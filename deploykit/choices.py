"""Closed sets of option values that the library and the command line share.

Kept free of heavy imports, so that ``deploykit --help`` can build its options without torch or onnx.
"""

CALIBRATION_METHODS = ("auto", "mean-minmax", "minmax", "entropy", "percentile")
INT8_TARGETS = ("cpu", "trt")
PRUNE_METHODS = ("l1", "l2", "taylor", "bn-scale")
DEFAULT_OPSET = 18
