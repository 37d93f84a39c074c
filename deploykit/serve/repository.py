"""A Triton model repository written from export folders: ``REPO/NAME/config.pbtxt``, ``REPO/NAME/1/model.onnx`` (or
``model.plan``) and ``REPO/NAME/.deploykit.json``, the record of what deploykit wrote there and from which file.

Every model folder is staged and moved in whole: a new repository is staged beside it and appears at once with all its
models; into an existing one (which may be a mount point of its own, such as a Docker volume) the staging is inside it,
and each model folder is swapped in at once. A folder deploykit did not write is refused, never replaced; models a
republished export no longer makes (its INT8 or FP16 file gone) are removed; other models are left alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import DeployKitError
from deploykit.io import exchange_paths, exclusive_lock, make_temporary_dir, recover_interrupted_exchange, sha256_file
from deploykit.manifest import PUBLISH_WAIT_S
from deploykit.serve.triton_config import TritonModel, check_config, config_text, parse_config

CONFIG_NAME = "config.pbtxt"
RECORD_NAME = ".deploykit.json"
VERSION = "1"


@dataclass(frozen=True)
class StagedModel:
    """A model folder to publish: its config and the file it serves."""

    spec: TritonModel
    source: Path


def model_name(text: str) -> str:
    """A Triton model name (letters, digits, ``_``, ``-``, ``.``) from a folder name; where characters had to be replaced,
    a short hash of the original keeps two names apart (模型 and 数据 both read ``__``)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", text).strip(".")
    if name != text:
        name = f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:8]}".lstrip("-")
    if not name or not text.strip("."):
        raise DeployKitError(f"cannot make a Triton model name from {text!r}; rename the export folder")
    return name


def variant_names(base: str) -> tuple[str, ...]:
    """Every model name one export folder can become (see ``recipes.triton``)."""
    return (base, f"{base}_fp16", f"{base}_int8", f"{base}_trt")


def refuse_foreign_models(repo: Path, base: str) -> None:
    """Before an export into ``repo``: none of the names it will publish is a folder deploykit did not write."""
    for name in variant_names(base):
        refuse_foreign_folder(repo / name)


def publish_repository(repo: Path, models: list[StagedModel]) -> list[str]:
    """Write every model folder into ``repo`` (created if missing); returns the models removed because the exports that
    made them no longer do."""
    names = [model.spec.name for model in models]
    if len(set(names)) != len(names):
        raise DeployKitError(f"two models would share a name in {repo} ({', '.join(sorted(n for n in names if names.count(n) > 1))}); give exports in folders with different names")
    repo = repo.resolve()
    try:
        repo.parent.mkdir(parents=True, exist_ok=True)
        lock = _lock_path(repo)
        with exclusive_lock(lock, PUBLISH_WAIT_S):
            return _publish_locked(repo, models, names)
    except OSError as exc:  # read-only, permission, a filesystem that makes no files (/proc), full disk
        raise DeployKitError(f"cannot write the repository {repo}: {exc.strerror or exc} ({exc.filename or repo}); choose a writable folder") from exc


def _lock_path(repo: Path) -> Path:
    """Beside the repository; inside it where its parent cannot be written (a mount point of its own, read-only above)."""
    beside = repo.parent / f".{repo.name}.lock"
    if repo.is_dir() and not os.access(repo.parent, os.W_OK):
        return repo / ".deploykit.lock"
    return beside


def _publish_locked(repo: Path, models: list[StagedModel], names: list[str]) -> list[str]:
    for name in names:
        recover_interrupted_exchange(repo / name)
        refuse_foreign_folder(repo / name)
    stale_patterns = [(repo.parent, f".{repo.name}.staging-*"), (repo, ".staging-*")]
    for folder, pattern in stale_patterns:  # left by a run that was killed
        for stale in folder.glob(pattern) if folder.is_dir() else ():
            shutil.rmtree(stale, ignore_errors=True)
    existing = repo.is_dir()
    staging = make_temporary_dir(repo, ".staging-") if existing else make_temporary_dir(repo.parent, f".{repo.name}.staging-")
    try:
        for model in models:
            _stage(model, staging / model.spec.name)
        if not existing:
            os.rename(staging, repo)
            return []
        for name in names:
            if (repo / name).exists():
                exchange_paths(staging / name, repo / name)  # staging now holds the previous version
            else:
                os.rename(staging / name, repo / name)
        retired = _no_longer_made(repo, models, names)
        for name in retired:
            os.rename(repo / name, staging / f".retired-{name}")  # removed with the staging folder
        return retired
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _no_longer_made(repo: Path, models: list[StagedModel], names: list[str]) -> list[str]:
    """Models in ``repo`` that deploykit wrote from one of these export folders under a name this publish does not make."""
    sources = {model.source.resolve().parent for model in models}
    retired = []
    for folder in sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in names):
        record = read_record(folder)
        if record and record.get("source") and Path(record["source"]).parent in sources:
            retired.append(folder.name)
    return retired


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
        raise DeployKitError(f"model folder {folder} {what}; it would be replaced whole, so nothing was written: move it, or write the repository elsewhere")


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
    record = {
        "written_by": "deploykit",
        "file": model.spec.model_file,
        "source": str(model.source.resolve()),
        "sha256": sha256_file(target),
        "backend": model.spec.backend,
        "precision": model.spec.precision,
        "batching_from": model.spec.batching.source,
    }
    (folder / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")


def read_model_config(folder: Path):
    """A model folder's ``config.pbtxt``, parsed and checked as Triton would."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise DeployKitError(f"{folder} has no {CONFIG_NAME}; write the repository with `deploykit triton REPO FOLDER`")
    config = parse_config(path.read_text(), str(path))
    check_config(config, folder.name)
    return config
