"""Structured channel pruning with torch-pruning: real, narrower layers, dependency-aware.

torch-pruning's DependencyGraph keeps coupled channels together (residual adds, concatenations in
Inception/DenseNet, grouped and depthwise convolutions, SE blocks), so the result is an ordinary,
smaller nn.Module. The classifier's output layer is never pruned; auxiliary heads (GoogLeNet,
Inception v3) are removed first, since they only exist for training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deploykit.choices import PRUNE_METHODS
from deploykit.compress.configs import PruneConfig
from deploykit.errors import DeployKitError
from deploykit.models.layers import classifier_layer, drop_aux_heads
from deploykit.profile import Profile, count_params, profile_model


@dataclass(frozen=True)
class PruneResult:
    model: nn.Module
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int


def check_request(model: nn.Module, input_shape: tuple[int, int, int, int], config: PruneConfig) -> Profile:
    """The options checked, then the model's profile at ``input_shape``: a ``target_macs`` the model already meets is
    refused in one line. Cheap (the profile runs on the meta device): callers run it before they write anything."""
    _check(config)
    before = profile_model(model, input_shape)
    if config.target_macs and config.target_macs >= before.macs:
        raise DeployKitError(
            f"--target-macs {config.target_macs / 1e9:.3g} G is not below the model's {before.macs / 1e9:.3g} "
            "GMACs at this input size, so there is nothing to prune: give a smaller --target-macs"
        )
    return before


def prune_model(model: nn.Module, input_shape: tuple[int, int, int, int], config: PruneConfig, data: torch.Tensor | None = None) -> PruneResult:
    """Prune ``model`` in place and return it with its size before and after.

    The classifier layer keeps its outputs (one per class); ``data`` (a batch of real inputs) drives the
    Taylor importance, random inputs otherwise.
    """
    import torch_pruning as tp

    drop_aux_heads(model)
    model.eval()
    example = torch.randn(input_shape)
    before = check_request(model, input_shape, config)
    importance = {
        "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
        "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
        "taylor": lambda: tp.importance.GroupTaylorImportance(),
        "bn-scale": lambda: tp.importance.BNScaleImportance(),
    }[config.method]()
    steps = config.steps if config.target_macs else 1
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=importance,
        global_pruning=config.global_pruning,
        pruning_ratio=config.ratio if config.ratio else 0.95,
        iterative_steps=steps,
        ignored_layers=[classifier_layer(model)],
        round_to=config.round_to,
    )
    for _ in range(steps):
        if config.method == "taylor":
            _taylor_gradients(model, data if data is not None else torch.randn(8, *input_shape[1:]))
        pruner.step()
        if config.target_macs and profile_model(model, input_shape).macs <= config.target_macs:
            break
    model.zero_grad(set_to_none=True)
    after = profile_model(model, input_shape)
    if config.target_macs and after.macs > config.target_macs:
        raise DeployKitError(f"could not reach {config.target_macs / 1e9:.3f} GMACs (got {after.macs / 1e9:.3f}); ask for fewer MACs less aggressively")
    return PruneResult(model.eval(), before.params, count_params(model), before.macs, after.macs)


def _check(config: PruneConfig) -> None:
    if (config.ratio is None) == (config.target_macs is None):
        raise DeployKitError("give exactly one of --ratio and --target-macs")
    if config.ratio is not None and not 0 < config.ratio < 1:
        raise DeployKitError(f"--ratio must be between 0 and 1 (exclusive), got {config.ratio}")
    if config.target_macs is not None and config.target_macs <= 0:
        raise DeployKitError(f"--target-macs must be positive, got {config.target_macs / 1e9:g} (GMACs)")
    if config.method not in PRUNE_METHODS:
        raise DeployKitError(f"unknown pruning method {config.method!r}; choose one of {', '.join(PRUNE_METHODS)}")


def _taylor_gradients(model: nn.Module, batch: torch.Tensor) -> None:
    """Gradients for Taylor importance: of the log-probability of each input's predicted class."""
    model.zero_grad(set_to_none=True)
    logits = model(batch)
    torch.log_softmax(logits, dim=1).max(dim=1).values.sum().backward()
