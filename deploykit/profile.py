"""Parameter and MAC counts, and a per-stage summary, computed on the meta device (no real compute).

MACs are multiply-accumulates of convolutions and matrix products (torch's FlopCounterMode, whose
FLOPs are 2 x MACs); element-wise work (BatchNorm, activations, pooling, adds) is not counted, the
same convention as torchvision's published GFLOPS figures.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class StageSummary:
    name: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass(frozen=True)
class Profile:
    params: int
    macs: int
    input_shape: tuple[int, ...]
    stages: list[StageSummary]

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def inference_params(self) -> int:
        """Parameters used in eval mode: excludes training-only stages such as auxiliary heads."""
        return self.params - sum(stage.params for stage in self.stages if not stage.output_shape)


def count_params(model: nn.Module) -> int:
    """Number of parameters (BatchNorm running statistics are buffers and do not count)."""
    return sum(p.numel() for p in model.parameters())


def stage_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The top-level children, with a ``features``/``layers`` Sequential opened one level."""
    stages = []
    for name, child in model.named_children():
        if name in ("features", "layers") and isinstance(child, nn.Sequential):
            stages += [(f"{name}.{sub}", module) for sub, module in child.named_children()]
        else:
            stages.append((name, child))
    return stages


def profile_model(model: nn.Module, input_shape: tuple[int, ...]) -> Profile:
    """Count params and MACs for one eval-mode forward pass of ``input_shape`` (N, C, H, W).

    The model is copied to the meta device, so this is fast even for VGG-19 and touches no weights.
    """
    meta = _to_meta(model).eval()
    stages = stage_modules(meta)
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [module.register_forward_hook(_shape_recorder(shapes, name)) for name, module in stages]
    try:
        with FlopCounterMode(display=False, depth=None) as counter, torch.no_grad():
            meta(torch.empty(input_shape, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    flops_by_module = counter.get_flop_counts()
    root = type(meta).__name__
    summaries = [StageSummary(name, shapes.get(name, ()), count_params(module), sum(flops_by_module.get(f"{root}.{name}", {}).values()) // 2) for name, module in stages]
    return Profile(count_params(meta), counter.get_total_flops() // 2, tuple(input_shape), summaries)


def _to_meta(model: nn.Module) -> nn.Module:
    if all(t.is_meta for t in model.state_dict().values()):
        return model
    return copy.deepcopy(model).to("meta")


def _shape_recorder(shapes: dict[str, tuple[int, ...]], name: str):
    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(output, torch.Tensor):
            shapes[name] = tuple(output.shape)

    return hook
