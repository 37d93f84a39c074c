"""TensorRT's import, the GPU's identity and the engine record check: what the engine builder and the runner share.

Engines are tied to the TensorRT version and GPU that built them; ``<engine>.json`` beside the
engine records both, and an engine built elsewhere is refused with the command that rebuilds it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

from deploykit.errors import DeployKitError
from deploykit.io import sha256_file

if TYPE_CHECKING:
    import tensorrt as trt

ENGINE_INFO_SUFFIX = ".json"


SUPPORTED_MAJORS = (10, 11)


def require_tensorrt() -> str:
    """TensorRT's version, or a one-line error when it is missing or not a release we are written for.

    Call sites then ``import tensorrt as trt`` themselves, so the type checker sees the module (tensorrt-stubs).
    """
    try:
        import tensorrt
    except ImportError as exc:
        raise DeployKitError("TensorRT is not installed; on a machine with an NVIDIA GPU, in your deploykit clone, run: pip install -e '.[tensorrt]'") from exc
    version = str(tensorrt.__version__)
    tensorrt_major(version)
    return version


def tensorrt_major(version: str) -> int:
    """The major version, checked against the releases whose API this code is written for."""
    head = version.split(".", 1)[0]
    major = int(head) if head.isdigit() else -1
    if major not in SUPPORTED_MAJORS:
        raise DeployKitError(f"TensorRT {version} is not supported; install TensorRT 10 or 11 (in your deploykit clone: pip install -e '.[tensorrt]')")
    return major


@dataclass(frozen=True)
class PrecisionFlags:
    """Which builder precision flags a TensorRT version takes for a network.

    TensorRT 10 builds weakly typed networks: FP16 kernels need BuilderFlag.FP16, and a Q/DQ network
    BuilderFlag.INT8. TensorRT 11 removed both flags (and the implicit INT8 calibrators): networks
    are strongly typed, so FP16 comes from an FP16 ONNX and INT8 from its Q/DQ nodes alone.
    """

    fp16: bool
    int8: bool


def precision_flags(version: str, fp16: bool, has_qdq: bool) -> PrecisionFlags:
    """The flags to set for ``fp16`` (the --fp16 builder option) and a network with Q/DQ nodes; an error where a
    version has no such flag."""
    if tensorrt_major(version) >= 11:
        if fp16:
            raise DeployKitError(f"TensorRT {version} has no FP16 builder flag (strongly typed networks): build from the FP16 ONNX (deploykit export --fp16) instead of --fp16")
        return PrecisionFlags(fp16=False, int8=False)
    return PrecisionFlags(fp16=fp16, int8=has_qdq)


@dataclass(frozen=True)
class Gpu:
    name: str
    compute_capability: str  # "8.9"


def gpu_identity() -> Gpu:
    """GPU 0, or a DeployKitError when there is none."""
    import torch

    if not torch.cuda.is_available():
        raise DeployKitError("no CUDA GPU is visible (torch.cuda.is_available() is False); TensorRT needs an NVIDIA GPU and driver")
    major, minor = torch.cuda.get_device_capability(0)
    return Gpu(torch.cuda.get_device_name(0), f"{major}.{minor}")


@dataclass(frozen=True)
class EngineBuild:
    """What built an engine, and from what: the record ``<engine>.json`` holds beside it."""

    path: Path  # the engine file
    tensorrt: str
    gpu: Gpu
    onnx: str
    onnx_sha256: str
    engine_sha256: str
    fp16: bool
    int8_qdq: bool
    profiles: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # input -> min/opt/max shapes
    options: dict[str, object] = field(default_factory=dict)  # the builder's options, as recorded

    def as_dict(self) -> dict:
        """As ``<engine>.json`` records it."""
        return {
            "tensorrt": self.tensorrt,
            "gpu": self.gpu.name,
            "compute_capability": self.gpu.compute_capability,
            "onnx": self.onnx,
            "onnx_sha256": self.onnx_sha256,
            "engine_sha256": self.engine_sha256,
            "precision": {"fp16": self.fp16, "int8_qdq": self.int8_qdq},
            "profiles": self.profiles,
            "config": self.options,
        }

    @classmethod
    def read(cls, engine_path: Path) -> EngineBuild:
        """The record beside ``engine_path``; a one-line error when it is missing or not one."""
        info_path = engine_info_path(engine_path)
        if not info_path.is_file():
            raise DeployKitError(f"engine {engine_path} has no {info_path.name}; rebuild it with `deploykit build-engine`")
        try:
            data = json.loads(info_path.read_text())
            precision = data.get("precision", {})
            return cls(
                Path(engine_path),
                str(data["tensorrt"]),
                Gpu(str(data["gpu"]), str(data["compute_capability"])),
                str(data["onnx"]),
                str(data["onnx_sha256"]),
                str(data["engine_sha256"]),
                bool(precision.get("fp16")),
                bool(precision.get("int8_qdq")),
                dict(data.get("profiles", {})),
                dict(data.get("config", {})),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DeployKitError(f"{info_path} is not an engine record ({exc!r}); rebuild it with `deploykit build-engine`") from exc


def dims(shape: trt.Dims) -> tuple[int, ...]:
    """A TensorRT shape as a tuple (-1 for a dynamic dimension)."""
    return tuple(shape[i] for i in range(len(shape)))


def engine_info_path(engine_path: Path) -> Path:
    return Path(engine_path).with_suffix(Path(engine_path).suffix + ENGINE_INFO_SUFFIX)


def check_engine_compatible(engine_path: Path) -> EngineBuild:
    """Refuse an engine built by another TensorRT version or GPU (engines are not portable); its record otherwise."""
    version = require_tensorrt()
    if not Path(engine_path).is_file():
        raise DeployKitError(f"engine {engine_path} does not exist; build it with `deploykit build-engine MODEL.onnx`")
    built, here = EngineBuild.read(engine_path), gpu_identity()
    if built.tensorrt != version or built.gpu.compute_capability != here.compute_capability:
        raise DeployKitError(
            f"engine {engine_path} was built by TensorRT {built.tensorrt} for a {built.gpu.name} (sm {built.gpu.compute_capability}); "
            f"this is TensorRT {version} on a {here.name} (sm {here.compute_capability}). Rebuild it: "
            f"deploykit build-engine {shlex.quote(built.onnx)}"
        )
    if sha256_file(Path(engine_path)) != built.engine_sha256:
        raise DeployKitError(f"engine {engine_path} does not match its record (changed or corrupt); rebuild it")
    return built
