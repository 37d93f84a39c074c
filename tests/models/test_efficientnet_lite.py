"""EfficientNet-Lite0 against the implementation its published checkpoint was made for (efficientnet-lite-pytorch)."""

import json
from pathlib import Path

import numpy as np
import torch

from deploykit.models import get_model, get_spec
from deploykit.profile import count_params

REFERENCE = json.loads((Path(__file__).parent / "data" / "efficientnet_lite0_reference.json").read_text())
CHECKPOINT = "efficientnet-lite0-57934424.pth"


def test_structure_matches_the_reference_state_dict():
    model = get_model("efficientnet_lite0", seed=0)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == REFERENCE["state_dict"]
    assert count_params(model) == 4_652_008
    spec = get_spec("efficientnet_lite0")
    assert spec.family == "nas" and spec.mean == (127 / 255,) * 3 and spec.std == (128 / 255,) * 3


def test_same_padding_is_asymmetric_on_stride_two():
    stem = get_model("efficientnet_lite0", seed=0)._conv_stem
    assert stem(torch.zeros(1, 3, 224, 224)).shape[-1] == 112 and stem(torch.zeros(1, 3, 225, 225)).shape[-1] == 113


def test_real_checkpoint_gives_the_reference_outputs(real_checkpoint):
    model = get_model("efficientnet_lite0", weights=real_checkpoint(CHECKPOINT)).eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224), dtype=np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    reference = np.asarray(REFERENCE["logits"])
    assert np.abs(logits - reference).max() < 1e-4 * np.ptp(reference)
