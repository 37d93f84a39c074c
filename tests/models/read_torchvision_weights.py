"""Read torchvision's published classification weights (URL, file name, transforms, accuracy) for deploykit's models.

Run once in a side venv (torchvision is no dependency of deploykit), from the repository root:
    python -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.13.0 torchvision==0.28.0
    python -c "import json; print(json.dumps([e['name'] for e in json.load(open('deploykit/catalog.json'))]))" > /tmp/names.json
    /tmp/tv/bin/python tests/models/read_torchvision_weights.py /tmp/names.json > /tmp/tv.json
then keep the rows with an ImageNet top-1 (drop antialias/num_params) in deploykit/models/pretrained.json.
"""

import json
import sys
import torch

# This side venv pairs PyPI's torchvision with the CPU torch file, whose C++ ops do not load; only the
# weight enums (pure Python) are read, so the fake-kernel registrations of those ops are skipped.
_register_fake = torch.library.register_fake
torch.library.register_fake = lambda *a, **k: lambda f: f
import torchvision  # noqa: E402 (after the patch above)

torch.library.register_fake = _register_fake
from torchvision.models import get_model_weights, list_models  # noqa: E402

names = json.load(open(sys.argv[1]))
rows = []
for name in sorted(names):
    if name not in list_models():
        continue
    enum = get_model_weights(name)
    default = enum.DEFAULT
    for w in enum:
        t = w.transforms()
        metrics = w.meta["_metrics"]["ImageNet-1K"]
        rows.append(
            {
                "model": name,
                "tag": w.name,
                "url": w.url,
                "file_name": w.url.rsplit("/", 1)[1],
                "resize": int(t.resize_size[0]),
                "crop": int(t.crop_size[0]),
                "interpolation": t.interpolation.value,
                "antialias": bool(t.antialias),
                "mean": list(t.mean),
                "std": list(t.std),
                "top1": metrics["acc@1"],
                "top5": metrics["acc@5"],
                "num_params": w.meta["num_params"],
                "default": w == default,
            }
        )
print(json.dumps({"torchvision": torchvision.__version__, "weights": rows}, indent=1))
