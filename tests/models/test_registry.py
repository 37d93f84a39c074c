import pytest

from deploykit import DeployKitError
from deploykit.models import get_model, get_spec, list_models, register_model
from deploykit.models.registry import ALIASES

EXPECTED_ARCHITECTURES = {
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
    "preact_resnet18",
    "preact_resnet50",
    "cifar_resnet20",
    "cifar_resnet56",
    "cifar_resnet110",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "se_resnet50",
    "se_resnext50_32x4d",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "mobilenet_v1",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "squeezenet1_0",
    "squeezenet1_1",
    "mnasnet1_0",
    "efficientnet_b0",
    "efficientnet_lite0",
}


def test_every_architecture_is_registered():
    assert EXPECTED_ARCHITECTURES <= set(list_models())


def test_list_models_filters_with_shell_patterns():
    assert list_models("densenet*") == ["densenet121", "densenet161", "densenet169", "densenet201"]
    assert list_models("VGG19*") == ["vgg19", "vgg19_bn"]
    assert list_models("no_such_*") == []


@pytest.mark.parametrize(
    "alias, name",
    [
        ("mobilenet", "mobilenet_v2"),
        ("resnet", "resnet50"),
        ("inception", "inception_v3"),
        ("inception_v1", "googlenet"),
        ("googlenet", "googlenet"),
        ("vgg", "vgg16"),
        ("ResNet-50", "resnet50"),
    ],
)
def test_aliases_resolve(alias, name):
    assert get_spec(alias).name == name


def test_every_alias_points_at_a_registered_model():
    assert set(ALIASES.values()) <= set(list_models())


def test_unknown_name_lists_close_matches():
    with pytest.raises(DeployKitError, match=r"unknown model 'resnet5'; did you mean .*resnet50"):
        get_model("resnet5")


def test_unknown_name_without_close_match_points_to_list():
    with pytest.raises(DeployKitError, match="deploykit list"):
        get_spec("zzzzzz")


def test_bad_builder_argument_is_a_user_error():
    with pytest.raises(DeployKitError, match="cannot build resnet18"):
        get_model("resnet18", no_such_option=1)


def test_registering_a_name_twice_fails():
    with pytest.raises(ValueError, match="registered twice"):
        register_model(family="resnet", paper="-")(get_spec("resnet18").builder)
