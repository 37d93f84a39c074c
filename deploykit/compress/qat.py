"""Quantization-aware fine-tuning that ends in the same onnxruntime Q/DQ file as post-training quantization.

It starts from the PTQ file: its activation scales and zero points, one per quantized tensor, and its
weight layout (per-channel symmetric int8 of the BatchNorm-folded weights). The exporter names every
tensor after the module that produced it, so each quantizer finds its PyTorch module: activations are
fake-quantized at that module's output (or, for a tensor no module produced, at the input of the
convolution or linear layer that reads it), weights through a parametrization that folds the
BatchNorm in, rounds to the per-channel grid and unfolds again. Gradients pass straight through the
rounding (torch's fake_quantize ops). BatchNorm statistics stay frozen, which keeps the folding exact
and is all that a few hundred images support. The loss is distillation from the FP32 model on logits
(their mean squared difference, Ba & Caruana 2014, which aligns the logits themselves and, measured
on MobileNet-v2, lifts held-out cosine where a softmax KL did not), so unlabelled images are enough;
labels add cross-entropy. After training the hooks are removed: the
result is an FP32 model whose weights round well, quantized again with the same ranges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from deploykit.compress.configs import QatConfig
from deploykit.compress.qdq import WEIGHTED_OPS, QdqGraph
from deploykit.data.images import batches, loader
from deploykit.errors import DeployKitError
from deploykit.parity import once_called_outputs
from deploykit.progress import stage


@dataclass(frozen=True)
class ActivationQuantizer:
    scale: float
    zero_point: int
    qmin: int
    qmax: int

    @property
    def range(self) -> tuple[float, float]:
        """(low, high) as onnxruntime's calibration cache writes it: from these its quantizer computes this scale again
        (symmetric: largest magnitude over 127, the range it computes scales with, though the op clamps to -128)."""
        if self.zero_point == 0 and self.qmin < 0:
            return -self.qmax * self.scale, self.qmax * self.scale
        return (self.qmin - self.zero_point) * self.scale, (self.qmax - self.zero_point) * self.scale


@dataclass
class QuantizationPlan:
    """What the PTQ file quantized, keyed by tensor name: activations and the weights of each layer."""

    activations: dict[str, ActivationQuantizer]
    weights: dict[str, str | None]  # weight parameter name -> the BatchNorm module folded into it (None: none)
    biases: dict[str, np.ndarray]  # weight parameter name -> the layer's bias as the file stores it (bias-corrected)
    graph: QdqGraph
    weight_qmax: int = 127  # symmetric int8 weights use -127..127; 63 where onnxruntime reduced the range (no VNNI)

    def ranges(self) -> dict[str, tuple[float, float]]:
        """Each activation's (low, high), for onnxruntime to give back the same scales and zero points."""
        return {name: quantizer.range for name, quantizer in self.activations.items()}


@dataclass
class QatReport:
    """What the fine-tuning simulated and how its loss went."""

    images: int
    labelled: bool
    steps: int
    activation_quantizers: int
    weight_quantizers: int
    unmapped: list[str] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "images": self.images,
            "labelled": self.labelled,
            "steps": self.steps,
            "activation_quantizers": self.activation_quantizers,
            "weight_quantizers": self.weight_quantizers,
            "unmapped_tensors": self.unmapped,
            "loss_per_epoch": [round(x, 6) for x in self.loss],
        }


def read_plan(int8: onnx.ModelProto) -> QuantizationPlan:
    """The quantizers of an onnxruntime QDQ file."""
    graph = QdqGraph(int8)
    activations = {}
    for tensor, quantizer in graph.activation_quantizers().items():
        if quantizer.scale.ndim:
            raise DeployKitError(f"{tensor} is quantized per channel; QAT simulates per-tensor activation quantizers")
        activations[tensor] = ActivationQuantizer(float(quantizer.scale), quantizer.zero_point, quantizer.qmin, quantizer.qmax)
    weights, biases, weight_qmax = {}, {}, 0
    for node in int8.graph.node:
        dequantize = graph.producers.get(node.input[1]) if node.op_type in WEIGHTED_OPS and len(node.input) > 1 else None
        if dequantize is None or not graph.dequantizes_initializer(node.input[1]):
            continue
        parameter = dequantize.input[0].removesuffix("_quantized")
        # per-channel symmetric: each channel's largest weight sits at the top level, so the file shows the range used
        weight_qmax = max(weight_qmax, int(np.abs(numpy_helper.to_array(graph.initializers[dequantize.input[0]])).max()))
        owner = node.name.rpartition("/")[0]
        weights[parameter] = owner if owner and owner != parameter.rpartition(".")[0] else None
        bias = graph.constant(node.input[2]) if len(node.input) > 2 else None
        if bias is not None:
            biases[parameter] = bias
    return QuantizationPlan(activations, weights, biases, graph, weight_qmax or 127)


