"""Reference figures recorded from torchvision, so tests can check compatibility without torchvision.

For every torchvision architecture deploykit also builds, ``data/torchvision_reference.json.gz`` holds
the state_dict keys and shapes, and the eval-mode outputs on a fixed input after every tensor of the
state_dict is filled deterministically from its key (``fill_from_keys``). Equal keys, shapes and
outputs mean a real torchvision checkpoint loads with ``strict=True`` and computes the same thing.

Regenerate (needs torchvision, e.g. in a side virtualenv; deploykit itself never imports it):
    python tests/models/torchvision_reference.py
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import torch

REFERENCE_FILE = Path(__file__).parent / "data" / "torchvision_reference.json.gz"
BATCH = 2
LOGITS_KEPT = 16
# Inputs small enough to keep the test fast, large enough for every architecture.
INPUT_SIZES = {"inception_v3": 96, "alexnet": 64}
DEFAULT_INPUT_SIZE = 64
MODELS = [
    "alexnet",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "googlenet",
    "inception_v3",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "wide_resnet50_2",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "squeezenet1_0",
    "squeezenet1_1",
    "mnasnet1_0",
    "efficientnet_b0",
]


def fill_from_keys(model: torch.nn.Module) -> None:
    """Overwrite every floating-point tensor of the state_dict with values seeded by its key."""
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
            if key.endswith("running_var"):
                value = 0.5 + torch.rand(tensor.shape, generator=generator)
            elif tensor.ndim >= 2:
                value = torch.randn(tensor.shape, generator=generator) / tensor[0].numel() ** 0.5
            else:
                value = 0.1 * torch.randn(tensor.shape, generator=generator)
                if key.endswith("weight"):
                    value += 1.0
            tensor.copy_(value)


def reference_input(size: int) -> torch.Tensor:
    return torch.randn(BATCH, 3, size, size, generator=torch.Generator().manual_seed(0))


def fingerprint(model: torch.nn.Module, name: str) -> dict:
    """Keys, shapes and eval-mode output figures of a model filled by ``fill_from_keys``."""
    fill_from_keys(model)
    model.eval()
    size = INPUT_SIZES.get(name, DEFAULT_INPUT_SIZE)
    with torch.no_grad():
        logits = model(reference_input(size))
    return {
        "state_dict": {key: list(tensor.shape) for key, tensor in model.state_dict().items()},
        "input_size": size,
        "logits_head": logits[:, :LOGITS_KEPT].tolist(),
        "logits_sum": logits.sum(dim=1).tolist(),
        "logits_abs_max": logits.abs().max().item(),
        "argmax": logits.argmax(dim=1).tolist(),
    }


def load_reference() -> dict:
    with gzip.open(REFERENCE_FILE, "rt") as f:
        return json.load(f)


def main() -> None:
    import torchvision
    from torchvision import models

    entries = {name: fingerprint(models.get_model(name, weights=None), name) for name in MODELS}
    payload = {"torchvision": torchvision.__version__, "torch": torch.__version__, "models": entries}
    REFERENCE_FILE.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(REFERENCE_FILE, "wt") as f:
        json.dump(payload, f)
    print(f"wrote {REFERENCE_FILE} ({len(entries)} models, torchvision {torchvision.__version__})")


if __name__ == "__main__":
    main()
