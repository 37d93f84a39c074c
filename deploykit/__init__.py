"""deploykit: from a PyTorch CNN classifier to a fast, verified deployment artifact."""

from deploykit.errors import DeployKitError
from deploykit.models import ModelSpec, get_model, get_spec, list_models

__version__ = "0.1.0"
__all__ = ["DeployKitError", "ModelSpec", "get_model", "get_spec", "list_models", "__version__"]
