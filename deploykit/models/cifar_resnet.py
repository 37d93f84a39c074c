"""CIFAR ResNet-20/56/110 (He et al., 2015, section 4.2): three stages of 16/32/64 channels at 32x32.

The paper's option A shortcut (zero-padded identity) is replaced by option B (1x1 conv + BN
projection) where the shape changes: two small projections (about 2.7k parameters) that keep
channel pruning dependency-aware, since a zero-padded identity ties channels no pruner can follow.
"""

from __future__ import annotations

import torch
from torch import nn

from deploykit.models.layers import init_weights
from deploykit.models.registry import Reference, register_model
from deploykit.models.resnet import BasicBlock, conv1x1

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class CifarResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        blocks = (depth - 2) // 6
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(width, blocks, 1)
        self.layer2 = self._make_layer(width * 2, blocks, 2)
        self.layer3 = self._make_layer(width * 4, blocks, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 4, num_classes)
        init_weights(self)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _register(params: int, gmacs: float, top1: float):
    return register_model(
        family="cifar_resnet",
        paper="Deep Residual Learning for Image Recognition (2015), CIFAR-10 nets",
        input_size=32,
        min_input_size=8,
        num_classes=10,
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
        reference=Reference(params=params, gmacs=gmacs, top1=top1, source="He et al. 2015, Table 6 (CIFAR-10, option A)", params_exact=False),
    )


@_register(270_000, 0.041, 91.25)
def cifar_resnet20(num_classes: int = 10, **kwargs) -> CifarResNet:
    return CifarResNet(20, num_classes=num_classes, **kwargs)


@_register(850_000, 0.125, 93.03)
def cifar_resnet56(num_classes: int = 10, **kwargs) -> CifarResNet:
    return CifarResNet(56, num_classes=num_classes, **kwargs)


@_register(1_700_000, 0.253, 93.57)
def cifar_resnet110(num_classes: int = 10, **kwargs) -> CifarResNet:
    return CifarResNet(110, num_classes=num_classes, **kwargs)
