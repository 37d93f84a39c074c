"""What a user names as a model, parsed once: the parser behind every command's model argument.

A reference is one of:
- a registry name or alias (``resnet50``, ``mobilenet``): seeded random weights;
- ``NAME:CHECKPOINT`` (a plain or pruned checkpoint file) or ``NAME:TAG`` (published weights, ``IMAGENET1K_V1``);
- an ``.onnx`` file (with the manifest beside it, when there is one);
- a folder written by ``deploykit export``, ``prune``, ``train`` or ``distill``.

A text is a path when it contains a separator, or names something that exists and is no registry
name; a bare word that is both a registry name and an existing file or folder is refused as ambiguous.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from deploykit.errors import DeployKitError, first_line
from deploykit.progress import report
from deploykit.manifest import BEST_NAME, ONNX_NAME, PRUNED_NAME, ExportFolder, InputRecord, Manifest
from deploykit.models import ModelSpec, get_spec, resolve_name, split_reference
from deploykit.models.pretrained import PublishedWeights, is_weights_tag
from deploykit.models.sources import DEFAULT_SEED, Checkpoint, Published, RandomInit, Weights, resolve_weights

if TYPE_CHECKING:
    from torch import nn

    from deploykit.data import Preprocess

CHECKPOINT_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".safetensors"}
RANDOM_WEIGHTS_WARNING = "random-init weights (no --weights): parity and accuracy figures mean nothing for them; pass --weights IMAGENET1K_V1 (or DEFAULT) or a checkpoint of your own"


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference: an architecture with its weights resolved, an ONNX file, or both (an export folder)."""

    text: str
    spec: ModelSpec | None  # None for an ONNX file with no manifest
    weights: Weights = RandomInit()
    onnx_path: Path | None = None
    manifest: Manifest | None = None
    builder_kwargs: dict | None = None
    factory: Callable[[], nn.Module] | None = None  # a user's own module (``--module file.py:function``)
    signature: OnnxSignature | None = None  # an ONNX file with no manifest: its graph's input and output
    # What the folder it came from recorded (its manifest's class names and input), kept by ``with_checkpoint``
    class_names: tuple[str, ...] | None = None
    recorded_input: InputRecord | None = None

    def __post_init__(self) -> None:
        if self.manifest is not None:
            names = self.manifest.model.classes
            object.__setattr__(self, "class_names", tuple(names) if names else None)
            object.__setattr__(self, "recorded_input", self.manifest.input)

    @property
    def has_torch(self) -> bool:
        return self.spec is not None and (self.onnx_path is None or self.manifest is not None)

    @property
    def random_weights(self) -> bool:
        if self.factory is not None:
            return False  # the user's module brings its own weights
        if self.manifest is not None:
            return self.manifest.model.weights.random
        return self.spec is not None and isinstance(self.weights, RandomInit)

    @property
    def published(self) -> PublishedWeights | None:
        """The published checkpoint's entry (its evaluation recipe, its accuracy), when the weights are published ones."""
        return self.weights.entry if isinstance(self.weights, Published) else None

    @property
    def classes(self) -> tuple[str, ...] | None:
        """The class names the model was trained on, where a folder written by train, distill or export records them."""
        return self.class_names

    def build_classes(self) -> int:
        """How many classes the model scores, from its records where it has them, else by building it."""
        if self.manifest is not None:
            return self.manifest.model.num_classes
        if self.builder_kwargs and "num_classes" in self.builder_kwargs:
            return int(self.builder_kwargs["num_classes"])
        from deploykit.models.layers import classifier_outputs

        return classifier_outputs(self.build())

    def input_size(self, requested: int | None = None) -> int:
        """``requested``, else the size the folder it came from was trained or exported at, else the architecture's."""
        if requested:
            return requested
        if self.recorded_input is not None:
            return self.recorded_input.size
        return self.spec.input_size

    def preprocess(self, size: int) -> Preprocess:
        """The evaluation preprocessing at ``size``: as its folder recorded it at that size, else the architecture's (the
        published recipe for published weights)."""
        from deploykit.data import Preprocess

        if self.recorded_input is not None and self.recorded_input.size == size:
            return Preprocess.recorded(self.recorded_input)
        return Preprocess.for_model(self.spec, size, self.published)

    @property
    def name(self) -> str:
        if self.spec is None:
            raise DeployKitError(f"{self.text} is an ONNX file with no manifest: this command needs a PyTorch model; give NAME, NAME:CHECKPOINT or NAME:IMAGENET1K_V1")
        return self.spec.name

    def with_weights(self, weights: str | None) -> ModelRef:
        """The same architecture with ``--weights`` applied (a reference that names weights keeps them unless given)."""
        if weights is None:
            return self
        if self.factory is not None:
            raise DeployKitError("--weights does not apply to --module: the function builds the model with its weights")
        resolved = resolve_weights(self.name, weights)
        if not isinstance(self.weights, RandomInit) and not _same_source(self.weights, resolved):
            raise DeployKitError(f"{self.text} already names its weights; drop --weights {weights} or name the model alone")
        return replace(self, weights=resolved)

    def with_checkpoint(self, path: Path) -> ModelRef:
        """The same architecture with the checkpoint a stage of this command just wrote (pruned, trained); the class names
        and input its folder recorded still hold."""
        return replace(self, text=f"{self.name}:{path}", weights=Checkpoint(Path(path)), onnx_path=None, manifest=None, class_names=self.class_names, recorded_input=self.recorded_input)

    def build(self, **kwargs) -> nn.Module:
        """The PyTorch model in eval mode: from its checkpoint or tag, or reproducibly initialised."""
        from deploykit.models import get_model

        if self.factory is not None:
            return _call_factory(self.factory, self.text).eval()
        kwargs = {**(self.builder_kwargs or {}), **kwargs}
        seed = self.weights.seed if isinstance(self.weights, RandomInit) else None
        return get_model(self.name, weights=self.weights, seed=seed, **kwargs).eval()


