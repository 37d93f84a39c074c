"""Our builders against fingerprints recorded from torchvision (see torchvision_reference.py)."""

import numpy as np
import pytest
import torch

from deploykit.models import get_model, get_spec, list_models
from tests.models.torchvision_reference import fingerprint, load_reference

REFERENCE = load_reference()["models"]


def test_every_torchvision_compatible_model_has_a_fingerprint():
    compatible = {n for n in list_models() if get_spec(n).torchvision_compatible}
    assert compatible == set(REFERENCE)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_state_dict_and_outputs_equal_torchvision(name):
    expected = REFERENCE[name]
    ours = fingerprint(get_model(name), name)
    assert ours["state_dict"] == expected["state_dict"]
    scale = expected["logits_abs_max"]
    np.testing.assert_allclose(ours["logits_head"], expected["logits_head"], atol=1e-5 * scale, rtol=1e-4)
    np.testing.assert_allclose(ours["logits_sum"], expected["logits_sum"], atol=1e-4 * scale * 1000, rtol=1e-4)
    assert ours["argmax"] == expected["argmax"]


def test_fingerprint_detects_a_changed_layer():
    """The comparison is sharp: GoogLeNet with the paper's 5x5 branch3 does not pass."""
    model = get_model("googlenet")
    conv = model.inception3a.branch3[1].conv
    model.inception3a.branch3[1].conv = torch.nn.Conv2d(conv.in_channels, conv.out_channels, 5, padding=2, bias=False)
    assert fingerprint(model, "googlenet")["state_dict"] != REFERENCE["googlenet"]["state_dict"]
