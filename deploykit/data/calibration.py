"""Sample sets for calibration and checks: a folder of images, or .npy/.npz arrays already preprocessed to (N, 3, H, W)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np

from deploykit.data.images import evenly_spaced, find_images, load_images
from deploykit.data.preprocess import Preprocess
from deploykit.errors import DeployKitError

MIN_CALIBRATION_SAMPLES = 8
HOLDOUT_LIMIT = 256  # held-out images the INT8 gate reads; bench's default agreement reads the same
MAX_ARRAY_BYTES = 2**31  # 2 GB of float32 samples: some 10,000 images at 224x224, far more than calibration needs
ARRAY_SUFFIXES = {".npy", ".npz"}
DIGITS = "digits"  # scikit-learn's real digits, as --data takes them: calibration reads the training split, checks the test split


def load_samples(source: str | Path, preprocess: Preprocess, limit: int, purpose: str = "calibration") -> np.ndarray:
    """Up to ``limit`` samples (spread evenly over the set) as float32 (N, 3, H, W), checked against the model's input."""
    if str(source) == DIGITS:
        from deploykit.data.digits import load_digits

        train, test = load_digits(size=preprocess.size)
        return np.stack(evenly_spaced((train if purpose == "calibration" else test).images, limit))
    source = Path(source)
    if source.suffix in ARRAY_SUFFIXES or (source.is_dir() and any(p.suffix in ARRAY_SUFFIXES for p in source.iterdir())):
        samples = _load_arrays(source)
        samples = np.stack(evenly_spaced(samples, limit)) if len(samples) else samples
    else:
        paths = find_images(source)
        samples = load_images(evenly_spaced(paths, limit), preprocess)
    expected = (3, preprocess.size, preprocess.size)
    if samples.ndim != 4 or samples.shape[1:] != expected:
        raise DeployKitError(
            f"{purpose} data in {source} has shape {list(samples.shape)}, but the model takes "
            f"[N, {', '.join(map(str, expected))}]; preprocess it to that shape or pass a folder of images"
        )
    if not np.isfinite(samples).all():
        raise DeployKitError(f"{purpose} data in {source} contains NaN or inf; every sample must be finite")
    if len(samples) < MIN_CALIBRATION_SAMPLES:
        raise DeployKitError(f"only {len(samples)} {purpose} samples in {source}; at least {MIN_CALIBRATION_SAMPLES} are needed (a few hundred is better)")
    return np.ascontiguousarray(samples, dtype=np.float32)


def _load_arrays(source: Path) -> np.ndarray:
    files = sorted(p for p in source.iterdir() if p.suffix in ARRAY_SUFFIXES) if source.is_dir() else [source]
    if not files or not all(p.is_file() for p in files):
        raise DeployKitError(f"{source} does not exist")
    arrays = []
    for path in files:
        try:
            if path.suffix == ".npy":
                with open(path, "rb") as f:
                    _check_array_size(path, _declared_shape(f))
            loaded = np.load(path, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                for key in loaded.files:
                    with loaded.zip.open(f"{key}.npy") as member:
                        _check_array_size(path, _declared_shape(member))
                    arrays.append(loaded[key])
            else:
                arrays.append(loaded)
        except (ValueError, OSError, KeyError) as exc:
            raise DeployKitError(f"cannot read calibration array {path}: {exc}") from exc
    try:
        return np.concatenate([np.asarray(a, dtype=np.float32) for a in arrays])
    except ValueError as exc:
        raise DeployKitError(f"calibration arrays in {source} have different shapes: {exc}") from exc


def _declared_shape(file) -> tuple[int, ...]:
    """The shape an .npy header declares, read before any of the data."""
    version = np.lib.format.read_magic(file)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read_header(file)[0]


def _check_array_size(path: Path, shape: tuple[int, ...]) -> None:
    if 4 * math.prod(shape) > MAX_ARRAY_BYTES:
        raise DeployKitError(
            f"{path} declares an array of shape {list(shape)} ({4 * math.prod(shape) / 2**30:.1f} GB as float32), "
            f"more than the {MAX_ARRAY_BYTES / 2**30:.0f} GB deploykit reads as samples; keep a few hundred samples"
        )


def calibration_hash(samples: np.ndarray) -> str:
    """sha256 of the preprocessed samples: changes with the images, their order, size or preprocessing."""
    digest = hashlib.sha256(str(samples.shape).encode())
    digest.update(samples.tobytes())
    return digest.hexdigest()
