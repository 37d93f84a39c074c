"""A Triton ``config.pbtxt`` for an exported file: names, types and dims read from the file, built as Triton's own
``ModelConfig`` protobuf (tritonclient's ``model_config_pb2``) and validated by parsing the text back before it is written.

Preprocessing is recorded in the config's parameters (``deploykit.mean``, ``deploykit.std``, ...), so a client learns
what to send from the server (``GET /v2/models/NAME/config``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.choices import INTERPOLATIONS, MAX_INPUT_SIZE
from deploykit.data.preprocess import Preprocess
from deploykit.errors import DeployKitError

MODEL_FILES = {"onnxruntime": "model.onnx", "openvino": "model.onnx", "tensorrt": "model.plan"}
MAX_BATCH_SIZE = 1024
_ONNX_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 11: "TYPE_FP64", 2: "TYPE_UINT8", 3: "TYPE_INT8", 6: "TYPE_INT32", 7: "TYPE_INT64"}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as Triton declares it: dims without the batch dimension."""

    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class Batching:
    """``max_batch_size`` and the dynamic batcher's settings, and where they came from."""

    max_batch_size: int
    preferred: tuple[int, ...]
    max_queue_delay_us: int
    source: str


@dataclass(frozen=True)
class TritonModel:
    """Everything one Triton model folder's ``config.pbtxt`` says."""

    name: str
    backend: str
    kind: str
    precision: str
    input: TensorSpec
    output: TensorSpec
    batching: Batching
    dynamic_batching: bool = True
    instances: int = 1
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def model_file(self) -> str:
        return MODEL_FILES[self.backend]


def preprocess_parameters(preprocess: Preprocess) -> dict[str, str]:
    """The preprocessing as config parameters; floats written as Python writes them, so they read back exactly."""

    def numbers(values: tuple) -> str:
        return ",".join(str(float(v)) for v in values)

    return {
        "deploykit.size": str(preprocess.size),
        "deploykit.resize": str(preprocess.resize),
        "deploykit.interpolation": preprocess.interpolation,
        "deploykit.mean": numbers(preprocess.mean),
        "deploykit.std": numbers(preprocess.std),
    }


def recorded_preprocess(parameters: dict[str, str], model: str) -> Preprocess:
    """The preprocessing ``preprocess_parameters`` wrote into a config, each value checked; one line when it records none
    or a value no deploykit model can have."""

    def numbers(text: str) -> tuple[float, float, float]:
        values = tuple(float(v) for v in text.split(","))
        if len(values) != 3 or not all(math.isfinite(v) for v in values):
            raise ValueError(f"{text!r} is not three finite numbers")
        return values

    def whole(key: str, high: int) -> int:
        value = int(parameters[key])
        if not 1 <= value <= high:
            raise ValueError(f"{key} {value} is not from 1 to {high}")
        return value

    try:
        std = numbers(parameters["deploykit.std"])
        if not all(v > 0 for v in std):
            raise ValueError(f"deploykit.std {parameters['deploykit.std']!r} is not above 0")
        interpolation = parameters.get("deploykit.interpolation", "bilinear")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"deploykit.interpolation {interpolation!r} is not one of {', '.join(INTERPOLATIONS)}")
        return Preprocess(whole("deploykit.size", MAX_INPUT_SIZE), whole("deploykit.resize", 4 * MAX_INPUT_SIZE), numbers(parameters["deploykit.mean"]), std, interpolation)
    except (KeyError, ValueError) as exc:
        raise DeployKitError(f"model {model} records no usable deploykit preprocessing in its config ({exc}); write its repository with `deploykit triton`") from exc


def schema():
    """tritonclient's ``model_config_pb2``, or one line saying which extra brings it."""
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise DeployKitError("Triton repositories need tritonclient (Triton's model-config schema): pip install 'deploykit[serve]'") from exc
    return model_config_pb2


