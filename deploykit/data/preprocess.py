"""The one preprocessing pipeline (resize, center crop, normalize) every backend is fed with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from deploykit.models.pretrained import PublishedWeights
    from deploykit.models.registry import ModelSpec

# torchvision's evaluation recipe crops 224 out of 256: the crop covers 87.5% of the resized image.
CROP_FRACTION = 0.875
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST}


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize``, center-crop ``size`` x ``size``, scale to [0, 1], normalize."""

    size: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    @classmethod
    def for_model(cls, spec: ModelSpec, input_size: int | None = None, published: PublishedWeights | None = None) -> "Preprocess":
        """The model's evaluation preprocessing; with published weights at their crop size, exactly their recipe."""
        size = input_size or spec.input_size
        if published is not None and size == published.crop:
            return cls(size=size, resize=published.resize, mean=published.mean, std=published.std,
                       interpolation=published.interpolation)
        # Tiny (CIFAR-scale) inputs are used whole, as CIFAR evaluation does.
        resize = size if size <= 64 else int(round(size / CROP_FRACTION))
        return cls(size=size, resize=resize, mean=spec.mean, std=spec.std)

    def __call__(self, image: Image.Image) -> np.ndarray:
        """A PIL image to a float32 (3, size, size) array (16-bit and float images scaled to 8 bits, not clipped)."""
        image = _to_rgb(image)
        width, height = image.size
        scale = self.resize / min(width, height)
        image = image.resize((max(self.size, round(width * scale)), max(self.size, round(height * scale))), RESAMPLING[self.interpolation])
        width, height = image.size
        left, top = (width - self.size) // 2, (height - self.size) // 2
        image = image.crop((left, top, left + self.size, top + self.size))
        array = np.asarray(image, dtype=np.float32) / 255.0
        array = (array - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(array.transpose(2, 0, 1))


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB. PIL's convert("RGB") clips 16-bit and 32-bit grey images to white; they are rescaled instead."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        image = Image.fromarray(np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return image.convert("RGB")
