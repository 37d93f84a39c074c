"""SqueezeNet 1.0 and 1.1 (Iandola et al., 2016), torchvision layout."""

from __future__ import annotations

import torch
from torch import nn

from deploykit.models.layers import init_weights
from deploykit.models.registry import Reference, register_model


class Fire(nn.Module):
    def __init__(self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1)


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


class SqueezeNet(nn.Module):
    def __init__(self, version: str = "1_0", num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        if version == "1_0":
            self.features = nn.Sequential(
                nn.Conv2d(3, 96, kernel_size=7, stride=2),
                nn.ReLU(inplace=True),
                _pool(),
                Fire(96, 16, 64, 64),
                Fire(128, 16, 64, 64),
                Fire(128, 32, 128, 128),
                _pool(),
                Fire(256, 32, 128, 128),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                _pool(),
                Fire(512, 64, 256, 256),
            )
        elif version == "1_1":
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=3, stride=2),
                nn.ReLU(inplace=True),
                _pool(),
                Fire(64, 16, 64, 64),
                Fire(128, 16, 64, 64),
                _pool(),
                Fire(128, 32, 128, 128),
                Fire(256, 32, 128, 128),
                _pool(),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                Fire(512, 64, 256, 256),
            )
        else:
            raise ValueError(f"unsupported SqueezeNet version {version!r}: expected '1_0' or '1_1'")
        final_conv = nn.Conv2d(512, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)))

        def initialize(module: nn.Module) -> None:
            nn.init.normal_(module.weight, mean=0.0, std=0.01) if module is final_conv else nn.init.kaiming_uniform_(module.weight)
            nn.init.zeros_(module.bias)

        init_weights(self, conv=initialize)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


_PAPER = "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size (2016)"


@register_model(family="squeezenet", paper=_PAPER, reference=Reference(params=1_248_424, gmacs=0.819, top1=58.09), torchvision_compatible=True)
def squeezenet1_0(num_classes: int = 1000, **kwargs) -> SqueezeNet:
    return SqueezeNet("1_0", num_classes=num_classes, **kwargs)


@register_model(family="squeezenet", paper=_PAPER, reference=Reference(params=1_235_496, gmacs=0.349, top1=58.18), torchvision_compatible=True)
def squeezenet1_1(num_classes: int = 1000, **kwargs) -> SqueezeNet:
    return SqueezeNet("1_1", num_classes=num_classes, **kwargs)
