"""Export folders and their ``manifest.json``: the one type that writes and reads them.

A folder written by ``deploykit export`` (or ``prune``) holds ``model.onnx``, maybe ``model.int8.onnx`` or ``pruned.pth``,
and ``manifest.json``; one written by ``train`` or ``distill`` holds ``best.pth`` and ``last.pth`` instead. The manifest
says what the model is (``ModelRecord``, with its class names when it has them), what it takes (``InputRecord``), the
sha256 of every file, and sections of measured figures recipes add (parity, int8, stages, prune). Readers get typed records.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import platform
import shlex
import shutil
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, UTC
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, TypeVar

from deploykit.batch import Batch
from deploykit.errors import DeployKitError
from deploykit.manifest_fields import check_fields
from deploykit.io import atomic_write_json, exchange_paths, exclusive_lock, make_temporary_dir, recover_interrupted_exchange, sha256_file

if TYPE_CHECKING:
    from deploykit.models.sources import Weights

MANIFEST_NAME = "manifest.json"
ONNX_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
FP16_NAME = "model.fp16.onnx"
PRUNED_NAME = "pruned.pth"
BEST_NAME = "best.pth"  # train/distill: the best epoch's weights, what a training folder stands for as a model
LAST_NAME = "last.pth"
EXPORTED_FILES = {ONNX_NAME, INT8_NAME, FP16_NAME, MANIFEST_NAME}  # what one export writes anew, all together
# Everything deploykit writes into an output folder: the exported files, and what commands add beside them (the
# calibration cache, compression stages, the pruned checkpoint, TensorRT engines with their records and timing cache).
OWN_ENTRIES = (
    "model*.onnx",
    "model*.engine",
    "model*.engine.json",
    MANIFEST_NAME,
    PRUNED_NAME,
    "timing.cache",
    "calib-cache",
    "stages",
    ".export-*",
    BEST_NAME,
    LAST_NAME,
    "checkpoint.pth",
    "history.json",
)
PUBLISH_WAIT_S = 1800.0  # how long an export waits for another one into the same folder
_TRACKED_PACKAGES = ("deploykit", "torch", "onnx", "onnxruntime", "onnxslim", "openvino", "tensorrt")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape an artifact (absent ones are left out)."""
    versions = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@dataclass(frozen=True)
class WeightsRecord:
    """Where the weights came from: a published tag, a checkpoint file, or a seeded random init."""

    path: str | None = None
    sha256: str | None = None
    tag: str | None = None
    seed: int | None = None
    random: bool = False
    source: str | None = None
    url: str | None = None
    published_top1: float | None = None
    published_top5: float | None = None

    @property
    def reference(self) -> str | None:
        """What ``--weights`` takes to rebuild the same model: the tag, else the file."""
        return self.tag or self.path

    @classmethod
    def of(cls, weights: Weights) -> WeightsRecord:
        """The record of resolved weights (the file's hash as read when the model was built)."""
        from deploykit.models.sources import Published, RandomInit

        if isinstance(weights, RandomInit):
            return cls(seed=weights.seed, random=True)
        if isinstance(weights, Published):
            entry = weights.entry
            return cls(path=str(weights.path), sha256=weights.sha256, tag=entry.tag, source=entry.source, url=entry.url, published_top1=entry.top1, published_top5=entry.top5)
        return cls(path=str(weights.path), sha256=weights.sha256)

    def matches(self, weights: Weights) -> bool:
        """Whether this record describes the same weights: the same tag, the same file content, or both random."""
        from deploykit.models.sources import Published, RandomInit

        if isinstance(weights, RandomInit):
            return self.random
        if isinstance(weights, Published):
            return self.tag == weights.entry.tag
        return self.sha256 is not None and weights.path.is_file() and self.sha256 == weights.sha256


@dataclass(frozen=True)
class ModelRecord:
    name: str
    family: str
    num_classes: int
    weights: WeightsRecord
    builder_kwargs: dict = field(default_factory=dict)
    classes: list | None = None  # class names in class order, where the model was trained on named class folders


