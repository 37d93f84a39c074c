"""Export folders and their ``manifest.json``: the one type that writes and reads them.

A folder written by ``deploykit export`` (or ``prune``) holds ``model.onnx``, maybe ``model.int8.onnx``
or ``pruned.pth``, and ``manifest.json``: what the model is (``ModelRecord``), what it takes
(``InputRecord``), the sha256 of every file, and sections of measured figures that recipes add
(parity, int8, stages, prune). Readers get typed records, never key paths.
"""

from __future__ import annotations

import json
import platform
import shlex
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from deploykit.errors import DeployKitError
from deploykit.io import atomic_write_json, sha256_file

MANIFEST_NAME = "manifest.json"
ONNX_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
FP16_NAME = "model.fp16.onnx"
PRUNED_NAME = "pruned.pth"
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


@dataclass(frozen=True)
class ModelRecord:
    name: str
    family: str
    num_classes: int
    weights: WeightsRecord
    builder_kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class InputRecord:
    shape: list  # [batch or "batch", 3, H, W]
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

    @property
    def dynamic_batch(self) -> bool:
        return not isinstance(self.shape[0], int)


@dataclass
class Manifest:
    model: ModelRecord
    input: InputRecord | None
    files: dict[str, dict] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)  # measured figures recipes add: parity, int8, stages, prune

    @classmethod
    def from_json(cls, data: dict, path: Path) -> Manifest:
        try:
            model = dict(data["model"])
            model["weights"] = WeightsRecord(**model.get("weights", {}))
            record = ModelRecord(**model)
            inputs = InputRecord(**data["input"]) if "input" in data else None
        except (KeyError, TypeError) as exc:
            raise DeployKitError(f"{path} is not a deploykit manifest ({exc}); export again") from exc
        known = {"model", "input", "files", "updated", "command", "versions"}
        return cls(record, inputs, dict(data.get("files", {})), {k: v for k, v in data.items() if k not in known})

    def to_json(self) -> dict:
        data: dict[str, Any] = {"model": asdict(self.model)}
        if self.input is not None:
            data["input"] = asdict(self.input)
        return {**data, **self.sections, "files": self.files}


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
        atomic_write_json(self.manifest_path, {
            **manifest.to_json(), "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join(sys.argv), "versions": package_versions(),
        })
        return manifest

    def update(self, sections: dict[str, Any], files: list[str] = ()) -> Manifest:
        """Add measured sections (and files) to the existing manifest."""
        manifest = self.read()
        manifest.sections.update(sections)
        return self.write(manifest, list(files))
