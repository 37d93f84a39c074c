"""The model registry: ``register_model``, ``get_model``, ``list_models`` and each entry's ``ModelSpec``."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

import torch
from torch import nn

from deploykit.choices import IMAGENET_MEAN, IMAGENET_STD
from deploykit.errors import DeployKitError

if TYPE_CHECKING:
    from deploykit.models.sources import Weights


@dataclass(frozen=True)
class Reference:
    """Published figures for a model, and the builder arguments they were measured with.

    ``params_exact`` is False where the source rounds its parameter count (papers' "0.27M").
    """

    params: int
    gmacs: float
    top1: float | None = None
    source: str = "torchvision"
    build_kwargs: dict[str, Any] = field(default_factory=dict)
    params_exact: bool = True


@dataclass(frozen=True)
class ModelSpec:
    """What deploykit knows about a registered architecture."""

    name: str
    family: str
    builder: Callable[..., nn.Module]
    paper: str
    input_size: int = 224
    min_input_size: int = 32
    num_classes: int = 1000
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    reference: Reference | None = None
    torchvision_compatible: bool = False
    has_aux_outputs: bool = False

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Default (C, H, W) input shape."""
        return (3, self.input_size, self.input_size)

    def checked_input_size(self, size: int | None) -> int:
        """``size`` (the model's own when None), refused in one line when the architecture cannot take it."""
        size = size or self.input_size
        if size < self.min_input_size:
            raise DeployKitError(f"{self.name} needs inputs of at least {self.min_input_size}x{self.min_input_size}, got {size}")
        return size


_SPECS: dict[str, ModelSpec] = {}
DEFAULT_BUILD_SEED = 0  # the weights a pruned checkpoint's architecture is built with before its own are loaded

ALIASES = {
    "mobilenet": "mobilenet_v2",
    "resnet": "resnet50",
    "inception": "inception_v3",
    "inception_v1": "googlenet",
    "vgg": "vgg16",
    "densenet": "densenet121",
    "squeezenet": "squeezenet1_1",
    "efficientnet": "efficientnet_b0",
    "mnasnet": "mnasnet1_0",
    "resnext": "resnext50_32x4d",
    "se_resnet": "se_resnet50",
}


def register_model(family: str, paper: str, **spec_fields: Any) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a builder function under its own name with a ModelSpec."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        if name in _SPECS:
            raise ValueError(f"model {name!r} is registered twice")
        _SPECS[name] = ModelSpec(name=name, family=family, builder=builder, paper=paper, **spec_fields)
        return builder

    return decorate


def resolve_name(name: str) -> str:
    """Map an alias or differently-cased name to a registered name, or raise with suggestions."""
    key = name.strip().lower()
    for candidate in (key, key.replace("-", "_"), key.replace("-", "")):
        candidate = ALIASES.get(candidate, candidate)
        if candidate in _SPECS:
            return candidate
    candidates = list(_SPECS) + list(ALIASES)
    close = difflib.get_close_matches(key, candidates, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; run `deploykit list` to see every model"
    raise DeployKitError(f"unknown model {name!r}{hint}")


def get_spec(name: str) -> ModelSpec:
    """The ModelSpec of a registered model or alias."""
    return _SPECS[resolve_name(name)]


def get_model(name: str, weights: str | Weights | None = None, seed: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model, with weights in any format deploykit knows.

    ``weights`` is the tag of published weights (``IMAGENET1K_V1``, ``DEFAULT``; fetched once into
    torch's cache), a plain checkpoint (loaded strictly with ``weights_only=True``), a pruned
    checkpoint written by ``deploykit prune`` (the architecture narrowed to its widths), or one of
    these already resolved (``models.sources``). ``seed`` makes a random initialisation reproducible
    without touching the global RNG. ``name`` may carry its weights as the command line writes them:
    ``NAME:IMAGENET1K_V1``, ``NAME:path/to.pth``.
    """
    from deploykit.models.pruned import apply_pruned_state, check_pruned_checkpoint
    from deploykit.models.sources import Published, RandomInit, resolve_weights
    from deploykit.models.weights import load_weights

    name, weights = split_reference(name, weights)
    spec = get_spec(name)
    kwargs.setdefault("num_classes", spec.num_classes)
    source = resolve_weights(spec.name, weights)
    if isinstance(source, RandomInit):
        return _build(spec, seed, kwargs)
    if source.pruned:
        original = check_pruned_checkpoint(source.content, source.path)["source"]
        if original["name"] != spec.name:
            raise DeployKitError(f"{source.path} is a pruned {original['name']}, not a {spec.name}")
        return apply_pruned_state(_build(spec, DEFAULT_BUILD_SEED, original.get("kwargs", {})), source.content)
    for key, value in (source.entry.build_kwargs if isinstance(source, Published) else {}).items():
        kwargs.setdefault(key, value)
    model = _build(spec, seed, kwargs)
    load_weights(model, source.content, source.path, spec.name)
    return model


def split_reference(name: str, weights: str | Weights | None = None) -> tuple[str, str | Weights | None]:
    """``NAME:WEIGHTS`` into (NAME, WEIGHTS); a plain name as it is. The one parser of the colon form: ``get_model``
    and the command line's ``recipes/ref.py`` both read it here."""
    base, colon, named = str(name).partition(":")
    if not colon:
        return name, weights
    if not named:
        raise DeployKitError(f"{name}: name the weights after the colon, e.g. {base}:IMAGENET1K_V1 or {base}:model.pth")
    if weights is not None and weights != named:
        raise DeployKitError(f"{name} already names its weights; drop weights={weights!r} or name the model alone")
    return base, named


def _build(spec: ModelSpec, seed: int | None, kwargs: dict[str, Any]) -> nn.Module:
    try:
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            return spec.builder(**kwargs)
    except TypeError as exc:
        raise DeployKitError(f"cannot build {spec.name}: {exc}") from exc


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern (``resnet*``), sorted."""
    return sorted(name for name in _SPECS if fnmatch.fnmatch(name, pattern.lower()))
