"""``manifest.json``: what an output folder holds, how it was made, and what was measured on it."""

from __future__ import annotations

import json
import platform
import shlex
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from deploykit.errors import DeployKitError
from deploykit.io import atomic_write_json, sha256_file

MANIFEST_NAME = "manifest.json"
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


def file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of ``folder``, or None when it has none."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DeployKitError(f"{path} is not valid JSON ({exc.msg}); delete it and export again") from exc


def write_manifest(folder: Path, updates: dict[str, Any], files: list[str], fresh: bool = False) -> dict[str, Any]:
    """Merge ``updates`` into the folder's manifest (or start anew), hash ``files``, write it atomically."""
    folder = Path(folder)
    manifest = {} if fresh else read_manifest(folder) or {}
    manifest.update(updates)
    manifest["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest["command"] = shlex.join(sys.argv)
    manifest["versions"] = package_versions()
    entries = manifest.setdefault("files", {})
    for name in files:
        entries[name] = file_entry(folder / name)
    atomic_write_json(folder / MANIFEST_NAME, manifest)
    return manifest
