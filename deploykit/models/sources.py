"""Where a model's weights come from, decided once: a seeded random init, a checkpoint file, or published weights.

``resolve_weights`` turns what the user wrote (``None``, a path, a tag such as ``IMAGENET1K_V1``) into one
of three typed values, and every reader below reads that value, never the text again. A checkpoint
file is opened once: its bytes are hashed and unpickled from the same read, on first use.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from deploykit.errors import DeployKitError
from deploykit.models.pretrained import PublishedWeights, fetch_weights, file_digest, find_weights, is_weights_tag

# Without weights, registry models are built with this seed, so an export and a later
# `deploykit compare NAME model.onnx` see the same random weights.
DEFAULT_SEED = 0


@dataclass(frozen=True)
class RandomInit:
    """No trained weights: the builder's initialisation, made reproducible by ``seed``."""

    seed: int = DEFAULT_SEED
    reference = None  # nothing for --weights to name
    pruned = False

    @property
    def identity(self) -> str:
        """A short text that differs whenever the weights differ."""
        return f"random:{self.seed}"


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A checkpoint file (plain state_dict or deploykit's pruned format), read and hashed on first use, once."""

    path: Path

    @cached_property
    def _read(self) -> tuple[str, object]:
        from deploykit.models.weights import load_checkpoint_bytes

        if not self.path.is_file():
            raise DeployKitError(f"checkpoint {self.path} does not exist; pass the path of a .pth/.pt file")
        data = self.path.read_bytes()
        return hashlib.sha256(data).hexdigest(), load_checkpoint_bytes(io.BytesIO(data), self.path)

    @property
    def sha256(self) -> str:
        return self._read[0]

    @property
    def content(self) -> object:
        """What ``torch.load(..., weights_only=True)`` returns for the file."""
        return self._read[1]

    @property
    def pruned(self) -> bool:
        from deploykit.models.pruned import is_pruned_checkpoint

        return is_pruned_checkpoint(self.content)

    @property
    def reference(self) -> str:
        """What ``--weights`` takes to name these weights again."""
        return str(self.path)

    @property
    def identity(self) -> str:
        return self.sha256


@dataclass(frozen=True, eq=False)
class Published:
    """Published weights by tag: fetched into torch's cache on first use (the cached file's hash checked), read once."""

    entry: PublishedWeights

    @cached_property
    def path(self) -> Path:
        return fetch_weights(self.entry)

    @property
    def sha256(self) -> str:
        return file_digest(self.path)

    @cached_property
    def content(self) -> object:
        from deploykit.models.weights import read_checkpoint

        return read_checkpoint(self.path)

    pruned = False

    @property
    def reference(self) -> str:
        return self.entry.tag

    @property
    def identity(self) -> str:
        return f"{self.entry.model}:{self.entry.tag}"


Weights = RandomInit | Checkpoint | Published


def resolve_weights(model: str, weights: str | Path | Weights | None, seed: int = DEFAULT_SEED) -> Weights:
    """What ``--weights`` names for the registered ``model``: published weights by tag, a checkpoint file, or none."""
    if isinstance(weights, (RandomInit, Checkpoint, Published)):
        return weights
    if weights is None:
        return RandomInit(seed)
    if is_weights_tag(weights):
        return Published(find_weights(model, str(weights)))
    return Checkpoint(Path(weights))
