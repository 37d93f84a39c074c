"""EfficientNet-B0 (Tan & Le, 2019), the NAS-found baseline of the family; torchvision layout."""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from deploykit.models.layers import ConvBNAct, SqueezeExcitation, StochasticDepth, init_weights, kaiming_normal, make_divisible, uniform_by_outputs
from deploykit.models.registry import Reference, register_model

# expansion, kernel, stride, input channels, output channels, repeats (B0 at width and depth 1.0)
B0_STAGES = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]


class MBConv(nn.Module):
    def __init__(self, expand_ratio: int, kernel: int, stride: int, in_channels: int, out_channels: int, stochastic_depth_prob: float) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and in_channels == out_channels
        expanded = make_divisible(in_channels * expand_ratio)
        layers: list[nn.Module] = []
        if expanded != in_channels:
            layers.append(ConvBNAct(in_channels, expanded, 1, activation_layer=nn.SiLU))
        layers += [
            ConvBNAct(expanded, expanded, kernel, stride, groups=expanded, activation_layer=nn.SiLU),
            SqueezeExcitation(expanded, max(1, in_channels // 4), activation=partial(nn.SiLU, inplace=True)),
            ConvBNAct(expanded, out_channels, 1, activation_layer=None),
        ]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        return self.stochastic_depth(result) + x if self.use_res_connect else result


class EfficientNet(nn.Module):
    def __init__(self, width_mult: float = 1.0, depth_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2, stochastic_depth_prob: float = 0.2) -> None:
        super().__init__()
        stages = [(t, k, s, make_divisible(i * width_mult), make_divisible(o * width_mult), math.ceil(n * depth_mult)) for t, k, s, i, o, n in B0_STAGES]
        total_blocks = sum(stage[-1] for stage in stages)
        layers: list[nn.Module] = [ConvBNAct(3, stages[0][3], 3, 2, activation_layer=nn.SiLU)]
        block_id = 0
        for expand, kernel, stride, in_ch, out_ch, repeats in stages:
            blocks = []
            for index in range(repeats):
                sd_prob = stochastic_depth_prob * block_id / total_blocks
                blocks.append(MBConv(expand, kernel, stride if index == 0 else 1, in_ch if index == 0 else out_ch, out_ch, sd_prob))
                block_id += 1
            layers.append(nn.Sequential(*blocks))
        last_in = stages[-1][4]
        layers.append(ConvBNAct(last_in, 4 * last_in, 1, activation_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(4 * last_in, num_classes))
        init_weights(self, conv=kaiming_normal("leaky_relu"), linear=uniform_by_outputs())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model(
    family="nas",
    paper="EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks (2019)",
    reference=Reference(params=5_288_548, gmacs=0.386, top1=77.69),
    torchvision_compatible=True,
)
def efficientnet_b0(num_classes: int = 1000, **kwargs) -> EfficientNet:
    return EfficientNet(1.0, 1.0, num_classes=num_classes, **kwargs)
