"""A Triton model repository written from export folders: ``REPO/NAME/config.pbtxt``, ``REPO/NAME/1/model.onnx`` (or
``model.plan``) and ``REPO/NAME/.deploykit.json``, the record of what deploykit wrote there and from which file.

Every model folder is staged beside the repository and moved in whole: a new repository appears at once with all its
models; into an existing one each model folder is swapped in at once. A folder deploykit did not write is refused,
never replaced, and other models in the repository are left alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import DeployKitError
from deploykit.io import exchange_paths, exclusive_lock, make_temporary_dir, recover_interrupted_exchange, sha256_file
from deploykit.manifest import PUBLISH_WAIT_S
from deploykit.serve.triton_config import ModelSpec, check_config, config_text, parse_config

CONFIG_NAME = "config.pbtxt"
RECORD_NAME = ".deploykit.json"
VERSION = "1"


@dataclass(frozen=True)
class StagedModel:
    """A model folder to publish: its config and the file it serves."""

    spec: ModelSpec
    source: Path


def model_name(text: str) -> str:
    """A Triton model name (letters, digits, ``_``, ``-``, ``.``) from a folder name."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", text).strip(".")
    if not name:
        raise DeployKitError(f"cannot make a Triton model name from {text!r}; rename the export folder")
    return name


def publish_repository(repo: Path, models: list[StagedModel]) -> None:
    """Write every model folder into ``repo`` (created if missing)."""
    names = [model.spec.name for model in models]
    if len(set(names)) != len(names):
        raise DeployKitError(f"two models would share a name in {repo} ({', '.join(sorted(n for n in names if names.count(n) > 1))}); "
                             "give exports in folders with different names")
    repo = repo.resolve()
    repo.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(repo.parent / f".{repo.name}.lock", PUBLISH_WAIT_S):
        for name in names:
            recover_interrupted_exchange(repo / name)
            refuse_foreign_folder(repo / name)
        for stale in repo.parent.glob(f".{repo.name}.staging-*"):  # left by a run that was killed
            shutil.rmtree(stale, ignore_errors=True)
        staging = make_temporary_dir(repo.parent, f".{repo.name}.staging-")
        try:
            for model in models:
                _stage(model, staging / model.spec.name)
            if not repo.exists():
                os.rename(staging, repo)
                return
            for name in names:
                if (repo / name).exists():
                    exchange_paths(staging / name, repo / name)  # staging now holds the previous version
                else:
                    os.rename(staging / name, repo / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def refuse_foreign_folder(folder: Path) -> None:
    """A model folder is replaced whole: refuse one deploykit did not write, or one holding files it did not write."""
    if not folder.exists():
        return
    record = read_record(folder)
    written = {CONFIG_NAME, RECORD_NAME, VERSION, f"{VERSION}/{record.get('file', '')}"} if record else set()
    present = {str(path.relative_to(folder)) for path in folder.rglob("*")}
    foreign = sorted(present - written)
    if not record or foreign:
        what = f"holds files deploykit did not write ({', '.join(foreign[:4])})" if record else "was not written by deploykit"
        raise DeployKitError(f"model folder {folder} {what}; it would be replaced whole, so nothing was written: move it, or "
                             "write the repository elsewhere")


def read_record(folder: Path) -> dict:
    """The record deploykit wrote in a model folder; empty where there is none."""
    try:
        record = json.loads((folder / RECORD_NAME).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) and record.get("written_by") == "deploykit" else {}


def _stage(model: StagedModel, folder: Path) -> None:
    text = config_text(model.spec)
    (folder / VERSION).mkdir(parents=True)
    (folder / CONFIG_NAME).write_text(text)
    target = folder / VERSION / model.spec.model_file
    try:
        os.link(model.source, target)
    except OSError:
        shutil.copy2(model.source, target)
    record = {"written_by": "deploykit", "file": model.spec.model_file, "source": str(model.source.resolve()),
              "sha256": sha256_file(target), "backend": model.spec.backend, "precision": model.spec.precision,
              "batching_from": model.spec.batching.source}
    (folder / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")


def read_model_config(folder: Path):
    """A model folder's ``config.pbtxt``, parsed and checked as Triton would."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise DeployKitError(f"{folder} has no {CONFIG_NAME}; write the repository with `deploykit triton REPO FOLDER`")
    config = parse_config(path.read_text(), str(path))
    check_config(config, folder.name)
    return config
