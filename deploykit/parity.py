"""Output parity between two runners, and a per-layer report that finds the first divergent layer."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from deploykit.data import DEFAULT_CALIBRATION_DIR, Preprocess, evenly_spaced, find_images, load_images
from deploykit.errors import DeployKitError
from deploykit.runtime.base import Runner, padded_batches

if TYPE_CHECKING:
    import onnx
    from torch import nn


@dataclass(frozen=True)
class Tolerances:
    """Pass criteria. ``rel_error``: max abs error over the reference logit range.

    ``near_ties`` forgives a top-1 flip between classes the reference scores within the allowed
    error (numerical noise, as in an FP32 export); quantized models are judged without it.
    """

    rel_error: float = 1e-4
    min_cosine: float = 0.9999
    min_top1: float = 1.0
    min_top5: float = 0.0
    near_ties: bool = True


# float16 keeps about 3 significant digits: logits within 2% of their range, near ties forgiven
FP16_TOLERANCES = Tolerances(rel_error=2e-2, min_cosine=0.999, min_top1=1.0, near_ties=True)


@dataclass(frozen=True)
class ParityRecords:
    """The manifest's ``parity`` section as its readers use it: whether each file passed its parity check."""

    KEY: ClassVar[str] = "parity"
    passed: dict[str, bool]

    @classmethod
    def from_dict(cls, data: dict, where: str) -> ParityRecords:
        try:
            return cls({str(name): bool(entry["passed"]) for name, entry in data.items()})
        except (AttributeError, KeyError, TypeError) as exc:
            raise DeployKitError(f"{where} is not a parity record ({exc!r}); export again") from exc


@dataclass
class ParityReport:
    samples: int
    max_abs_error: float
    logit_range: float
    rel_error: float
    min_cosine: float
    top1_agreement: float
    top5_agreement: float
    near_ties: int
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL (" + "; ".join(self.failures) + ")"
        return f"{verdict}: {self.figures()}"

    def figures(self) -> str:
        """The measured figures without a verdict ("same top-5 set": both sides rank the same five classes first)."""
        return (
            f"{self.samples} inputs, max abs error {self.max_abs_error:.3g} ({self.rel_error:.3g} of the logit range "
            f"{self.logit_range:.3g}), min cosine {self.min_cosine:.6f}, top-1 agreement {self.top1_agreement:.1%}, "
            f"same top-5 set {self.top5_agreement:.1%}"
        )


def compare_logits(reference: np.ndarray, candidate: np.ndarray, tolerances: Tolerances = Tolerances()) -> ParityReport:
    """Compare two (N, classes) logit arrays.

    A top-1 disagreement where the reference scores both classes within the allowed absolute error
    is a near tie, not a disagreement: no backend can be asked to break ties finer than its tolerance.
    """
    if reference.shape != candidate.shape:
        raise DeployKitError(f"the two models give outputs of different shapes ({list(reference.shape)} and {list(candidate.shape)}): they are not the same classifier")
    reference = reference.astype(np.float64)
    candidate = candidate.astype(np.float64)
    diff = np.abs(reference - candidate)
    logit_range = float(reference.max() - reference.min()) or 1.0
    max_abs = float(diff.max())
    allowed_abs = tolerances.rel_error * logit_range
    cosine = row_cosines(reference, candidate)
    ref_top1 = reference.argmax(axis=1)
    cand_top1 = candidate.argmax(axis=1)
    rows = np.arange(len(reference))
    exact = ref_top1 == cand_top1
    tie = ~exact & (reference[rows, ref_top1] - reference[rows, cand_top1] <= allowed_abs) & tolerances.near_ties
    k = min(5, reference.shape[1])
    ref_top5 = np.argsort(-reference, axis=1)[:, :k]
    cand_top5 = np.argsort(-candidate, axis=1)[:, :k]
    top5 = np.mean([set(a) == set(b) for a, b in zip(ref_top5, cand_top5)])
    report = ParityReport(
        samples=len(reference),
        max_abs_error=max_abs,
        logit_range=logit_range,
        rel_error=max_abs / logit_range,
        min_cosine=float(cosine.min()),
        top1_agreement=float(np.mean(exact | tie)),
        top5_agreement=float(top5),
        near_ties=int(tie.sum()),
    )
    if not (np.isfinite(reference).all() and np.isfinite(candidate).all()):
        report.failures.append("outputs contain NaN or inf")  # every comparison with NaN is False: never let it pass
    if not report.rel_error <= tolerances.rel_error:
        report.failures.append(f"relative error {report.rel_error:.3g} > {tolerances.rel_error:g}")
    if not report.min_cosine >= tolerances.min_cosine:
        report.failures.append(f"cosine {report.min_cosine:.6f} < {tolerances.min_cosine:g}")
    if not report.top1_agreement >= tolerances.min_top1:
        report.failures.append(f"top-1 agreement {report.top1_agreement:.1%} < {tolerances.min_top1:.1%}")
    if report.top5_agreement < tolerances.min_top5:
        report.failures.append(f"same top-5 set {report.top5_agreement:.1%} < {tolerances.min_top5:.1%}")
    return report


