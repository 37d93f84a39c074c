"""MobileNet v1 (Howard et al., 2017): depthwise separable convolutions with a width multiplier.

Not in torchvision; follows the Keras reference (ReLU6, BatchNorm after every conv, 1x1 classifier
with bias). Keras counts BatchNorm moving statistics as parameters (4,253,864 in all); PyTorch keeps
them as buffers, so the same network has 4,231,976 parameters here.
"""

from __future__ import annotations

import torch
from torch import nn

from deploykit.models.layers import ConvBNAct, init_weights, normal
from deploykit.models.registry import Reference, register_model

# (output channels, stride) of each depthwise separable block.
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


class DepthwiseSeparable(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.dw = ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels, activation_layer=nn.ReLU6)
        self.pw = ConvBNAct(in_channels, out_channels, 1, activation_layer=nn.ReLU6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.001) -> None:
        super().__init__()
        channels = int(32 * width_mult)
        layers: list[nn.Module] = [ConvBNAct(3, channels, 3, 2, activation_layer=nn.ReLU6)]
        for out_channels, stride in BLOCKS:
            layers.append(DepthwiseSeparable(channels, int(out_channels * width_mult), stride))
            channels = int(out_channels * width_mult)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(channels, num_classes))
        init_weights(self, linear=normal(0.01))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model(
    family="mobilenet",
    paper="MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications (2017)",
    reference=Reference(params=4_231_976, gmacs=0.57, top1=70.4, source="Keras applications (BN statistics excluded)"),
)
def mobilenet_v1(num_classes: int = 1000, **kwargs) -> MobileNetV1:
    return MobileNetV1(num_classes=num_classes, **kwargs)
