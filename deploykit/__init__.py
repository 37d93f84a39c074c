"""deploykit: from a PyTorch CNN classifier to a fast, verified deployment artifact."""

from deploykit.errors import DeployKitError

__version__ = "0.1.0"
__all__ = ["DeployKitError", "ModelSpec", "get_model", "get_spec", "list_models", "load", "__version__"]
_MODEL_API = {"ModelSpec", "get_model", "get_spec", "list_models"}


def load(reference: str, weights: str | None = None, **kwargs):
    """The PyTorch model (eval mode) for anything a command takes as a model: ``NAME``, ``NAME:CHECKPOINT``,
    ``NAME:IMAGENET1K_V1``, a folder written by ``deploykit export``, ``prune``, ``train`` or ``distill``, an exported ``.onnx``
    with its manifest."""
    from deploykit.recipes.ref import build_model

    return build_model(reference, weights, **kwargs)


def __getattr__(name: str):
    """The model API, imported on first use: ``import deploykit`` stays light (no torch, no onnx)."""
    if name in _MODEL_API:
        from deploykit import models

        return getattr(models, name)
    raise AttributeError(f"module 'deploykit' has no attribute {name!r}")
