"""Every registered model builds, runs and has the published size: parametrised over the registry."""

import pytest
import torch

from deploykit.models import get_model, get_spec, list_models
from deploykit.profile import profile_model

ALL_MODELS = list_models()
# Smaller heads keep the forward test fast; the class count is part of what is checked.
NUM_CLASSES = 7


def _meta_build(name: str, **kwargs):
    with torch.device("meta"):
        return get_model(name, **kwargs)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_at_smallest_valid_resolution(name):
    spec = get_spec(name)
    torch.manual_seed(0)
    model = get_model(name, num_classes=NUM_CLASSES).eval()
    size = spec.min_input_size
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, NUM_CLASSES)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name, size, aux_count", [("googlenet", 64, 2), ("inception_v3", 299, 1)])
def test_aux_outputs_only_in_training_mode(name, size, aux_count):
    torch.manual_seed(0)
    model = get_model(name, num_classes=NUM_CLASSES)
    x = torch.randn(2, 3, size, size)
    model.train()
    outputs = model(x)
    assert len(outputs) == 1 + aux_count
    assert all(o.shape == (2, NUM_CLASSES) for o in outputs)
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, NUM_CLASSES)


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_aux_heads_can_be_left_out(name):
    model = _meta_build(name, aux_logits=False).train()
    assert not any(key.startswith(("aux", "AuxLogits")) for key in model.state_dict())


WITH_REFERENCE = [name for name in ALL_MODELS if get_spec(name).reference is not None]


@pytest.mark.parametrize("name", WITH_REFERENCE)
def test_params_and_macs_match_reference(name):
    spec = get_spec(name)
    ref = spec.reference
    profile = profile_model(_meta_build(name, **ref.build_kwargs), (1, *spec.input_shape))
    if ref.params_exact:
        assert profile.params == ref.params
    else:
        assert profile.params == pytest.approx(ref.params, rel=0.02)
    assert profile.macs / 1e9 == pytest.approx(ref.gmacs, rel=0.02)


def test_every_torchvision_model_has_a_reference():
    missing = [n for n in ALL_MODELS if get_spec(n).torchvision_compatible and get_spec(n).reference is None]
    assert missing == []


def test_width_multipliers_shrink_mobilenets():
    for name in ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small"):
        full = profile_model(_meta_build(name), (1, 3, 224, 224))
        half = profile_model(_meta_build(name, width_mult=0.5), (1, 3, 224, 224))
        assert half.params < full.params and half.macs < 0.5 * full.macs


def test_cifar_resnet_rejects_invalid_depth():
    from deploykit.models.cifar_resnet import CifarResNet

    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(21)
