"""VGG-11/13/16/19 with and without BatchNorm (Simonyan & Zisserman, 2014)."""

from __future__ import annotations

import torch
from torch import nn

from deploykit.models.layers import init_weights, normal
from deploykit.models.registry import Reference, register_model

# Channel counts of the conv layers; "M" is a 2x2 max-pool.
CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_features(config: list[int | str], batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(item)))
        layers.append(nn.ReLU(inplace=True))
        in_channels = int(item)
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, features: nn.Sequential, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout), nn.Linear(4096, num_classes)
        )
        init_weights(self, linear=normal(0.01))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _vgg(config: str, batch_norm: bool, num_classes: int, **kwargs) -> VGG:
    return VGG(make_features(CONFIGS[config], batch_norm), num_classes=num_classes, **kwargs)


_PAPER = "Very Deep Convolutional Networks for Large-Scale Image Recognition (2014)"


def _register(params: int, gmacs: float, top1: float):
    return register_model(family="vgg", paper=_PAPER, reference=Reference(params=params, gmacs=gmacs, top1=top1), torchvision_compatible=True)


@_register(132_863_336, 7.609, 69.02)
def vgg11(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("A", False, num_classes, **kwargs)


@_register(132_868_840, 7.609, 70.37)
def vgg11_bn(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("A", True, num_classes, **kwargs)


@_register(133_047_848, 11.308, 69.93)
def vgg13(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("B", False, num_classes, **kwargs)


@_register(133_053_736, 11.308, 71.59)
def vgg13_bn(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("B", True, num_classes, **kwargs)


@_register(138_357_544, 15.47, 71.59)
def vgg16(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("D", False, num_classes, **kwargs)


@_register(138_365_992, 15.47, 73.36)
def vgg16_bn(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("D", True, num_classes, **kwargs)


@_register(143_667_240, 19.632, 72.38)
def vgg19(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("E", False, num_classes, **kwargs)


@_register(143_678_248, 19.632, 74.22)
def vgg19_bn(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("E", True, num_classes, **kwargs)
