"""What the quantizer reads: calibration, held-out and labelled images, loaded and checked before any slow step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deploykit.choices import CALIBRATION_METHODS, INT8_LAYOUTS
from deploykit.compress.configs import QuantizeConfig
from deploykit.data import Preprocess, load_labelled_folder
from deploykit.data.calibration import HOLDOUT_LIMIT, load_samples
from deploykit.errors import DeployKitError

VAL_LIMIT = 10_000


@dataclass(frozen=True)
class QuantizationData:
    """Everything the quantizer reads, loaded and checked before any slow step."""

    calibration: np.ndarray
    holdout: np.ndarray
    val_images: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    val_classes: str | None = None


def load_quantization_data(config: QuantizeConfig, preprocess: Preprocess, num_classes: int) -> QuantizationData:
    """Check the options and load calibration, held-out and labelled images (``--val`` subfolders mapped to the model's
    ``num_classes`` classes as ``eval`` maps them): done before any slow step."""
    if config.method not in CALIBRATION_METHODS:
        raise DeployKitError(f"unknown calibration method {config.method!r}; choose one of {', '.join(CALIBRATION_METHODS)}")
    if config.layout not in INT8_LAYOUTS:
        raise DeployKitError(f"unknown INT8 layout {config.layout!r}; choose one of {', '.join(INT8_LAYOUTS)}")
    samples = load_samples(config.calib, preprocess, config.calib_size, "calibration")
    holdout = load_samples(config.holdout, preprocess, HOLDOUT_LIMIT, "held-out")
    if config.val is None:
        return QuantizationData(samples, holdout)
    images, labels, mapping = load_labelled_folder(config.val, preprocess, num_classes, VAL_LIMIT)
    return QuantizationData(samples, holdout, images, labels, mapping.describe())