@dataclass(frozen=True)
class InputRecord:
    shape: list  # [batch.Batch.dim, 3, H, W]
    mean: list
    std: list
    resize: int
    interpolation: str = "bilinear"
    name: str = "input"
    output: str = "logits"
    layout: str = "NCHW"
    dtype: str = "float32"

    @property
    def size(self) -> int:
        return int(self.shape[-1])

    batch = property(lambda self: Batch.of(self.shape[0]))


class Section(Protocol):
    """A typed manifest section, as a recipe writes it: its key and its JSON."""

    KEY: ClassVar[str]

    def as_dict(self) -> dict: ...


class ReadSection(Protocol):
    """A typed manifest section, as a reader gets it back (a one-line error when the file's section is damaged)."""

    KEY: ClassVar[str]

    @classmethod
    def from_dict(cls, data: dict, where: str) -> Self: ...


S = TypeVar("S", bound=ReadSection)


@dataclass
class Manifest:
    model: ModelRecord
    input: InputRecord | None
    files: dict[str, dict] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)  # measured figures recipes add: parity, int8, stages, prune (JSON)
    origin: str = field(default="manifest.json", compare=False)  # the file it was read from, for errors

    def section(self, kind: type[S]) -> S | None:
        """The ``kind`` record of this manifest; None where it has no such section."""
        data = self.sections.get(kind.KEY)
        return None if data is None else kind.from_dict(data, f"{self.origin}: {kind.KEY}")

    def add(self, *records: Section) -> Manifest:
        """These records as sections of the manifest (JSON from here on); the manifest itself."""
        self.sections.update({record.KEY: record.as_dict() for record in records})
        return self

    @classmethod
    def from_json(cls, data: dict, path: Path) -> Manifest:
        try:
            model = dict(data["model"])
            model["weights"] = WeightsRecord(**model.get("weights", {}))
            record = ModelRecord(**model)
            inputs = InputRecord(**data["input"]) if "input" in data else None
        except (KeyError, TypeError, ValueError) as exc:
            raise DeployKitError(f"{path} is not a deploykit manifest ({exc}); export again") from exc
        check_fields(record, inputs, data.get("files", {}), path)
        known = {"model", "input", "files", "updated", "command", "versions"}
        return cls(record, inputs, dict(data.get("files", {})), {k: v for k, v in data.items() if k not in known}, str(path))

    def to_json(self) -> dict:
        data: dict[str, Any] = {"model": asdict(self.model)}
        if self.input is not None:
            data["input"] = asdict(self.input)
        return {**data, **self.sections, "files": self.files}


def _carry_over(live: Path, staging: Path) -> None:
    """Hard-link (or copy) into ``staging`` what the live folder has beside the files an export writes (only deploykit's own
    files can be there: ``refuse_foreign_files``)."""
    for entry in live.iterdir():
        if entry.name in EXPORTED_FILES or entry.name.startswith(".export-") or (staging / entry.name).exists():
            continue
        if entry.is_dir():
            shutil.copytree(entry, staging / entry.name, copy_function=_link_or_copy, symlinks=True)
        else:
            _link_or_copy(entry, staging / entry.name)


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


