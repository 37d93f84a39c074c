"""ResNet (He et al., 2015), Wide ResNet and ResNeXt, torchvision layout.

ResNet-50 and deeper are "v1.5": the stride of a downsampling bottleneck sits in its 3x3 conv.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from deploykit.models.layers import SqueezeExcitation, init_weights, kaiming_normal
from deploykit.models.registry import Reference, register_model


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, groups: int = 1, base_width: int = 64, se_reduction: int = 0) -> None:
        super().__init__()
        if groups != 1 or base_width != 64 or se_reduction:
            raise ValueError("BasicBlock supports only groups=1, base_width=64 and no SE")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt, carries the stride), 1x1 expand; optional SE before the add."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, groups: int = 1, base_width: int = 64, se_reduction: int = 0) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        out_planes = planes * self.expansion
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_planes)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.se = SqueezeExcitation(out_planes, out_planes // se_reduction) if se_reduction else None
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    def __init__(
        self, block: Block, layers: list[int], num_classes: int = 1000, zero_init_residual: bool = False, groups: int = 1, width_per_group: int = 64, se_reduction: int = 0
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.block_kwargs = {"groups": groups, "base_width": width_per_group, "se_reduction": se_reduction}
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        init_weights(self, conv=kaiming_normal(zero_bias=False))  # torchvision leaves conv biases (SE blocks) as built
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.zeros_(module.bn3.weight)
                elif isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, **self.block_kwargs)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, **self.block_kwargs) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _register(params: int, gmacs: float, top1: float, paper: str = "Deep Residual Learning for Image Recognition (2015)", family: str = "resnet") -> Callable:
    return register_model(family=family, paper=paper, reference=Reference(params=params, gmacs=gmacs, top1=top1), torchvision_compatible=True)


@_register(11_689_512, 1.814, 69.76)
def resnet18(num_classes: int = 1000, **kwargs) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, **kwargs)


@_register(21_797_672, 3.664, 73.31)
def resnet34(num_classes: int = 1000, **kwargs) -> ResNet:
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes=num_classes, **kwargs)


@_register(25_557_032, 4.089, 76.13)
def resnet50(num_classes: int = 1000, **kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, **kwargs)


@_register(44_549_160, 7.801, 77.37)
def resnet101(num_classes: int = 1000, **kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes=num_classes, **kwargs)


@_register(60_192_808, 11.514, 78.31)
def resnet152(num_classes: int = 1000, **kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes=num_classes, **kwargs)


@_register(68_883_240, 11.398, 78.47, paper="Wide Residual Networks (2016)")
def wide_resnet50_2(num_classes: int = 1000, **kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, width_per_group=128, **kwargs)


_RESNEXT_PAPER = "Aggregated Residual Transformations for Deep Neural Networks (2016)"


@_register(25_028_904, 4.23, 77.62, paper=_RESNEXT_PAPER, family="resnext")
def resnext50_32x4d(num_classes: int = 1000, **kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, groups=32, width_per_group=4, **kwargs)


@_register(88_791_336, 16.414, 79.31, paper=_RESNEXT_PAPER, family="resnext")
def resnext101_32x8d(num_classes: int = 1000, **kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes=num_classes, groups=32, width_per_group=8, **kwargs)
