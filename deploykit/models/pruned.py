"""Saving and loading structurally pruned models as plain tensors (loadable with ``weights_only=True``).

A pruned model differs from its builder's only in layer widths. The checkpoint holds its
state_dict plus those widths per module; loading rebuilds the original architecture, narrows each
layer to the saved widths and loads the tensors strictly.
"""

from __future__ import annotations

import torch
from torch import nn

from deploykit.errors import DeployKitError

FORMAT = "deploykit-pruned/1"
_WIDTH_ATTRIBUTES = {nn.Conv2d: ("in_channels", "out_channels", "groups"), nn.Linear: ("in_features", "out_features"), nn.BatchNorm2d: ("num_features",)}


def pruned_state(model: nn.Module, source: dict) -> dict:
    """The checkpoint dict for a pruned ``model``; ``source`` records how to build the original."""
    widths = {}
    for name, module in model.named_modules():
        attributes = next((attrs for kind, attrs in _WIDTH_ATTRIBUTES.items() if isinstance(module, kind)), None)
        if attributes:
            widths[name] = {attr: int(getattr(module, attr)) for attr in attributes}
    return {"format": FORMAT, "source": source, "widths": widths, "state_dict": model.state_dict()}


def is_pruned_checkpoint(checkpoint: object) -> bool:
    return isinstance(checkpoint, dict) and checkpoint.get("format") == FORMAT


def check_pruned_checkpoint(checkpoint: dict, path: object) -> dict:
    """The pruned checkpoint if it is well-formed; a one-line error naming what is wrong otherwise."""
    source, widths, state = checkpoint.get("source"), checkpoint.get("widths"), checkpoint.get("state_dict")
    problems = []
    if not isinstance(source, dict) or not isinstance(source.get("name"), str) or not isinstance(source.get("kwargs", {}), dict):
        problems.append("no 'source' with the original model's name")
    if not isinstance(widths, dict) or not all(isinstance(w, dict) and all(isinstance(v, int) for v in w.values()) for w in widths.values()):
        problems.append("no 'widths' of integer layer sizes")
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        problems.append("no 'state_dict' of tensors")
    if problems:
        raise DeployKitError(f"{path} says it is a pruned checkpoint but has {', '.join(problems)}; prune again with `deploykit prune`")
    return checkpoint


def apply_pruned_state(model: nn.Module, checkpoint: dict) -> nn.Module:
    """Narrow ``model`` (freshly built from ``checkpoint['source']``) to the saved widths and load the weights."""
    modules = dict(model.named_modules())
    unknown = [name for name in [*checkpoint["widths"], *(k.rpartition(".")[0] for k in checkpoint["state_dict"])] if name not in modules]
    if unknown:
        raise DeployKitError(
            f"the pruned checkpoint names layers {checkpoint['source']['name']} does not have ({', '.join(sorted(set(unknown))[:5])}); prune again with `deploykit prune`"
        )
    for name, attributes in checkpoint["widths"].items():
        for attr, value in attributes.items():
            setattr(modules[name], attr, value)
    state = checkpoint["state_dict"]
    for key, tensor in state.items():
        module_name, _, tensor_name = key.rpartition(".")
        module = modules[module_name]
        if tensor_name in module._parameters and module._parameters[tensor_name] is not None:
            module._parameters[tensor_name] = nn.Parameter(torch.empty_like(tensor), requires_grad=tensor.is_floating_point())
        elif tensor_name in module._buffers and module._buffers[tensor_name] is not None:
            module._buffers[tensor_name] = torch.empty_like(tensor)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DeployKitError(f"the pruned checkpoint does not fit {checkpoint['source']['name']}: {str(exc).splitlines()[0]}; prune again with `deploykit prune`") from exc
    return model