class FoldedWeightFakeQuant(nn.Module):
    """conv.weight as onnxruntime will store it: BatchNorm folded in, rounded per output channel, folded out again."""

    def __init__(self, norm: nn.BatchNorm2d | None, qmax: int) -> None:
        super().__init__()
        self.norm = [norm]  # a list, so the BatchNorm is not registered twice as a submodule
        self.qmax = qmax

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        norm = self.norm[0]
        if norm is None:
            factor = torch.ones(weight.shape[0], dtype=weight.dtype, device=weight.device)
        else:
            factor = _norm_scale(norm)
            factor = torch.where(factor.abs() > 1e-8, factor, torch.ones_like(factor))
        shape = (-1,) + (1,) * (weight.dim() - 1)
        folded = weight * factor.view(shape)
        scale = (folded.detach().abs().amax(dim=tuple(range(1, weight.dim()))) / self.qmax).clamp(min=1e-12)
        zero = torch.zeros(weight.shape[0], dtype=torch.int32, device=weight.device)
        rounded = torch.fake_quantize_per_channel_affine(folded, scale, zero, 0, -self.qmax, self.qmax)
        return rounded / factor.view(shape)


def _norm_scale(norm: nn.BatchNorm2d) -> torch.Tensor:
    """The per-channel factor an eval-mode BatchNorm multiplies by (what folding puts into the weights)."""
    return norm.weight / torch.sqrt(norm.running_var + norm.eps)


@torch.no_grad()
def _start_from_bias(layer: nn.Module, norm: nn.BatchNorm2d | None, target: np.ndarray) -> None:
    """Make the layer's folded bias the PTQ file's (which bias correction changed), by moving BatchNorm's shift
    or, with no BatchNorm, the layer's own bias: fine-tuning starts exactly where PTQ ended."""
    bias = layer.bias if layer.bias is not None else torch.zeros(layer.weight.shape[0])
    if norm is not None:
        folded = norm.bias + (bias - norm.running_mean) * _norm_scale(norm)
        norm.bias += torch.as_tensor(target, dtype=folded.dtype) - folded
    elif layer.bias is not None:
        layer.bias.copy_(torch.as_tensor(target, dtype=layer.bias.dtype))


