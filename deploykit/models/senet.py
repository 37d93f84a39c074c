"""SE-ResNet-50 and SE-ResNeXt-50 32x4d (Hu et al., 2017): ResNet bottlenecks with squeeze-and-excitation.

Not in torchvision. Layout follows torchvision's ResNet (v1.5 stride placement) with one
``SqueezeExcitation`` (reduction 16, ``se.fc1``/``se.fc2``) per bottleneck, applied before the residual add.
"""

from deploykit.models.registry import Reference, register_model
from deploykit.models.resnet import Bottleneck, ResNet

_PAPER = "Squeeze-and-Excitation Networks (2017)"


@register_model(family="senet", paper=_PAPER, reference=Reference(params=28_088_024, gmacs=4.13, top1=77.7, source="Hu et al. / Cadene pretrainedmodels"))
def se_resnet50(num_classes: int = 1000, **kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, se_reduction=16, **kwargs)


@register_model(family="senet", paper=_PAPER, reference=Reference(params=27_559_896, gmacs=4.25, top1=79.0, source="Hu et al. / Cadene pretrainedmodels"))
def se_resnext50_32x4d(num_classes: int = 1000, **kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, groups=32, width_per_group=4, se_reduction=16, **kwargs)
