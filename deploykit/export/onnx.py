"""PyTorch to ONNX: export with torch.onnx, name tensors after modules, check, simplify, verify.

Intermediate tensors are renamed after the PyTorch module that produced them (``layer2.0.bn1``), so
the per-layer parity report can pair ONNX tensors with PyTorch forward-hook outputs, and the graph
reads well in Netron. The names survive simplification and Q/DQ quantization.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from deploykit.choices import DEFAULT_OPSET
from deploykit.errors import DeployKitError, first_line
from deploykit.quiet import quiet

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
_SCOPES_KEY = "pkg.torch.onnx.name_scopes"


@dataclass(frozen=True)
class OnnxExport:
    """How a model is exported: the same options export a fine-tuned copy into a graph with the same tensor names."""

    shape: tuple[int, int, int, int]  # (batch, channels, height, width) of the example input
    opset: int = DEFAULT_OPSET
    dynamic_batch: bool = False
    simplify: bool = False  # the export's simplified graph was kept (onnxslim)

    def of(self, model: nn.Module) -> onnx.ModelProto:
        proto = torch_to_onnx(model, self.shape, self.opset, self.dynamic_batch)
        return simplify_onnx(proto) if self.simplify else proto


def torch_to_onnx(model: nn.Module, input_shape: tuple[int, int, int, int], opset: int = DEFAULT_OPSET, dynamic_batch: bool = False) -> onnx.ModelProto:
    """Export an eval-mode model with torch.onnx (torch.export based) and name its tensors by module."""
    model = model.eval()
    batch, channels, height, width = input_shape
    example = torch.randn(max(batch, 2) if dynamic_batch else batch, channels, height, width)
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    try:
        with quiet("torch.onnx"):
            program = torch.onnx.export(
                model, (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=dynamic_shapes, verbose=False
            )
    except Exception as exc:  # the exporter raises many types; all mean "this model/shape did not export"
        raise DeployKitError(f"torch.onnx could not export the model at input {list(input_shape)}: {first_line(exc, 240)}") from exc
    proto = program.model_proto
    name_tensors_by_module(proto)
    return proto


def name_tensors_by_module(proto: onnx.ModelProto) -> dict[str, str]:
    """Rename each module's output tensor to the module's path, and each node to ``module/OpType``.

    A module's output is the first output of the last node (in graph order) exported inside its
    scope. When several modules end on the same tensor, the outermost name wins (``layer1`` rather
    than ``layer1.1.relu``). Graph inputs and outputs keep their names. Exporter metadata (with its
    stack traces and local paths) is dropped. Returns old -> new tensor names.
    """
    graph = proto.graph
    last_output: dict[str, str] = {}
    node_names: dict[str, int] = {}
    for node in graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == _SCOPES_KEY), None)
        paths = _module_paths(scopes) if scopes else []
        base = f"{paths[-1] if paths else 'graph'}/{node.op_type}"
        node_names[base] = node_names.get(base, 0) + 1
        node.name = base if node_names[base] == 1 else f"{base}_{node_names[base]}"
        for module_path in paths:
            if node.output:
                last_output[module_path] = node.output[0]
    protected = {v.name for v in graph.input} | {v.name for v in graph.output}
    existing = _all_tensor_names(graph)
    renames: dict[str, str] = {}
    for module_path in sorted(last_output, key=lambda p: p.count(".")):  # outermost first
        tensor = last_output[module_path]
        if tensor in protected or tensor in renames or (module_path in existing and module_path != tensor):
            continue
        renames[tensor] = module_path
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
        del node.metadata_props[:]
    for value_info in graph.value_info:
        value_info.name = renames.get(value_info.name, value_info.name)
    return renames


def _module_paths(scopes: str) -> list[str]:
    """Module paths in a ``pkg.torch.onnx.name_scopes`` value: all entries but the root and the op."""
    entries = ast.literal_eval(scopes)
    return [entry for entry in entries[1:-1] if entry]


def _all_tensor_names(graph: onnx.GraphProto) -> set[str]:
    names = {v.name for v in graph.input} | {i.name for i in graph.initializer}
    for node in graph.node:
        names.update(node.output)
    return names


def check_onnx(model: onnx.ModelProto | bytes) -> None:
    """Run onnx.checker with full_check (strict shape inference); raise a DeployKitError naming the problem."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise DeployKitError(f"the exported ONNX graph is invalid: {first_line(exc, 240)}") from exc


def simplify_onnx(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Constant folding, dead-node removal and operator fusion with onnxslim."""
    import onnxslim

    with quiet("onnxslim"):
        return onnxslim.slim(proto)


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Read an ONNX file; a missing or corrupt file is a one-line DeployKitError."""
    path = Path(path)
    if not path.is_file():
        raise DeployKitError(f"ONNX file {path} does not exist")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise DeployKitError(f"{path} is not a readable ONNX file ({type(exc).__name__}); export it again") from exc
    if not proto.graph.node:
        raise DeployKitError(f"{path} is not a readable ONNX file (empty graph); export it again")
    return proto
