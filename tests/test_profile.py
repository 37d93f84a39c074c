import torch
from torch import nn

from deploykit.profile import count_params, profile_model


def test_macs_of_a_small_network_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    profile = profile_model(model, (1, 3, 16, 16))
    conv_macs = 8 * 16 * 16 * 3 * 3 * 3
    linear_macs = 8 * 16 * 16 * 10
    assert profile.macs == conv_macs + linear_macs
    assert profile.flops == 2 * profile.macs
    assert profile.params == count_params(model) == (8 * 27 + 8) + (2048 * 10 + 10)


def test_profile_leaves_the_model_untouched():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    profile_model(model, (2, 3, 8, 8))
    assert all(not v.is_meta and torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_stage_summary_opens_features_and_records_shapes():
    from deploykit.models import get_model

    with torch.device("meta"):
        model = get_model("vgg11")
    profile = profile_model(model, (1, 3, 224, 224))
    names = [stage.name for stage in profile.stages]
    assert names[0] == "features.0" and "avgpool" in names and "classifier" in names
    by_name = {stage.name: stage for stage in profile.stages}
    assert by_name["features.0"].output_shape == (1, 64, 224, 224)
    assert by_name["classifier"].output_shape == (1, 1000)
    assert sum(stage.macs for stage in profile.stages) == profile.macs
    assert sum(stage.params for stage in profile.stages) == profile.params
