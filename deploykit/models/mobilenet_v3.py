"""MobileNet v3 small and large (Howard et al., 2019), torchvision layout."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from deploykit.models.layers import ConvBNAct, SqueezeExcitation, init_weights, make_divisible, normal
from deploykit.models.registry import Reference, register_model

BatchNorm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


@dataclass(frozen=True)
class BlockConfig:
    input_channels: int
    kernel: int
    expanded_channels: int
    out_channels: int
    use_se: bool
    use_hardswish: bool
    stride: int


def _config(width_mult: float, rows: list[tuple]) -> list[BlockConfig]:
    scale = lambda channels: make_divisible(channels * width_mult)  # noqa: E731
    return [BlockConfig(scale(i), k, scale(e), scale(o), se, act == "HS", s) for i, k, e, o, se, act, s in rows]


# input, kernel, expanded, output, SE, activation, stride
LARGE = [
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
]
SMALL = [
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
]


class InvertedResidual(nn.Module):
    def __init__(self, cnf: BlockConfig) -> None:
        super().__init__()
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        activation = nn.Hardswish if cnf.use_hardswish else nn.ReLU
        layers: list[nn.Module] = []
        if cnf.expanded_channels != cnf.input_channels:
            layers.append(ConvBNAct(cnf.input_channels, cnf.expanded_channels, 1, norm_layer=BatchNorm, activation_layer=activation))
        layers.append(ConvBNAct(cnf.expanded_channels, cnf.expanded_channels, cnf.kernel, cnf.stride, groups=cnf.expanded_channels, norm_layer=BatchNorm, activation_layer=activation))
        if cnf.use_se:
            squeeze = make_divisible(cnf.expanded_channels // 4)
            layers.append(SqueezeExcitation(cnf.expanded_channels, squeeze, scale_activation=nn.Hardsigmoid))
        layers.append(ConvBNAct(cnf.expanded_channels, cnf.out_channels, 1, norm_layer=BatchNorm, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = cnf.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_res_connect else self.block(x)


class MobileNetV3(nn.Module):
    def __init__(self, settings: list[BlockConfig], last_channel: int, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, settings[0].input_channels, 3, 2, norm_layer=BatchNorm, activation_layer=nn.Hardswish)]
        layers += [InvertedResidual(cnf) for cnf in settings]
        lastconv_channels = 6 * settings[-1].out_channels
        layers.append(ConvBNAct(settings[-1].out_channels, lastconv_channels, 1, norm_layer=BatchNorm, activation_layer=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(lastconv_channels, last_channel), nn.Hardswish(inplace=True), nn.Dropout(p=dropout, inplace=True), nn.Linear(last_channel, num_classes)
        )
        init_weights(self, linear=normal(0.01))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


_PAPER = "Searching for MobileNetV3 (2019)"


@register_model(family="mobilenet", paper=_PAPER, reference=Reference(params=5_483_032, gmacs=0.217, top1=74.04), torchvision_compatible=True)
def mobilenet_v3_large(num_classes: int = 1000, width_mult: float = 1.0, **kwargs) -> MobileNetV3:
    return MobileNetV3(_config(width_mult, LARGE), make_divisible(1280 * width_mult), num_classes=num_classes, **kwargs)


@register_model(family="mobilenet", paper=_PAPER, reference=Reference(params=2_542_856, gmacs=0.057, top1=67.67), torchvision_compatible=True)
def mobilenet_v3_small(num_classes: int = 1000, width_mult: float = 1.0, **kwargs) -> MobileNetV3:
    return MobileNetV3(_config(width_mult, SMALL), make_divisible(1024 * width_mult), num_classes=num_classes, **kwargs)
