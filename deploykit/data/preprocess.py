"""The one preprocessing pipeline (resize, center crop, normalize) every backend is fed with.

Built from torchvision.transforms.v2, so a torchvision-published checkpoint is evaluated exactly as
its ``weights.transforms()`` does (resize, crop, interpolation, antialias); training adds the
ImageNet augmentation (random resized crop, horizontal flip).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from deploykit.data.vision import transforms_v2

if TYPE_CHECKING:
    from deploykit.manifest import InputRecord
    from deploykit.models.pretrained import PublishedWeights
    from deploykit.models.registry import ModelSpec

# torchvision's evaluation recipe crops 224 out of 256: the crop covers 87.5% of the resized image.
CROP_FRACTION = 0.875


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize``, center-crop ``size`` x ``size``, scale to [0, 1], normalize."""

    size: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    @classmethod
    def recorded(cls, record: InputRecord) -> Preprocess:
        """The preprocessing an export recorded in its manifest."""
        return cls(record.size, record.resize, tuple(record.mean), tuple(record.std), record.interpolation)

    @classmethod
    def for_model(cls, spec: ModelSpec, input_size: int | None = None, published: PublishedWeights | None = None) -> Preprocess:
        """The model's evaluation preprocessing; with published weights at their crop size, exactly their recipe."""
        size = input_size or spec.input_size
        if published is not None and size == published.crop:
            return cls(size=size, resize=published.resize, mean=published.mean, std=published.std, interpolation=published.interpolation)
        return cls.default(size, spec.mean, spec.std)

    @classmethod
    def default(cls, size: int, mean: tuple[float, float, float], std: tuple[float, float, float]) -> Preprocess:
        """ImageNet's evaluation rule (resize to size / 0.875, then crop); tiny (CIFAR-scale) inputs are used whole."""
        return cls(size=size, resize=size if size <= 64 else int(round(size / CROP_FRACTION)), mean=tuple(mean), std=tuple(std))

    @cached_property
    def transform(self) -> Any:
        """The evaluation transform: a PIL image to a normalized float32 (3, size, size) tensor."""
        v2 = transforms_v2()
        return v2.Compose([to_rgb, v2.Resize(self.resize, self._interpolation(), antialias=True), v2.CenterCrop(self.size), *self._to_normalized_tensor()])

    @cached_property
    def train_transform(self) -> Any:
        """Training augmentation with ImageNet's crop scales (0.08-1): ``training_transform(0.08)``."""
        return self.training_transform(0.08)

    def training_transform(self, min_scale: float) -> Any:
        """Training augmentation: a random resized crop keeping ``min_scale`` to all of the image, a horizontal flip,
        then the same normalization. Small photos (CIFAR's 32x32) train better with a larger ``min_scale`` than 0.08."""
        v2 = transforms_v2()
        return v2.Compose(
            [
                to_rgb,
                v2.RandomResizedCrop(self.size, scale=(min_scale, 1.0), interpolation=self._interpolation(), antialias=True),
                v2.RandomHorizontalFlip(),
                *self._to_normalized_tensor(),
            ]
        )

    def __call__(self, image: Image.Image) -> np.ndarray:
        """A PIL image to a float32 (3, size, size) array (16-bit and float images scaled to 8 bits, not clipped)."""
        return self.transform(image).numpy()

    def _interpolation(self) -> Any:
        from torchvision.transforms import InterpolationMode

        return InterpolationMode(self.interpolation)

    def _to_normalized_tensor(self) -> list:
        v2 = transforms_v2()
        return [v2.PILToTensor(), to_unit_float, v2.Normalize(list(self.mean), list(self.std))]


def to_unit_float(image: Any) -> Any:
    """uint8 to float32 in [0, 1] as torchvision's presets do (a division; v2.ToDtype multiplies by 1/255, an ulp apart)."""
    import torch

    return image.to(torch.float32).div_(255)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB. PIL's convert("RGB") clips 16-bit and 32-bit grey images to white; they are rescaled instead."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        image = Image.fromarray(np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return image.convert("RGB")
