"""Whether the engine, execution provider and GPU a command asks for are here: checked first, in well under a second,
so that a missing GPU or backend is one line at the start rather than after minutes of reference runs."""

from __future__ import annotations

import functools
from pathlib import Path

from deploykit.errors import DeployKitError, first_line

ORT_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def require_backend(engine: str, device: str = "cpu", ort_provider: str | None = None) -> None:
    """A one-line DeployKitError when ``engine`` on ``device`` (or ONNX Runtime's ``ort_provider``) cannot run here."""
    if engine == "torch" and device == "cuda":
        require_torch_cuda()
    elif engine == "ort":
        provider = ort_provider or device
        if provider not in ORT_PROVIDERS:
            raise DeployKitError(f"unknown ONNX Runtime provider {provider!r}; choose {', '.join(ORT_PROVIDERS)}")
        require_ort_providers(ORT_PROVIDERS[provider])
    elif engine == "openvino":
        from deploykit.runtime.openvino_runner import import_openvino

        import_openvino()
    elif engine == "trt":
        from deploykit.runtime.trt_engine import gpu_identity, require_tensorrt

        require_tensorrt()
        require_torch_cuda()
        gpu_identity()


OPENVINO_INSTALL = "pip install 'deploykit[openvino]'"


@functools.cache
def openvino_problem() -> str | None:
    """Why OpenVINO cannot be used here (not installed, or installed but its import fails); None when it imports."""
    import importlib.util

    try:
        if importlib.util.find_spec("openvino") is None:
            return f"OpenVINO is not installed; install it with: {OPENVINO_INSTALL}"
        import openvino  # noqa: F401
    except Exception as exc:  # a broken install fails in many ways: a missing .so, a numpy mismatch, a half-removed package
        return f"OpenVINO is installed but cannot be imported ({type(exc).__name__}: {first_line(exc)}); reinstall it: pip install --force-reinstall 'deploykit[openvino]'"
    return None


def openvino_installed() -> bool:
    """Whether OpenVINO imports here."""
    return openvino_problem() is None


def require_torch_cuda() -> None:
    """A CUDA GPU PyTorch can use; without an NVIDIA driver loaded that is known before torch is even imported."""
    if not Path("/proc/driver/nvidia/version").exists() and not Path("/dev/nvidiactl").exists():
        raise DeployKitError("no NVIDIA GPU driver is loaded on this machine; use --device cpu, or run on a machine with an NVIDIA GPU")
    import torch

    if not torch.cuda.is_available():
        raise DeployKitError("no CUDA GPU is visible to PyTorch; use --device cpu, or install a CUDA build of torch on a GPU machine")


def require_ort_providers(providers: list[str]) -> None:
    import onnxruntime as ort

    missing = [p for p in providers if p not in ort.get_available_providers()]
    if missing:
        raise DeployKitError(
            f"onnxruntime has no {', '.join(missing)} here (available: {', '.join(ort.get_available_providers())}); "
            "install onnxruntime-gpu (pip install 'deploykit[gpu]') on a machine with a GPU"
        )