def io_specs(onnx_path: Path, fix_command: str) -> tuple[TensorSpec, TensorSpec]:
    """The single input and output of an ONNX classifier, as Triton declares them; a fixed batch is refused with
    ``fix_command``, which exports a dynamic-batch file."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    inputs = [tensor for tensor in graph.input if tensor.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise DeployKitError(f"{onnx_path} has {len(inputs)} inputs and {len(graph.output)} outputs; a Triton classifier config is written for one image input and one logits output")
    specs = []
    for tensor in (inputs[0], graph.output[0]):
        dims = tensor.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            raise DeployKitError(f"{onnx_path} has a fixed batch of {dims[0].dim_value} ({tensor.name}); Triton batches requests only with a dynamic batch dimension: {fix_command}")
        rest = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims[1:])
        data_type = _ONNX_TYPES.get(tensor.type.tensor_type.elem_type)
        if data_type is None or not rest:
            raise DeployKitError(
                f"{onnx_path}: {tensor.name} has element type {tensor.type.tensor_type.elem_type} and "
                f"{len(dims)} dims; Triton configs are written for [batch, ...] float or integer tensors"
            )
        specs.append(TensorSpec(tensor.name, data_type, rest))
    return specs[0], specs[1]


def build_config(spec: TritonModel):
    """``spec`` as a ``ModelConfig`` message."""
    pb = schema()
    config = pb.ModelConfig(name=spec.name, backend=spec.backend, max_batch_size=spec.batching.max_batch_size, default_model_filename=spec.model_file)
    for tensor, target in ((spec.input, config.input), (spec.output, config.output)):
        target.add(name=tensor.name, data_type=pb.DataType.Value(tensor.data_type), dims=list(tensor.dims))
    if spec.dynamic_batching:
        config.dynamic_batching.preferred_batch_size.extend(spec.batching.preferred)
        config.dynamic_batching.max_queue_delay_microseconds = spec.batching.max_queue_delay_us
    kind = pb.ModelInstanceGroup.KIND_GPU if spec.kind == "gpu" else pb.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(count=spec.instances, kind=kind)
    if spec.backend == "onnxruntime" and spec.kind == "gpu" and spec.precision in ("int8", "fp16"):
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        accelerator.parameters["precision_mode"] = spec.precision.upper()
        accelerator.parameters["max_workspace_size_bytes"] = str(1 << 30)
    for key, value in spec.parameters.items():
        config.parameters[key].string_value = value
    return config


def config_text(spec: TritonModel) -> str:
    """The validated text of ``spec``'s ``config.pbtxt``."""
    from google.protobuf import text_format

    text = text_format.MessageToString(build_config(spec))
    check_config(parse_config(text, spec.name), spec.name)
    return text


def parse_config(text: str, where: str):
    """A ``config.pbtxt``'s text as a ``ModelConfig``; one line naming what Triton's schema rejects."""
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, schema().ModelConfig())
    except text_format.ParseError as exc:
        raise DeployKitError(f"{where}: not a valid Triton model config ({exc})") from exc


def check_config(config, folder_name: str) -> None:
    """The rules Triton applies when it loads a config, beyond the schema's types."""
    pb = schema()
    problems = []
    if config.name != folder_name:
        problems.append(f"its name {config.name!r} is not its folder's {folder_name!r}")
    if not config.backend:
        problems.append("it names no backend")
    if not config.input or not config.output:
        problems.append("it declares no input or no output")
    for tensor in [*config.input, *config.output]:
        if not tensor.dims or any(d == 0 or d < -1 for d in tensor.dims) or tensor.data_type == pb.TYPE_INVALID:
            problems.append(f"{tensor.name} has dims {list(tensor.dims)} and type {pb.DataType.Name(tensor.data_type)}")
    if not 0 <= config.max_batch_size <= MAX_BATCH_SIZE:
        problems.append(f"max_batch_size {config.max_batch_size} is outside 0..{MAX_BATCH_SIZE}")
    if config.HasField("dynamic_batching"):
        if config.max_batch_size < 1:
            problems.append("dynamic batching needs max_batch_size of at least 1")
        if any(not 1 <= size <= config.max_batch_size for size in config.dynamic_batching.preferred_batch_size):
            problems.append(f"preferred batch sizes {list(config.dynamic_batching.preferred_batch_size)} exceed max_batch_size")
    if not config.instance_group or any(group.count < 1 for group in config.instance_group):
        problems.append("it needs an instance group with a count of at least 1")
    if problems:
        raise DeployKitError(f"the Triton config of {folder_name} is invalid: {'; '.join(problems)}")