def _same_source(a: Weights, b: Weights) -> bool:
    if isinstance(a, Published) and isinstance(b, Published):
        return a.entry.tag == b.entry.tag
    return isinstance(a, Checkpoint) and isinstance(b, Checkpoint) and a.path.resolve() == b.path.resolve()


def parse_model_ref(text: str) -> ModelRef:
    """Turn a command-line model reference into a ModelRef (nothing is built or loaded yet)."""
    text = str(text)
    name, colon, _ = text.partition(":")
    if colon and not Path(text).exists() and _is_registry_name(name):
        name, rest = split_reference(text)
        if not is_weights_tag(rest) and not Path(rest).is_file():
            raise DeployKitError(f"checkpoint {rest} does not exist; pass a checkpoint file or a published tag such as IMAGENET1K_V1")
        spec = get_spec(name)
        return ModelRef(text, spec, resolve_weights(spec.name, rest))
    path = Path(text)
    if os.sep in text or text.endswith((".onnx", *CHECKPOINT_SUFFIXES)) or (path.exists() and not _is_registry_name(text)):
        return _path_ref(text, path)
    if path.exists():
        raise DeployKitError(f"{text!r} is both a registry model and a file or folder here; write ./{text} for the path, or {text}:DEFAULT / {text}:CHECKPOINT for the model")
    spec = get_spec(text)
    if text.strip().lower() != spec.name:  # an alias or another spelling: say which model it is
        report(f"{text} is read as {spec.name}")
    return ModelRef(text, spec)


def did_you_mean(path: Path) -> str:
    """ "; did you mean X?" naming the entries beside a mistyped path that are closest to it (empty when none is close)."""
    import difflib

    parent = path.parent if path.parent.is_dir() else None
    names = [entry.name for entry in parent.iterdir() if not entry.name.startswith(".")] if parent is not None else []
    close = difflib.get_close_matches(path.name, names, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(str(path.parent / name) for name in close)}?" if close else ""


def warn_random_weights(ref: ModelRef) -> None:
    """The random-weights warning as a command starts, not only after its run (``cli_render`` repeats it at the end)."""
    if ref.random_weights:
        report(f"warning: {RANDOM_WEIGHTS_WARNING}", style="bold yellow")