def _fake_quant(quantizer: ActivationQuantizer) -> Callable[[torch.Tensor], torch.Tensor]:
    def apply(tensor: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_tensor_affine(tensor, quantizer.scale, quantizer.zero_point, quantizer.qmin, quantizer.qmax)

    return apply


class SimulatedQuantization:
    """The plan's quantizers attached to a PyTorch model (hooks and weight parametrizations); ``remove()`` detaches them."""

    def __init__(self, model: nn.Module, plan: QuantizationPlan, example: torch.Tensor) -> None:
        self.model = model
        self.handles: list = []
        self.parametrized: list[nn.Module] = []
        modules = dict(model.named_modules())
        single_use = set(once_called_outputs(model, example.numpy())[0])
        self.unmapped: list[str] = []
        for tensor, quantizer in plan.activations.items():
            if not self._attach_activation(tensor, _fake_quant(quantizer), plan, modules, single_use):
                self.unmapped.append(tensor)
        for parameter, norm_name in plan.weights.items():
            owner = modules.get(parameter.rpartition(".")[0])
            norm = modules.get(norm_name) if norm_name else None
            if owner is None or parameter.rpartition(".")[2] != "weight":
                self.unmapped.append(parameter)
                continue
            norm = norm if isinstance(norm, nn.BatchNorm2d) else None
            if parameter in plan.biases:
                _start_from_bias(owner, norm, plan.biases[parameter])
            parametrize.register_parametrization(owner, "weight", FoldedWeightFakeQuant(norm, plan.weight_qmax))
            self.parametrized.append(owner)

    def _attach_activation(self, tensor: str, fake_quant, plan: QuantizationPlan, modules: dict, single_use: set[str]) -> bool:
        if tensor in modules and tensor in single_use:  # the module's output
            self.handles.append(modules[tensor].register_forward_hook(lambda module, args, output: fake_quant(output)))
            return True
        graph = plan.graph
        producer = graph.producers.get(tensor)
        owner = producer.name.rpartition("/")[0] if producer is not None else ""
        if producer is not None and producer.op_type in WEIGHTED_OPS and owner in modules and owner in single_use:
            self.handles.append(modules[owner].register_forward_hook(lambda module, args, output: fake_quant(output)))
            return True
        readers = [
            node
            for quantize in graph.consumers.get(tensor, [])
            if quantize.op_type == "QuantizeLinear"
            for dequantize in graph.consumers.get(quantize.output[0], [])
            if dequantize.op_type == "DequantizeLinear"
            for node in graph.consumers.get(dequantize.output[0], [])
            if node.op_type in WEIGHTED_OPS
        ]
        layers = {graph.producers[node.input[1]].input[0].removesuffix("_quantized").rpartition(".")[0] for node in readers if node.input[1] in graph.producers}
        layers = {name for name in layers if name in modules and name in single_use}
        for name in layers:  # no module produced it: quantize it where the layers that read it take it in
            self.handles.append(modules[name].register_forward_pre_hook(lambda module, args: (fake_quant(args[0]), *args[1:])))
        return bool(layers)

    @property
    def activation_count(self) -> int:
        return len(self.handles)

    def remove(self) -> None:
        """Detach every quantizer: the model is FP32 again, with the weights training left it with."""
        for handle in self.handles:
            handle.remove()
        for module in self.parametrized:
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        self.handles, self.parametrized = [], []


def qat_finetune(model: nn.Module, teacher: nn.Module, plan: QuantizationPlan, dataset, config: QatConfig, labelled: bool, workers: int | None = None) -> QatReport:
    """Fine-tune ``model`` (in place) with the PTQ file's quantizers (``plan``) simulated, towards the FP32 ``teacher``
    (the model before fine-tuning, left unchanged).

    ``dataset`` yields (image, label); labels are used only when ``labelled``. BatchNorm and dropout stay in eval mode.
    """
    if config.epochs < 1 or config.lr <= 0 or config.batch_size < 1:
        raise DeployKitError("--epochs, --qat-lr and the batch size must be positive")
    torch.manual_seed(config.seed)
    teacher.eval()
    model.eval()
    example = dataset[0][0].unsqueeze(0)
    simulated = SimulatedQuantization(model, plan, example)
    report = QatReport(len(dataset), labelled, 0, simulated.activation_count, len(simulated.parametrized), simulated.unmapped)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    data = loader(dataset, config.batch_size, workers, shuffle=True, drop_last=len(dataset) > config.batch_size, generator=torch.Generator().manual_seed(config.seed))
    try:
        for epoch in range(config.epochs):
            total, seen = 0.0, 0
            with stage(f"QAT epoch {epoch + 1}/{config.epochs}", total=len(data), unit="batches") as advance:
                for images, labels in batches(data):
                    with torch.no_grad():
                        target = teacher(images)
                    logits = model(images)
                    loss = F.mse_loss(logits, target)
                    if labelled:
                        loss = (1 - config.label_weight) * loss + config.label_weight * F.cross_entropy(logits, labels)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total, seen = total + loss.item() * len(images), seen + len(images)
                    report.steps += 1
                    advance(1, f"loss {total / seen:.4g}")
            report.loss.append(total / max(seen, 1))
    finally:
        simulated.remove()
    if not all(np.isfinite(report.loss)):
        raise DeployKitError("QAT diverged (non-finite loss); lower --qat-lr")
    return report