def row_cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Per-row cosine similarity of two (N, classes) arrays, in float64: 1 where both rows are all zeros, 0 where one is."""
    reference, candidate = reference.astype(np.float64), candidate.astype(np.float64)
    a, b = np.linalg.norm(reference, axis=1), np.linalg.norm(candidate, axis=1)
    dot = np.sum(reference * candidate, axis=1) / np.maximum(a * b, 1e-300)
    return np.where((a > 0) & (b > 0), dot, np.where((a > 0) | (b > 0), 0.0, 1.0))


def mean_cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """The mean row cosine, NaN and inf in ``candidate`` read as zeros (so they lower it, never make it NaN)."""
    return float(row_cosines(reference, np.nan_to_num(candidate, nan=0.0, posinf=0.0, neginf=0.0)).mean())


def parity_inputs(preprocess: Preprocess, random_count: int = 4, image_dir: Path | None = DEFAULT_CALIBRATION_DIR, image_count: int = 8, seed: int = 0) -> np.ndarray:
    """Fixed-seed random inputs plus up to ``image_count`` real images (evenly spread over the folder)."""
    rng = np.random.default_rng(seed)
    shape = (random_count, 3, preprocess.size, preprocess.size)
    batches = [rng.standard_normal(shape, dtype=np.float32)]
    if image_dir is not None and Path(image_dir).is_dir() and image_count:
        batches.append(load_images(evenly_spaced(find_images(image_dir), image_count), preprocess))
    return np.concatenate(batches)


def run_all(runner: Runner, inputs: np.ndarray, batch_size: int | None = None) -> np.ndarray:
    """Run ``inputs`` through a loaded runner in batches.

    The batch size is ``batch_size``, else the runner's fixed batch, else all inputs at once; a last
    partial batch is padded with repeated inputs whose outputs are dropped.
    """
    step = batch_size or runner.input_metadata().shape[0] or len(inputs)
    return np.concatenate([runner.infer(batch)[:count] for batch, count in padded_batches(inputs, step)])


def compare_runners(reference: Runner, candidate: Runner, inputs: np.ndarray, tolerances: Tolerances = Tolerances()) -> ParityReport:
    """Run both runners on the same inputs (each in its own batch size) and compare their logits."""
    with reference, candidate:
        return compare_logits(run_all(reference, inputs), run_all(candidate, inputs), tolerances)


@dataclass(frozen=True)
class LayerDiff:
    name: str
    kind: str
    rel_error: float
    max_abs_error: float

    def as_dict(self) -> dict:
        return asdict(self)


def per_layer_diffs(model: nn.Module, onnx_proto: onnx.ModelProto, inputs: np.ndarray) -> list[LayerDiff]:
    """Compare every PyTorch module output with the ONNX tensor of the same name, in execution order.

    ``rel_error`` is the max abs error over the max abs value of the PyTorch activation, over all
    inputs. Modules called more than once per forward (a shared ReLU) have no single output and are
    skipped.
    """
    from deploykit.runtime.ort_runner import run_with_intermediates

    activations, kinds = once_called_outputs(model, inputs)
    values = run_with_intermediates(onnx_proto, list(activations), inputs)
    diffs = []
    for name, reference in activations.items():
        candidate = values.get(name)
        if candidate is None or reference.shape != candidate.shape or not reference.size:
            continue
        max_abs = float(np.abs(reference - candidate.astype(np.float32)).max())
        diffs.append(LayerDiff(name, kinds[name], max_abs / (float(np.abs(reference).max()) or 1.0), max_abs))
    return diffs


QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "Cast"}


def onnx_layer_diffs(reference: onnx.ModelProto, candidate: onnx.ModelProto, inputs: np.ndarray) -> list[LayerDiff]:
    """Compare two ONNX graphs tensor by tensor: the tensors both produce under the same name, in the reference's order.

    Tensors made only by Q/DQ or Cast nodes (the quantizer's and the FP16 converter's plumbing) are skipped, and so
    is a name whose producing operator differs (the quantizer folds a ReLU into the Conv before it and gives the Conv
    output the ReLU's name), so an FP32 graph pairs with its own Q/DQ INT8 or FP16 version on the layers they share.
    """
    from deploykit.runtime.ort_runner import run_with_intermediates

    def produced(graph: onnx.GraphProto) -> dict[str, str]:
        return {out: node.op_type for node in graph.node if node.op_type not in QDQ_OPS for out in node.output if out}

    ours, theirs = produced(reference.graph), produced(candidate.graph)
    shared = [name for name in ours if theirs.get(name) == ours[name]]
    expected = run_with_intermediates(reference, shared, inputs)
    actual = run_with_intermediates(candidate, shared, inputs)
    diffs = []
    for name in shared:
        if name not in expected or name not in actual or expected[name].shape != actual[name].shape:
            continue
        ref, got = expected[name].astype(np.float32), actual[name].astype(np.float32)
        if not ref.size or not np.issubdtype(expected[name].dtype, np.floating):
            continue
        max_abs = float(np.abs(ref - got).max())
        diffs.append(LayerDiff(name, ours[name], max_abs / (float(np.abs(ref).max()) or 1.0), max_abs))
    return diffs


def first_divergent(diffs: list[LayerDiff], tolerance: float) -> LayerDiff | None:
    return next((d for d in diffs if not d.rel_error <= tolerance), None)  # NaN counts as divergent


def once_called_outputs(model: nn.Module, inputs: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Outputs of every module one forward pass calls exactly once (a reused module, such as a shared ReLU, has no single
    output), in the order the modules finished, and each module's type: per-layer parity and QAT's quantizer
    placement both read it."""
    import torch

    outputs: dict[str, np.ndarray] = {}
    calls: dict[str, int] = {}
    kinds: dict[str, str] = {}

    def recorder(name: str):
        def hook(module: nn.Module, args: tuple, output) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor):
                outputs[name] = output.detach().float().numpy().copy()  # copy: in-place ops follow
                kinds[name] = type(module).__name__

        return hook

    hooks = [module.register_forward_hook(recorder(name)) for name, module in model.named_modules() if name]
    try:
        with torch.inference_mode():
            model.eval()(torch.from_numpy(inputs))
    finally:
        for hook in hooks:
            hook.remove()
    once = {name: value for name, value in outputs.items() if calls[name] == 1}
    return once, kinds
