"""Building blocks shared by several families, named as torchvision names them."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

LayerFactory = Callable[..., nn.Module]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` without going more than 10% below it."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNAct(nn.Sequential):
    """Conv2d, BatchNorm and an activation as ``[0, 1, 2]`` (torchvision's Conv2dNormActivation layout)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        norm_layer: LayerFactory | None = nn.BatchNorm2d,
        activation_layer: LayerFactory | None = nn.ReLU,
    ) -> None:
        padding = (kernel_size - 1) // 2 * dilation
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding,
                dilation=dilation, groups=groups, bias=norm_layer is None,
            )
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm(eps=0.001) + ReLU, as GoogLeNet and Inception v3 name it."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al., 2018) with 1x1 convolutions ``fc1``/``fc2``."""

    def __init__(
        self,
        channels: int,
        squeeze_channels: int,
        activation: LayerFactory = nn.ReLU,
        scale_activation: LayerFactory = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class StochasticDepth(nn.Module):
    """Drop a residual branch per sample with probability ``p`` in training (Huang et al., 2016)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = torch.empty([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype, device=x.device)
        return x * noise.bernoulli_(survival).div_(survival)


def init_conv_bn_linear(model: nn.Module, linear_std: float | None = 0.01) -> None:
    """Kaiming-normal (fan_out) convs, unit BatchNorm, normal(0, linear_std) linears, zero biases.

    ``linear_std=None`` keeps PyTorch's default Linear initialisation.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear_std is not None:
            nn.init.normal_(module.weight, 0, linear_std)
            nn.init.zeros_(module.bias)


def classifier_layer(model: nn.Module) -> nn.Module:
    """The layer that outputs the class scores: the last Linear or Conv2d in module order, in every registry model.

    (Auxiliary heads of GoogLeNet/Inception come before it in the order, or are dropped for pruning.)
    """
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise ValueError("the model has no Linear or Conv2d layer")
    return layers[-1]


def classifier_outputs(model: nn.Module) -> int:
    """How many classes the model scores (its classifier layer's outputs)."""
    layer = classifier_layer(model)
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
