"""torchvision, for data only (transforms.v2, datasets), importable beside torch's CPU build.

PyPI's torchvision wheel is built against torch's CUDA build. Beside the CPU build its C extension
cannot load (it links libtorch_cuda.so), which torchvision tolerates, except that it then registers
fake kernels for ``torchvision::nms`` and ``torchvision::qnms`` and fails with "operator
torchvision::nms does not exist". deploykit uses none of torchvision's operators (PIL decodes,
transforms are plain torch), so when that happens the two schemas are declared and the import is
retried. Where the extension loads, nothing is changed.
"""

from __future__ import annotations

import sys
from types import ModuleType

_SCHEMAS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor", "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
_library = None  # the torch.library fragment holding those schemas, alive for the process


def torchvision() -> ModuleType:
    """The torchvision package, imported (see the module docstring for the CPU-build case)."""
    global _library
    try:
        import torchvision as package
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc) or _library is not None:
            raise
        import torch

        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        _library = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _SCHEMAS:
            _library.define(schema)
        import torchvision as package
    return package


def prepare_for_user_code() -> None:
    """Import torchvision as deploykit does, before running a user's code that may ``import torchvision`` itself: that
    import then finds the package already loaded, so the user's code needs no fix of its own."""
    import importlib.util

    if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is not None:
        torchvision()


def transforms_v2() -> ModuleType:
    """``torchvision.transforms.v2``."""
    torchvision()
    from torchvision.transforms import v2

    return v2
