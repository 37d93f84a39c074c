"""Images and preprocessing shared by every backend."""

from deploykit.data.images import DEFAULT_CALIBRATION_DIR, DEFAULT_HOLDOUT_DIR, evenly_spaced, find_images, load_images
from deploykit.data.labelled import ClassMapping, LabelledImages, class_mapping, imagenet_synsets, load_labelled_folder
from deploykit.data.preprocess import Preprocess

__all__ = [
    "DEFAULT_CALIBRATION_DIR",
    "DEFAULT_HOLDOUT_DIR",
    "Preprocess",
    "evenly_spaced",
    "find_images",
    "load_images",
    "load_labelled_folder",
    "ClassMapping",
    "LabelledImages",
    "class_mapping",
    "imagenet_synsets",
]
