"""Pre-activation ResNet (He et al., "Identity Mappings in Deep Residual Networks", 2016).

Each block computes BN-ReLU-conv twice and adds an untouched identity; a projection shortcut, where
needed, reads the pre-activated input. The stem is conv + max-pool (the first block's pre-activation
supplies its BN-ReLU), and a final BN-ReLU precedes global pooling.
"""

from __future__ import annotations

import torch
from torch import nn

from deploykit.models.layers import init_weights
from deploykit.models.registry import register_model
from deploykit.models.resnet import conv1x1, conv3x3


class PreActBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.relu = nn.ReLU(inplace=True)
        needs_projection = stride != 1 or inplanes != planes * self.expansion
        self.downsample = conv1x1(inplanes, planes * self.expansion, stride) if needs_projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + shortcut


class PreActBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv1x1(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        needs_projection = stride != 1 or inplanes != planes * self.expansion
        self.downsample = conv1x1(inplanes, planes * self.expansion, stride) if needs_projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + shortcut


PreActBlock = type[PreActBasicBlock] | type[PreActBottleneck]


class PreActResNet(nn.Module):
    def __init__(self, block: PreActBlock, layers: list[int], num_classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], 1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.bn_final = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, num_classes)
        init_weights(self)

    def _make_layer(self, block: PreActBlock, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for index in range(blocks):
            layers.append(block(self.inplanes, planes, stride if index == 0 else 1))
            self.inplanes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.relu(self.bn_final(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


_PAPER = "Identity Mappings in Deep Residual Networks (2016)"


@register_model(family="preact_resnet", paper=_PAPER)
def preact_resnet18(num_classes: int = 1000) -> PreActResNet:
    return PreActResNet(PreActBasicBlock, [2, 2, 2, 2], num_classes=num_classes)


@register_model(family="preact_resnet", paper=_PAPER)
def preact_resnet34(num_classes: int = 1000) -> PreActResNet:
    return PreActResNet(PreActBasicBlock, [3, 4, 6, 3], num_classes=num_classes)


@register_model(family="preact_resnet", paper=_PAPER)
def preact_resnet50(num_classes: int = 1000) -> PreActResNet:
    return PreActResNet(PreActBottleneck, [3, 4, 6, 3], num_classes=num_classes)


@register_model(family="preact_resnet", paper=_PAPER)
def preact_resnet101(num_classes: int = 1000) -> PreActResNet:
    return PreActResNet(PreActBottleneck, [3, 4, 23, 3], num_classes=num_classes)
