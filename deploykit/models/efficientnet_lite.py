"""EfficientNet-Lite0 (Google, 2020): EfficientNet-B0 made for int8 edge devices.

ReLU6 instead of SiLU, no squeeze-and-excitation, stem and head kept at 32 and 1280 channels, and
TensorFlow's "SAME" padding (asymmetric on stride-2 layers). Attribute names are those of the
``efficientnet_pytorch`` layout (``_conv_stem``, ``_blocks.N._depthwise_conv``, ...), in which its
published ImageNet checkpoint (``efficientnet-lite0-57934424.pth``) is saved, so that file loads
with ``strict=True``. Its preprocessing is TensorFlow's: mean 127/255, std 128/255 per channel.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from deploykit.models.efficientnet import B0_STAGES
from deploykit.models.layers import StochasticDepth, init_weights, kaiming_normal, uniform_by_outputs
from deploykit.models.registry import Reference, register_model

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow's 0.99 in PyTorch's convention
TF_MEAN = (127 / 255,) * 3
TF_STD = (128 / 255,) * 3


class SamePadConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's SAME padding: output size ceil(input / stride), the extra pixel at the end."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


class LiteMBConv(nn.Module):
    """Inverted residual without SE: [expand 1x1] -> depthwise kxk -> project 1x1, ReLU6 between."""

    def __init__(self, expand_ratio: int, kernel: int, stride: int, in_channels: int, out_channels: int, drop_prob: float) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        if expand_ratio != 1:
            self._expand_conv = SamePadConv2d(in_channels, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._depthwise_conv = SamePadConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._project_conv = SamePadConv2d(hidden, out_channels, 1)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.stochastic_depth = StochasticDepth(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return self.stochastic_depth(out) + x if self.use_res_connect else out


class EfficientNetLite(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, drop_connect_rate: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = SamePadConv2d(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS, momentum=BN_MOMENTUM)
        blocks: list[nn.Module] = []
        total = sum(stage[-1] for stage in B0_STAGES)
        for expand, kernel, stride, in_channels, out_channels, repeats in B0_STAGES:
            for index in range(repeats):
                blocks.append(
                    LiteMBConv(expand, kernel, stride if index == 0 else 1, in_channels if index == 0 else out_channels, out_channels, drop_connect_rate * len(blocks) / total)
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SamePadConv2d(B0_STAGES[-1][4], 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)
        init_weights(self, conv=kaiming_normal("leaky_relu", zero_bias=False), linear=uniform_by_outputs())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(self._dropout(torch.flatten(self._avg_pooling(x), 1)))


@register_model(
    family="nas",
    paper="EfficientNet-Lite (TensorFlow model garden, 2020): EfficientNet for int8 edge devices",
    reference=Reference(params=4_652_008, gmacs=0.385, top1=75.1, source="TensorFlow EfficientNet-Lite"),
    mean=TF_MEAN,
    std=TF_STD,
)
def efficientnet_lite0(num_classes: int = 1000, **kwargs) -> EfficientNetLite:
    return EfficientNetLite(num_classes=num_classes, **kwargs)
