"""What a bench or eval command runs: the model reference, the export folder holding its files, and the options
that can or cannot apply to it (input size, batch), checked before any work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploykit.choices import MAX_INPUT_SIZE
from deploykit.data import Preprocess
from deploykit.errors import DeployKitError
from deploykit.recipes.ref import ModelRef, parse_model_ref


@dataclass
class Subject:
    """What is benchmarked: the model reference, and the export folder holding its ONNX files once exported."""

    ref: ModelRef
    folder: Path | None = None
    timed_file: Path | None = None  # the ONNX file (or engine) the runner times; None for PyTorch

    @property
    def spec(self):
        return self.ref.spec

    @property
    def foreign_onnx(self) -> bool:
        """An ONNX file deploykit did not make: no manifest, no PyTorch model to compare with."""
        return self.ref.spec is None

    def input_size(self, requested: int | None = None) -> int:
        """The input size to feed: the export's or the file's own; a different ``--input-size`` is refused, not ignored."""
        manifest = self.ref.manifest
        if manifest is not None and manifest.input is not None:  # exported at that size (a user's module too)
            if requested and requested != manifest.input.size:
                name = manifest.model.name
                raise DeployKitError(
                    f"{self.ref.text} was exported at {manifest.input.size}x{manifest.input.size}, so --input-size "
                    f"{requested} cannot apply; export it at that size (`deploykit export {name} --input-size "
                    f"{requested}`) or drop --input-size"
                )
            return manifest.input.size
        if self.foreign_onnx:
            fixed = self.ref.signature.input_dims[-1]
            if requested and fixed and requested != fixed:
                raise DeployKitError(f"{self.ref.text} takes {fixed}x{fixed} inputs (fixed in the file), so --input-size {requested} cannot apply; drop it")
            size = requested or fixed
            if not size:
                raise DeployKitError(f"{self.ref.text} has a dynamic input size and no manifest; pass --input-size")
            if size > MAX_INPUT_SIZE:
                raise DeployKitError(f"{self.ref.text} takes {size}x{size} inputs, beyond the {MAX_INPUT_SIZE}x{MAX_INPUT_SIZE} deploykit feeds; export it at a smaller size")
            return size
        return requested or self.spec.input_size

    def check_batches(self, batches: tuple[int, ...]) -> None:
        """Refuse, before any work, a batch size the file cannot take (a fixed-batch export or ONNX file)."""
        manifest = self.ref.manifest
        if manifest is not None and manifest.input is not None:
            fixed = manifest.input.batch.size
        else:
            fixed = self.ref.signature.input_dims[0] if self.foreign_onnx else None
        wrong = [batch for batch in batches if fixed and batch != fixed]
        if wrong:
            how = f"export with --dynamic-batch (`deploykit export {manifest.model.name} --dynamic-batch`)" if manifest is not None else "export the file with a dynamic batch dimension"
            raise DeployKitError(f"{self.ref.text} takes a fixed batch of {fixed}, so --batch {','.join(map(str, wrong))} cannot apply; {how}, or bench --batch {fixed}")

    def num_outputs(self) -> int:
        """Classes the ONNX file predicts (its output's last dimension)."""
        if self.ref.manifest is not None:
            return self.ref.manifest.model.num_classes
        if not self.ref.signature.num_classes:
            raise DeployKitError(f"{self.ref.text} has a dynamic class dimension; deploykit needs [N, classes] logits")
        return self.ref.signature.num_classes


def resolve_subject(text: str, allow_bare_onnx: bool = False) -> Subject:
    ref = parse_model_ref(text)
    if ref.spec is None and not allow_bare_onnx:
        raise DeployKitError(f"{text} is an ONNX file with no manifest beside it; bench it from its export folder, or give NAME, NAME:CHECKPOINT or NAME:IMAGENET1K_V1")
    folder = ref.onnx_path.parent if ref.manifest is not None and ref.onnx_path is not None else None
    return Subject(ref, folder)


def subject_preprocess(subject: Subject, size: int, mean: tuple, std: tuple) -> Preprocess:
    """The model's own preprocessing (its published recipe when it has one), or, for a foreign ONNX file, the options'."""
    manifest = subject.ref.manifest
    if subject.foreign_onnx and manifest is not None and manifest.input is not None:  # a user's module exported by deploykit
        return Preprocess.recorded(manifest.input)
    if subject.foreign_onnx:
        return Preprocess.default(size, mean, std)
    return subject.ref.preprocess(size)
