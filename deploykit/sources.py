"""What a user may name as a model: a registry name, ``NAME:CHECKPOINT``, an .onnx file or an export folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from deploykit.errors import DeployKitError
from deploykit.export.onnx import load_onnx
from deploykit.manifest import read_manifest
from deploykit.models import ModelSpec, get_model, get_spec
from deploykit.runtime import OrtRunner, Runner, TorchRunner

# Without a checkpoint, registry models are built with this seed, so an export and a later
# `deploykit compare NAME model.onnx` see the same random weights.
DEFAULT_SEED = 0
RANDOM_WEIGHTS_WARNING = ("random-init weights (no --weights): parity and accuracy figures mean nothing for them; "
                          "pass --weights IMAGENET1K_V1 (or DEFAULT) or a checkpoint of your own")
CHECKPOINT_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".safetensors"}


@dataclass
class Source:
    label: str
    spec: ModelSpec | None
    input_size: int
    model: nn.Module | None = None
    onnx_path: Path | None = None
    random_weights: bool = False

    def runner(self) -> Runner:
        if self.model is not None:
            return TorchRunner(self.model, (3, self.input_size, self.input_size), name=self.label)
        return OrtRunner(self.onnx_path, name=self.label)


def build_model(name: str, weights: str | None = None, **kwargs) -> nn.Module:
    """A registry model in eval mode: from a checkpoint (plain or pruned), or reproducibly initialised."""
    from deploykit.compress.pruned import apply_pruned_state, is_pruned_checkpoint, load_pruned

    if weights and str(weights).endswith(".pth") and Path(weights).is_file():
        try:
            checkpoint = load_pruned(Path(weights))
        except Exception:  # not loadable here; get_model reports it in one line
            checkpoint = None
        if is_pruned_checkpoint(checkpoint):
            source = checkpoint["source"]
            if source["name"] != get_spec(name).name:
                raise DeployKitError(f"{weights} is a pruned {source['name']}, not a {get_spec(name).name}")
            model = get_model(source["name"], seed=DEFAULT_SEED, **source.get("kwargs", {}))
            return apply_pruned_state(model, checkpoint).eval()
    return get_model(name, weights=weights, seed=None if weights else DEFAULT_SEED, **kwargs).eval()


def resolve_source(text: str, input_size: int | None = None) -> Source:
    """Turn a command-line model reference into something a runner can be made from."""
    path = Path(text)
    if ":" in text and not path.exists():
        name, _, weights = text.partition(":")
        return _torch_source(text, name, weights, input_size)
    if path.is_dir():
        path = path / "model.onnx"
    if path.suffix in CHECKPOINT_SUFFIXES:
        raise DeployKitError(f"a checkpoint needs its architecture: write NAME:{text}, e.g. resnet50:{text}")
    if path.suffix == ".onnx" or path.is_file():
        return _onnx_source(path, input_size)
    return _torch_source(text, text, None, input_size)


def _torch_source(label: str, name: str, weights: str | None, input_size: int | None) -> Source:
    spec = get_spec(name)
    return Source(label=label, spec=spec, input_size=input_size or spec.input_size, model=build_model(spec.name, weights),
                  random_weights=not weights)


def _onnx_source(path: Path, input_size: int | None) -> Source:
    proto = load_onnx(path)
    manifest = read_manifest(path.parent) or {}
    model_name = manifest.get("model", {}).get("name")
    spec = get_spec(model_name) if model_name else None
    dims = [d.dim_value or None for d in proto.graph.input[0].type.tensor_type.shape.dim]
    size = input_size or (dims[-1] if len(dims) == 4 else None) or manifest.get("input", {}).get("shape", [None])[-1]
    if not size:
        raise DeployKitError(f"{path} has a dynamic input size and no manifest; pass --input-size")
    weights = manifest.get("model", {}).get("weights", {})
    return Source(label=str(path), spec=spec, input_size=int(size), onnx_path=path,
                  random_weights=bool(weights.get("random", manifest and not weights.get("path"))))