class ExportFolder:
    """An output folder of deploykit: its files by role and its manifest."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_NAME

    @property
    def int8_path(self) -> Path:
        return self.path / INT8_NAME

    @property
    def fp16_path(self) -> Path:
        return self.path / FP16_NAME

    @property
    def pruned_path(self) -> Path:
        return self.path / PRUNED_NAME

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def read(self) -> Manifest:
        """The folder's manifest; a one-line error when it has none or it is not one."""
        if not self.manifest_path.is_file():
            raise DeployKitError(f"{self.path} has no {MANIFEST_NAME}; give a model name or a folder written by `deploykit export`")
        try:
            data = json.loads(self.manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DeployKitError(f"{self.manifest_path} is not valid JSON ({exc}); delete it and export again") from exc
        if not isinstance(data, dict):
            raise DeployKitError(f"{self.manifest_path} is not a deploykit manifest; export again")
        return Manifest.from_json(data, self.manifest_path)

    def write(self, manifest: Manifest, files: list[str]) -> Manifest:
        """Hash ``files`` into ``manifest`` and write it atomically, with versions, command and time."""
        for name in files:
            manifest.files[name] = {"sha256": sha256_file(self.path / name), "bytes": (self.path / name).stat().st_size}
        atomic_write_json(
            self.manifest_path, {**manifest.to_json(), "updated": datetime.now(UTC).isoformat(timespec="seconds"), "command": shlex.join(sys.argv), "versions": package_versions()}
        )
        return manifest

    def verified(self, name: str) -> Path:
        """``name`` in this folder, after checking it is the file the manifest hashed (not changed or swapped since)."""
        path = self.path / name
        entry = self.read().files.get(name)
        if entry is None:
            raise DeployKitError(f"{path} is not one of the files {self.manifest_path} describes; export again")
        if not path.is_file() or sha256_file(path) != entry.get("sha256"):
            raise DeployKitError(f"{path} is not the file that was exported (its sha256 differs from {MANIFEST_NAME}, or it is missing); re-export")
        return path

    def twins_made_from(self, onnx_sha256: str, input_record: InputRecord) -> dict[str, dict]:
        """The INT8 and FP16 files of this folder made from an FP32 file with this sha256 and preprocessing, intact;
        each with its manifest section. What a re-export that does not remake them keeps."""
        if not self.exists():
            return {}
        try:
            manifest = self.read()
        except DeployKitError:
            return {}
        if manifest.files.get(ONNX_NAME, {}).get("sha256") != onnx_sha256 or manifest.input != input_record:
            return {}
        sections = {INT8_NAME: manifest.sections.get("int8"), FP16_NAME: manifest.sections.get("parity", {}).get(FP16_NAME)}
        return {
            name: section
            for name, section in sections.items()
            if section and name in manifest.files and (self.path / name).is_file() and sha256_file(self.path / name) == manifest.files[name].get("sha256")
        }

    def link_into(self, names: list[str], staging: Path) -> None:
        """Hard-link (or copy) these files of the live folder into a staging folder."""
        for name in names:
            _link_or_copy(self.path / name, staging / name)

    @contextlib.contextmanager
    def publishing(self, wait_seconds: float = PUBLISH_WAIT_S) -> Iterator[Path]:
        """Stage a complete new version of this folder and swap it in at once when the block succeeds.

        Yields the staging folder: write every new file and the manifest there. Under an advisory lock,
        so concurrent exports into one folder take turns instead of mixing their files. Files of the live
        folder that the new version does not make (calibration cache, pruned checkpoint, stages, engines)
        are carried over; a failure or a kill leaves the live folder as it was, and the next export removes
        the staging folders that killed runs left behind.
        """
        live = self.path.resolve() if self.path.is_symlink() else self.path  # a linked folder stays a link: publish into its target
        parent = live.parent
        parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(parent / f".{live.name}.lock", wait_seconds):
            recover_interrupted_exchange(live)
            ExportFolder(live).refuse_foreign_files()
            for stale in [*parent.glob(f".{live.name}.staging-*"), *live.glob(".export-*")]:
                shutil.rmtree(stale, ignore_errors=True)
            live.mkdir(exist_ok=True)
            staging = make_temporary_dir(parent, f".{live.name}.staging-")
            try:
                yield staging
                _carry_over(live, staging)
                exchange_paths(staging, live)  # staging now holds the previous version, removed below
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def refuse_foreign_files(self) -> None:
        """An output folder is replaced as a whole when an export is published: refuse one that holds anything deploykit
        did not write (a git checkout, notes, an .env), rather than lose it."""
        if not self.path.is_dir():
            return
        foreign = sorted(entry.name for entry in self.path.iterdir() if not any(fnmatch.fnmatch(entry.name, p) for p in OWN_ENTRIES))
        if foreign:
            shown = ", ".join(foreign[:6]) + (f" and {len(foreign) - 6} more" if len(foreign) > 6 else "")
            raise DeployKitError(
                f"{self.path} holds files deploykit did not write ({shown}); an export replaces its folder as a "
                "whole, so nothing was written there: choose another --out, or move those files elsewhere"
            )

    def update(self, sections: dict[str, Any], files: list[str] = ()) -> Manifest:
        """Add measured sections (and files) to the existing manifest, under the folder's lock."""
        with exclusive_lock(self.path.parent / f".{self.path.name}.lock", PUBLISH_WAIT_S):
            manifest = self.read()
            manifest.sections.update(sections)
            return self.write(manifest, list(files))
