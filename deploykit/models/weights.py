"""Loading checkpoints into registry models: safe unpickling, key remapping, readable mismatches."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from deploykit.errors import DeployKitError

# DenseNet checkpoints from before PyTorch 0.4 name "norm1" as "norm.1" (torchvision remaps them too).
_DENSENET_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
# Training checkpoints commonly wrap the weights under one of these keys.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
_SHOW = 5


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint with ``weights_only=True`` and return its flat state_dict."""
    path = Path(path)
    if not path.is_file():
        raise DeployKitError(f"checkpoint {path} does not exist; pass the path of a .pth/.pt file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on a bad file; all mean "not a readable checkpoint"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DeployKitError(
            f"cannot read checkpoint {path}: {first_line[:200]}; it must be a PyTorch state_dict saved with torch.save"
        ) from exc
    if isinstance(checkpoint, dict) and checkpoint.get("format", "").startswith("deploykit-pruned"):
        raise DeployKitError(f"{path} is a pruned model: load it with deploykit.sources.build_model (or pass it as --weights)")
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


def load_weights(model: nn.Module, path: str | Path, name: str) -> None:
    """Load a checkpoint into ``model`` strictly; any mismatch raises one readable DeployKitError."""
    state = read_state_dict(path)
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


def _describe(missing: list[str], unexpected: list[str], mismatched: list[str],
              state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str:
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
