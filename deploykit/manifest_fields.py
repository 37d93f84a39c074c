"""The types and ranges every reader of a manifest relies on, checked when it is read."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from deploykit.batch import DYNAMIC
from deploykit.choices import INTERPOLATIONS, MAX_INPUT_SIZE
from deploykit.errors import DeployKitError

MAX_CLASSES = 100_000


def check_fields(model: Any, inputs: Any, files: object, path: Path) -> None:
    """The types and ranges every reader relies on; a one-line error naming the first field that is wrong. ``model`` and
    ``inputs`` are the manifest's ModelRecord and InputRecord (or None): not imported here, which would be a cycle."""

    def wrong(field_name: str, expected: str, value: object) -> DeployKitError:
        return DeployKitError(f"{path}: {field_name} must be {expected}, got {value!r}; export again to rewrite the manifest")

    def is_int(value: object, low: int, high: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

    if not isinstance(model.name, str) or not isinstance(model.family, str):
        raise wrong("model.name and model.family", "strings", (model.name, model.family))
    if not is_int(model.num_classes, 1, MAX_CLASSES):
        raise wrong("model.num_classes", f"an integer from 1 to {MAX_CLASSES}", model.num_classes)
    if not isinstance(model.builder_kwargs, dict):
        raise wrong("model.builder_kwargs", "an object", model.builder_kwargs)
    if "num_classes" in model.builder_kwargs and not is_int(model.builder_kwargs["num_classes"], 1, MAX_CLASSES):
        raise wrong("model.builder_kwargs.num_classes", f"an integer from 1 to {MAX_CLASSES}", model.builder_kwargs["num_classes"])
    if model.classes is not None and (not isinstance(model.classes, list) or len(model.classes) != model.num_classes or not all(isinstance(name, str) for name in model.classes)):
        raise wrong("model.classes", f"a list of {model.num_classes} class names", model.classes)
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        raise wrong("files", "an object of {name: {sha256, bytes}}", files)
    if inputs is None:
        return
    shape = inputs.shape
    if (
        not isinstance(shape, list)
        or len(shape) != 4
        or not (shape[0] == DYNAMIC or is_int(shape[0], 1, 65536))
        or shape[1] != 3
        or not all(is_int(d, 1, MAX_INPUT_SIZE) for d in shape[2:])
        or shape[2] != shape[3]
    ):
        raise wrong("input.shape", f'[batch or "batch", 3, N, N] with N up to {MAX_INPUT_SIZE}', shape)
    for name in ("mean", "std"):
        values = getattr(inputs, name)
        if (
            not isinstance(values, list)
            or len(values) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
            or (name == "std" and not all(v > 0 for v in values))
        ):
            raise wrong(f"input.{name}", "a list of 3 finite numbers" + (" above 0" if name == "std" else ""), values)
    if not is_int(inputs.resize, 1, 4 * MAX_INPUT_SIZE):
        raise wrong("input.resize", "a positive integer", inputs.resize)
    if inputs.interpolation not in INTERPOLATIONS:
        raise wrong("input.interpolation", f"one of {', '.join(INTERPOLATIONS)}", inputs.interpolation)
