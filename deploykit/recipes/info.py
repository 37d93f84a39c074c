"""``deploykit list`` and ``deploykit info``: the model catalogue, and one model's spec with a per-stage profile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from deploykit.catalog import CatalogEntry, read_catalog
from deploykit.errors import DeployKitError

if TYPE_CHECKING:  # the registry imports torch: `deploykit list` reads the catalogue without it
    from deploykit.models import ModelSpec
    from deploykit.models.pretrained import PublishedWeights
    from deploykit.profile import Profile


@dataclass(frozen=True)
class ModelInfo:
    """A registered model at one input size: its spec, its profile (params, MACs, stages) and its published weights."""

    spec: ModelSpec
    size: int
    profile: Profile
    published: list[PublishedWeights]

    @property
    def training_only_params(self) -> int:
        """Parameters of auxiliary heads that inference drops (GoogLeNet, Inception)."""
        return self.profile.params - self.profile.inference_params


def list_catalog(pattern: str) -> list[CatalogEntry]:
    """The registered models matching a shell-style pattern; a one-line error when none does."""
    entries = read_catalog(pattern)
    if not entries:
        raise DeployKitError(f"no model matches {pattern!r}; run `deploykit list` to see every model")
    return entries


def model_info(name: str, input_size: int | None = None) -> ModelInfo:
    """Profile ``name`` on the meta device (shapes only: no memory, no initialisation cost)."""
    import torch

    from deploykit.models import get_model, get_spec
    from deploykit.models.pretrained import published_weights
    from deploykit.profile import profile_model

    spec = get_spec(name)
    size = spec.checked_input_size(input_size)
    with torch.device("meta"):
        model = get_model(spec.name)
    return ModelInfo(spec, size, profile_model(model, (1, 3, size, size)), published_weights(spec.name))
