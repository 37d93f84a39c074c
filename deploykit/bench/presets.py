"""Deployment target presets: data in presets.toml, plus any file of the same shape a user passes."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from deploykit.choices import MAX_THREADS
from deploykit.errors import DeployKitError

ENGINES = ("torch", "ort", "trt", "openvino", "auto")  # auto: the fastest CPU runtime an export measured
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "int8")
BUILTIN_PRESETS = Path(__file__).with_name("presets.toml")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    engine: str
    device: str
    precision: str
    batches: tuple[int, ...]
    threads: int | None = None
    workspace_gb: float | None = None


def load_presets(extra: Path | None = None) -> dict[str, Preset]:
    """The built-in presets, updated with (and overridable by) those in ``extra``."""
    presets = _parse(BUILTIN_PRESETS)
    if extra is not None:
        presets.update(_parse(Path(extra)))
    return presets


def get_preset(name: str, extra: Path | None = None) -> Preset:
    presets = load_presets(extra)
    if name not in presets:
        raise DeployKitError(f"unknown target preset {name!r}; known: {', '.join(sorted(presets))}")
    return presets[name]


def _parse(path: Path) -> dict[str, Preset]:
    if not path.is_file():
        raise DeployKitError(f"preset file {path} does not exist")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DeployKitError(f"preset file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 TOML") from exc
    except tomllib.TOMLDecodeError as exc:
        raise DeployKitError(f"preset file {path} is not valid TOML: {exc}") from exc
    except RecursionError as exc:  # tomllib recurses once per nested bracket
        raise DeployKitError(f"preset file {path} nests its tables or arrays too deeply to be a preset file") from exc
    return {name: _validate(name, fields, path) for name, fields in table.items()}


def _validate(name: str, fields: dict, path: Path) -> Preset:
    where = f"preset {name!r} in {path}"
    if not isinstance(fields, dict):
        raise DeployKitError(f"{where} must be a table")
    allowed = set(Preset.__dataclass_fields__) - {"name"}
    unknown = set(fields) - allowed
    if unknown:
        raise DeployKitError(f"{where} has unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    for key, choices in (("engine", ENGINES), ("device", DEVICES), ("precision", PRECISIONS)):
        if fields.get(key) not in choices:
            raise DeployKitError(f"{where}: {key} must be one of {', '.join(choices)}, got {fields.get(key)!r}")
    batches = fields.get("batches", [1])
    if not isinstance(batches, list) or not batches or not all(_is_int(b) and 0 < b <= 65536 for b in batches):
        raise DeployKitError(f"{where}: batches must be a non-empty list of positive integers")
    threads = fields.get("threads")
    if threads is not None and (not _is_int(threads) or not 1 <= threads <= MAX_THREADS):
        raise DeployKitError(f"{where}: threads must be an integer from 1 to {MAX_THREADS} (4 per core here), as --threads")
    workspace = fields.get("workspace_gb")
    if workspace is not None and (isinstance(workspace, bool) or not isinstance(workspace, (int, float)) or not 0 < workspace <= 1024):
        raise DeployKitError(f"{where}: workspace_gb must be a number of GB between 0 and 1024")
    if not isinstance(fields.get("description", ""), str):
        raise DeployKitError(f"{where}: description must be a string")
    return Preset(
        name=name,
        description=fields.get("description", ""),
        engine=fields["engine"],
        device=fields["device"],
        precision=fields["precision"],
        batches=tuple(batches),
        threads=threads,
        workspace_gb=fields.get("workspace_gb"),
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # TOML's true is no batch size
