"""Reference builders for the classic CNN lineage, registered by name.

Importing this package registers every family; use ``get_model``, ``list_models`` and ``get_spec``.
"""

from deploykit.models import (  # noqa: F401  (imported to register their builders)
    alexnet,
    cifar_resnet,
    densenet,
    efficientnet,
    efficientnet_lite,
    googlenet,
    inception,
    mnasnet,
    mobilenet_v1,
    mobilenet_v2,
    mobilenet_v3,
    preact_resnet,
    resnet,
    senet,
    squeezenet,
    vgg,
)
from deploykit.models.registry import ModelSpec, Reference, get_model, get_spec, list_models, register_model, resolve_name, split_reference

__all__ = ["ModelSpec", "Reference", "get_model", "get_spec", "list_models", "register_model", "resolve_name", "split_reference"]
