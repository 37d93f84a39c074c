"""Building blocks shared by several families, named as torchvision names them."""

from __future__ import annotations

import math
from collections.abc import Callable

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
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation, groups=groups, bias=norm_layer is None)]
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

    def __init__(self, channels: int, squeeze_channels: int, activation: LayerFactory = nn.ReLU, scale_activation: LayerFactory = nn.Sigmoid) -> None:
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


Initializer = Callable[[nn.Module], None]


def init_weights(model: nn.Module, conv: Initializer | None = None, linear: Initializer | None = None) -> None:
    """The one initialisation loop of every builder: ``conv`` on each Conv2d, ``linear`` on each Linear (None keeps
    PyTorch's own), unit weight and zero bias on each BatchNorm and GroupNorm. The defaults are torchvision's for
    ResNet: Kaiming-normal (fan_out) convs and PyTorch's linears."""
    conv = conv or kaiming_normal()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            conv(module)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear is not None:
            linear(module)


def kaiming_normal(nonlinearity: str = "relu", zero_bias: bool = True) -> Initializer:
    """Kaiming-normal weights (fan_out); zero bias where there is one, unless ``zero_bias`` is False."""

    def initialize(module: nn.Module) -> None:
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity=nonlinearity)
        if zero_bias:
            _zero_bias(module)

    return initialize


def normal(std: float) -> Initializer:
    """Normal(0, std) weights, zero bias."""

    def initialize(module: nn.Module) -> None:
        nn.init.normal_(module.weight, 0.0, std)
        _zero_bias(module)

    return initialize


def truncated_normal(std: float) -> Initializer:
    """Truncated normal(0, std) weights within [-2, 2]; the bias is left as built (GoogLeNet, Inception)."""
    return lambda module: nn.init.trunc_normal_(module.weight, mean=0.0, std=std, a=-2, b=2)


def uniform_by_outputs() -> Initializer:
    """Uniform(+-1/sqrt(outputs)) weights, zero bias (EfficientNet's classifier)."""

    def initialize(module: nn.Module) -> None:
        bound = 1.0 / math.sqrt(module.out_features)
        nn.init.uniform_(module.weight, -bound, bound)
        _zero_bias(module)

    return initialize


def _zero_bias(module: nn.Module) -> None:
    if module.bias is not None:
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


def replace_classifier(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the classifier layer for a freshly initialised one with ``num_classes`` outputs (fine-tuning onto new
    classes); returns the new layer, whose parameters the caller may train at their own rate."""
    old = classifier_layer(model)
    path = next(name for name, module in model.named_modules() if module is old)
    parent_name, _, attribute = path.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        nn.init.normal_(new.weight, 0.0, 0.01)
    else:
        new = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride, old.padding, bias=old.bias is not None)
        nn.init.normal_(new.weight, 0.0, 0.01)
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    setattr(parent, attribute, new)
    return new


def drop_aux_heads(model: nn.Module) -> None:
    """Remove GoogLeNet's and Inception v3's auxiliary heads: they exist for training from scratch only."""
    for name in ("aux1", "aux2", "AuxLogits"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
    if hasattr(model, "aux_logits"):
        model.aux_logits = False
