"""Images and preprocessing shared by every backend."""

from deploykit.data.images import DEFAULT_CALIBRATION_DIR, DEFAULT_HOLDOUT_DIR, find_images, load_images
from deploykit.data.preprocess import Preprocess

__all__ = ["DEFAULT_CALIBRATION_DIR", "DEFAULT_HOLDOUT_DIR", "Preprocess", "find_images", "load_images"]
