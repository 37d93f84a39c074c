"""Loading plain checkpoints into registry models: safe unpickling, key remapping, readable mismatches.

Pruned checkpoints are in models/pruned.py, published weights in models/pretrained.py; ``get_model``
tells them apart by content.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from deploykit.errors import DeployKitError, first_line

# DenseNet checkpoints from before PyTorch 0.4 name "norm1" as "norm.1" (torchvision remaps them too).
_DENSENET_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
# Training checkpoints commonly wrap the weights under one of these keys.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
_SHOW = 5


def read_checkpoint(path: str | Path) -> object:
    """Read a checkpoint file once, with ``weights_only=True`` (no code from the file runs)."""
    path = Path(path)
    if not path.is_file():
        raise DeployKitError(f"checkpoint {path} does not exist; pass the path of a .pth/.pt file")
    return load_checkpoint_bytes(path, path)


def load_checkpoint_bytes(source: str | Path | BinaryIO, path: str | Path) -> object:
    """Unpickle a checkpoint (a file, or its bytes already read) with ``weights_only=True``; ``path`` names it in errors."""
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on a bad file; all mean "not a readable checkpoint"
        if "Unsupported global" in str(exc):  # weights_only refused a pickled class or function
            raise DeployKitError(
                f"{path} holds code or Python objects beyond tensors, so it was not loaded (that would run its code); save model.state_dict() with torch.save and pass that file"
            ) from exc
        raise DeployKitError(f"cannot read checkpoint {path}: {first_line(exc)}; it must be a PyTorch state_dict saved with torch.save") from exc


def state_dict_of(checkpoint: object, path: str | Path) -> dict[str, torch.Tensor]:
    """The flat state_dict in a checkpoint: unwrapped from training wrappers, keys remapped."""
    for key in _WRAPPER_KEYS:
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise DeployKitError(f"checkpoint {path} does not hold a state_dict of tensors")
    return {_remap_key(key): value for key, value in checkpoint.items()}


def _remap_key(key: str) -> str:
    key = key.removeprefix("module.")  # saved from DataParallel / DistributedDataParallel
    match = _DENSENET_OLD_KEY.match(key)
    return match.group(1) + match.group(2) if match else key


def load_weights(model: nn.Module, checkpoint: object, path: str | Path, name: str) -> None:
    """Load a checkpoint (as read by ``read_checkpoint``) into ``model`` strictly; any mismatch is one readable error."""
    state = state_dict_of(checkpoint, path)
    expected = model.state_dict()
    for key in expected:  # checkpoints from before PyTorch 0.4 have no BatchNorm batch counters
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = expected[key]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        raise DeployKitError(f"checkpoint {path} does not match {name}: " + _describe(missing, unexpected, mismatched, state, expected))
    model.load_state_dict(state, strict=True)


def _describe(missing: list[str], unexpected: list[str], mismatched: list[str], state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str:
    def listed(keys: list[str]) -> str:
        more = f", ... {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
        return ", ".join(keys[:_SHOW]) + more

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) ({listed(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) ({listed(unexpected)})")
    if mismatched:
        shapes = [f"{k} {list(state[k].shape)} vs {list(expected[k].shape)}" for k in mismatched]
        parts.append(f"{len(mismatched)} shape mismatch(es) ({listed(shapes)})")
    message = "; ".join(parts)
    classifier_sizes = {state[k].shape[0] for k in mismatched if k.endswith((".weight", ".bias")) and state[k].ndim in (1, 2)}
    if mismatched and len(classifier_sizes) == 1 and not missing and not unexpected:
        message += f"; if the checkpoint was trained on {classifier_sizes.pop()} classes, pass num_classes accordingly"
    elif missing and all(k.startswith(("aux1.", "aux2.", "AuxLogits.")) for k in missing):
        message += "; the checkpoint has no auxiliary heads: pass aux_logits=False"
    return message
