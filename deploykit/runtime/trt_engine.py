"""TensorRT's import, the GPU's identity and the engine record check: what the engine builder and the runner share.

Engines are tied to the TensorRT version and GPU that built them; ``<engine>.json`` beside the
engine records both, and an engine built elsewhere is refused with the command that rebuilds it.
"""

from __future__ import annotations

import json
from pathlib import Path

from deploykit.errors import DeployKitError
from deploykit.io import sha256_file

ENGINE_INFO_SUFFIX = ".json"


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise DeployKitError("TensorRT is not installed; on a machine with an NVIDIA GPU run: pip install 'deploykit[tensorrt]'") from exc
    return tensorrt


def gpu_identity() -> dict:
    """Name and compute capability of GPU 0, or a DeployKitError when there is none."""
    import torch

    if not torch.cuda.is_available():
        raise DeployKitError("no CUDA GPU is visible (torch.cuda.is_available() is False); TensorRT needs an NVIDIA GPU and driver")
    major, minor = torch.cuda.get_device_capability(0)
    return {"gpu": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}


def engine_info_path(engine_path: Path) -> Path:
    return Path(engine_path).with_suffix(Path(engine_path).suffix + ENGINE_INFO_SUFFIX)


def check_engine_compatible(engine_path: Path) -> dict:
    """Refuse an engine built by another TensorRT version or GPU (engines are not portable)."""
    trt = import_tensorrt()
    info_path = engine_info_path(engine_path)
    if not Path(engine_path).is_file():
        raise DeployKitError(f"engine {engine_path} does not exist; build it with `deploykit build-engine MODEL.onnx`")
    if not info_path.is_file():
        raise DeployKitError(f"engine {engine_path} has no {info_path.name}; rebuild it with `deploykit build-engine`")
    record = json.loads(info_path.read_text())
    identity = gpu_identity()
    if record.get("tensorrt") != trt.__version__ or record.get("compute_capability") != identity["compute_capability"]:
        raise DeployKitError(
            f"engine {engine_path} was built by TensorRT {record.get('tensorrt')} for a {record.get('gpu')} "
            f"(sm {record.get('compute_capability')}); this is TensorRT {trt.__version__} on a {identity['gpu']} "
            f"(sm {identity['compute_capability']}). Rebuild it: deploykit build-engine {record.get('onnx', 'MODEL.onnx')}"
        )
    if sha256_file(Path(engine_path)) != record.get("engine_sha256"):
        raise DeployKitError(f"engine {engine_path} does not match its record (changed or corrupt); rebuild it")
    return record
