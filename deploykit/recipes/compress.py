"""``deploykit export`` after compressing: prune -> distil (or fine-tune) -> export [-> INT8], gated as a whole.

Every stage writes its checkpoint under the export folder's ``stages/``. The chain is then judged against the model it
started from, on held-out photos and where it will run: the top-1 of the original, of each stage and of the file that
ships (INT8 when it passed its gate), and the latency of the original against the shipped file, each on its fastest
CPU runtime, timed in interleaved rounds of one run. A final drop beyond ``--max-drop``, or a shipped file that is no
faster than the original, fails the chain: the manifest records it and the command exits 1.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from deploykit.bench.runtimes import Combination, time_runtimes_apart
from deploykit.compress.configs import DistillConfig, PruneConfig
from deploykit.data.labelled import LabelledImages
from deploykit.data.training import array_dataset, folder_classes, held_out_indices
from deploykit.errors import DeployKitError
from deploykit.manifest import INT8_NAME, ONNX_NAME, PRUNED_NAME, ExportFolder
from deploykit.progress import stage
from deploykit.recipes.configs import Compression, ExportConfig
from deploykit.recipes.export import ExportResult, export, export_ref
from deploykit.recipes.prune import ORIGINAL_NAME, TIE, beside_the_original, run_prune
from deploykit.recipes.ref import ModelRef, parse_model_ref
from deploykit.recipes.train import run_distill
from deploykit.recipes.triton import check_triton_config, write_triton_repository
from deploykit.serve.repository import model_name, refuse_foreign_models
from deploykit.runtime import OrtRunner


@dataclass(frozen=True)
class ChainVerdict:
    """The compressed file against the model the chain started from."""

    source: str  # the held-out images, in words
    top1: dict[str, float]  # per stage (original, pruned, distilled or trained, the shipped file), on ``source``
    shipped: str  # the file that ships
    original_fastest: Combination | None
    shipped_fastest: Combination | None
    max_drop: float
    latency: tuple[Combination, ...] = ()  # the original's, the exported FP32 file's and the shipped file's, every CPU runtime

    @property
    def drop_points(self) -> float:
        return round(100 * (self.top1["original"] - self.top1[self.shipped]), 2)

    @property
    def speedup(self) -> float | None:
        if self.original_fastest is None or self.shipped_fastest is None:
            return None
        return self.original_fastest.p50_ms / self.shipped_fastest.p50_ms

    def failures(self) -> list[str]:
        problems = []
        if self.drop_points > self.max_drop:
            problems.append(
                f"it lost {self.drop_points:.2f} points of top-1 against the original on {self.source} (more than --max-drop {self.max_drop:g}): distil for more --epochs, or prune less"
            )
        if self.speedup is not None and self.speedup < 1 + TIE:
            problems.append(
                f"it is no faster than the original: {self.shipped_fastest.describe()} against {self.original_fastest.describe()} ({self.speedup:.2f}x): prune more, or add --int8"
            )
        return problems

    def as_dict(self) -> dict:
        return {
            "images": self.source,
            "top1": self.top1,
            "shipped": self.shipped,
            "drop_points": self.drop_points,
            "original_fastest": asdict(self.original_fastest) if self.original_fastest else None,
            "shipped_fastest": asdict(self.shipped_fastest) if self.shipped_fastest else None,
            "speedup": round(self.speedup, 3) if self.speedup else None,
            "max_drop": self.max_drop,
            "latency": [asdict(c) for c in self.latency],
            "passed": not self.failures(),
            "failures": self.failures(),
        }


def compress_and_export(config: ExportConfig, compression: Compression = Compression()) -> ExportResult:
    """``deploykit export``: the requested compression stages, then the export, each stage in the manifest."""
    if compression.teacher and not compression.data:
        raise DeployKitError("--distill-from needs --data (a labelled folder or 'digits')")
    ref = export_ref(config)
    if config.triton:
        check_triton_config(config.triton)
        if not config.dynamic_batch and ref.has_torch:  # a user's ONNX file is checked when it is read
            raise DeployKitError("--triton needs a dynamic batch, for Triton to batch requests: add --dynamic-batch")
        refuse_foreign_models(config.triton.repo, model_name(ref.spec.name if ref.spec else ref.onnx_path.stem))  # before any slow step
    exported = _compress_then_export(config, ref, compression)
    if config.triton:
        exported.triton = write_triton_repository([exported.folder], config.triton)
    return exported


def _compress_then_export(config: ExportConfig, ref: ModelRef, compression: Compression) -> ExportResult:
    compression = compression.for_export(qat=config.qat is not None)
    if not compression.requested:
        return export(config, ref)
    if config.module:
        raise DeployKitError("--prune/--distill-from/--data work on registry models; export your --module as it is")
    original = ref
    stages_folder = Path(config.out) / ref.name / "stages"
    stages: dict = {}
    models: dict[str, ModelRef] = {"original": original}
    if compression.prune_ratio is not None:
        sizes = run_prune(ref, PruneConfig(ratio=compression.prune_ratio), stages_folder / "prune", config.input_size)
        stages["prune"] = {
            "ratio": compression.prune_ratio,
            "macs_before": sizes.macs_before,
            "macs_after": sizes.macs_after,
            "params_before": sizes.params_before,
            "params_after": sizes.params_after,
        }
        ref = models["pruned"] = ref.with_checkpoint(stages_folder / "prune" / PRUNED_NAME)
    if compression.data:
        step = "distill" if compression.teacher else "train"
        training = DistillConfig(epochs=compression.epochs, alpha=0.9 if compression.teacher else 0.0)
        val = str(compression.val) if compression.val else None
        result = run_distill(ref, compression.teacher, compression.data, training, stages_folder / step, config.input_size, val_source=val, limit=compression.limit)
        stages[step] = result.stage_record()
        ref = models[step] = ref.with_checkpoint(result.weights)
    exported = export(config, ref)
    verdict = _judge(original, models, exported, compression, config)
    if verdict is not None:
        stages["chain"] = verdict.as_dict()
    ExportFolder(exported.folder).update({"stages": stages})
    exported.stages = stages
    exported.chain = verdict
    return exported


def _judge(original: ModelRef, models: dict[str, ModelRef], exported: ExportResult, compression: Compression, config: ExportConfig) -> ChainVerdict | None:
    """Top-1 of every stage and of the shipped file on the held-out photos, and the original against the shipped file on
    every CPU runtime; None where there are no labelled held-out photos to judge on."""
    manifest = ExportFolder(exported.folder).read()
    if original.build_classes() != manifest.model.num_classes:  # a new classifier: the original scored other classes
        if not compression.teacher:
            return None
        original = parse_model_ref(compression.teacher)
        models = {"original": original, **{name: ref for name, ref in models.items() if name != "original"}}
    preprocess = original.preprocess(original.spec.checked_input_size(original.input_size(config.input_size)))
    held_out = _held_out(compression, preprocess, manifest.model.num_classes)
    if held_out is None:
        return None
    dataset, source = held_out
    shipped = INT8_NAME if exported.int8 is not None else ONNX_NAME
    files = {ORIGINAL_NAME: ("fp32", True), ONNX_NAME: ("fp32", True)} | ({INT8_NAME: ("int8", True)} if shipped == INT8_NAME else {})
    with tempfile.TemporaryDirectory(prefix="deploykit-chain-") as work:
        timing = beside_the_original(original, preprocess.size, config.dynamic_batch, Path(work), {name: exported.folder / name for name in files if name != ORIGINAL_NAME})
        top1 = {name: _top1(OrtRunner(timing / ORIGINAL_NAME) if name == "original" else _torch_runner(ref, preprocess.size), dataset) for name, ref in models.items()}
        top1[shipped] = _top1(OrtRunner(timing / shipped), dataset)
        timings = None
        if config.time_runtimes:
            batch = 1 if config.dynamic_batch else config.batch
            with stage("timing the original against the exported files on every CPU runtime, interleaved"):
                timings = time_runtimes_apart(timing, files, (batch, 3, preprocess.size, preprocess.size))
    combinations = timings.combinations if timings else ()
    fastest = {name: min((c for c in combinations if c.file == name), key=lambda c: c.p50_ms, default=None) for name in (ORIGINAL_NAME, shipped)}
    return ChainVerdict(source, top1, shipped, fastest[ORIGINAL_NAME], fastest[shipped], compression.max_drop, combinations)


def _held_out(compression: Compression, preprocess, num_classes: int):
    """(dataset, words): ``--val``, else the held-out tenth of a labelled ``--data`` folder (what training validated on),
    else the digits' test split; None for unlabelled data."""
    from torch.utils.data import Subset

    if compression.val:
        dataset = LabelledImages(compression.val, preprocess.transform, num_classes)
        return dataset, f"{len(dataset)} images of {compression.val}"
    if compression.data == "digits":
        from deploykit.data.digits import load_digits

        test = load_digits(size=preprocess.size)[1]
        return array_dataset(test.images, test.labels), f"the digits' {len(test.labels)} test images"
    if compression.data and folder_classes(compression.data):
        dataset = LabelledImages(compression.data, preprocess.transform, num_classes)
        held = held_out_indices(dataset.labels)
        return Subset(dataset, held.tolist()), f"{len(held)} held-out images of {compression.data} (the last tenth of each class)"
    return None


def _torch_runner(ref: ModelRef, size: int):
    from deploykit.runtime import TorchRunner

    return TorchRunner(ref.build(), (3, size, size))


def _top1(runner, dataset) -> float:
    from deploykit.recipes.eval import count_hits

    with runner:
        hits = count_hits(runner, dataset)
    return hits.top1 / hits.images