def module_ref(text: str) -> ModelRef:
    """``path/to/file.py:function``: the user's own ``nn.Module``, built by calling ``function()`` (no arguments)."""
    import importlib.util

    from torch import nn

    from deploykit.data.vision import prepare_for_user_code
    from deploykit.models import ModelSpec
    from deploykit.models.layers import classifier_layer

    path, _, function = str(text).rpartition(":")
    if not path.endswith(".py") or not function:
        raise DeployKitError(f"--module takes path/to/file.py:function, got {text!r}")
    if not Path(path).is_file():
        raise DeployKitError(f"--module: {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"deploykit_user_module_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    prepare_for_user_code()
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # the user's code: any error (or exit) is theirs to fix, reported in one line
        raise DeployKitError(f"--module: importing {path} failed: {type(exc).__name__}: {first_line(exc)}") from exc
    factory = getattr(module, function, None)
    if not callable(factory):
        raise DeployKitError(f"--module: {path} has no function {function!r}")
    model = _call_factory(factory, text)
    head = classifier_layer(model) if any(isinstance(m, (nn.Linear, nn.Conv2d)) for m in model.modules()) else None
    classes = head.out_features if isinstance(head, nn.Linear) else head.out_channels if head is not None else 1000
    # Named after file and function: a bare function name ("build", "model") says nothing and collides across files.
    model_spec = ModelSpec(name=f"{Path(path).stem}_{function}", family="custom", builder=factory, paper=f"user module {path}", min_input_size=1, num_classes=classes)
    return ModelRef(text, model_spec, factory=factory)


def _call_factory(factory: Callable, text: str) -> nn.Module:
    from torch import nn

    try:
        model = factory()
    except (Exception, SystemExit) as exc:  # the user's code
        raise DeployKitError(f"--module: calling {text}() failed: {type(exc).__name__}: {first_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise DeployKitError(f"--module: {text}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _path_ref(text: str, path: Path) -> ModelRef:
    if path.suffix in CHECKPOINT_SUFFIXES:
        raise DeployKitError(f"a checkpoint needs its architecture: write NAME:{text}, e.g. resnet50:{text}")
    if not path.exists():
        raise DeployKitError(f"{text} does not exist{did_you_mean(path)}; give a model name, NAME:CHECKPOINT, an .onnx file or an export folder")
    if path.is_dir():
        folder = ExportFolder(path)
        manifest = folder.read()
        spec = _registered_spec(manifest)
        kwargs = dict(manifest.model.builder_kwargs)
        if BEST_NAME in manifest.files:  # written by `deploykit train` or `distill`: its best epoch is the model
            return ModelRef(text, spec, Checkpoint(folder.verified(BEST_NAME)), None, manifest, kwargs)
        if folder.pruned_path.is_file():  # written by `deploykit prune`: the pruned checkpoint is the model
            pruned = folder.verified(PRUNED_NAME) if PRUNED_NAME in manifest.files else folder.pruned_path
            onnx_path = folder.verified(ONNX_NAME) if ONNX_NAME in manifest.files else None
            return ModelRef(text, spec, Checkpoint(pruned), onnx_path, manifest, kwargs)
        return ModelRef(text, spec, _recorded_weights(spec, manifest), folder.verified(ONNX_NAME), manifest, kwargs)
    folder = ExportFolder(path.parent)
    manifest = folder.read() if folder.exists() else None
    if manifest is not None and path.name not in manifest.files:
        manifest = None  # a file the folder's manifest does not describe
    if manifest is not None:
        folder.verified(path.name)
    if manifest is None:  # a file deploykit did not make: what its graph says is all there is to know
        return ModelRef(text, None, onnx_path=path, signature=classifier_signature(path))
    spec = _registered_spec(manifest)
    return ModelRef(text, spec, _recorded_weights(spec, manifest), path, manifest, dict(manifest.model.builder_kwargs))


@dataclass(frozen=True)
class OnnxSignature:
    """The input dimensions (None where dynamic) and class count of an ONNX image classifier."""

    input_dims: tuple[int | None, ...]
    num_classes: int | None


def classifier_signature(path: Path) -> OnnxSignature:
    """Read an ONNX file as an image classifier: one float NCHW input (3 channels), one [N, classes] output."""
    import onnx

    from deploykit.export.onnx import load_onnx

    graph = load_onnx(path).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    if len(inputs) != 1 or len(graph.output) != 1:
        raise DeployKitError(f"{path} has {len(inputs)} inputs and {len(graph.output)} outputs; deploykit runs image classifiers with one NCHW image input and one [N, classes] output")
    tensor = inputs[0].type.tensor_type
    if tensor.elem_type not in floats or len(tensor.shape.dim) != 4:
        raise DeployKitError(
            f"{path} takes a {onnx.TensorProto.DataType.Name(tensor.elem_type).lower()} input of rank {len(tensor.shape.dim)}; deploykit feeds float32/float16 NCHW images"
        )
    dims = tuple(d.dim_value or None for d in tensor.shape.dim)
    if dims[1] not in (3, None):
        raise DeployKitError(f"{path} takes input of shape {list(dims)}, not NCHW images [N, 3, H, W]")
    output = graph.output[0].type.tensor_type
    if len(output.shape.dim) != 2 or output.elem_type not in floats:
        raise DeployKitError(f"{path} outputs rank-{len(output.shape.dim)} {onnx.TensorProto.DataType.Name(output.elem_type).lower()} values, not [N, classes] logits")
    return OnnxSignature(dims, output.shape.dim[1].dim_value or None)


def _recorded_weights(spec: ModelSpec | None, manifest: Manifest) -> Weights:
    """The weights an export was made with, as its manifest records them (a user's module: none to rebuild from)."""
    record = manifest.model.weights
    if spec is None or record.random or record.reference is None:
        return RandomInit(record.seed if record.seed is not None else DEFAULT_SEED)
    return resolve_weights(spec.name, record.reference)


def _registered_spec(manifest: Manifest) -> ModelSpec | None:
    """The registry spec of an exported model; None for a user's own module (family "custom"), known by its ONNX file alone."""
    return None if manifest.model.family == "custom" else get_spec(manifest.model.name)


def _is_registry_name(text: str) -> bool:
    try:
        resolve_name(text)
    except DeployKitError:
        return False
    return True


def build_model(reference: str, weights: str | None = None, **kwargs) -> nn.Module:
    """The PyTorch model a reference names (with ``--weights`` applied), in eval mode."""
    return parse_model_ref(reference).with_weights(weights).build(**kwargs)
