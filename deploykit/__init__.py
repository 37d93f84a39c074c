"""deploykit: from a PyTorch CNN classifier to a fast, verified deployment artifact."""

from deploykit.errors import DeployKitError

__version__ = "0.1.0"
__all__ = ["DeployKitError", "ModelSpec", "get_model", "get_spec", "list_models", "__version__"]
_MODEL_API = {"ModelSpec", "get_model", "get_spec", "list_models"}


def __getattr__(name: str):
    """The model API, imported on first use: ``import deploykit`` stays light (no torch, no onnx)."""
    if name in _MODEL_API:
        from deploykit import models

        return getattr(models, name)
    raise AttributeError(f"module 'deploykit' has no attribute {name!r}")
