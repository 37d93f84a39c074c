"""Regenerate deploykit's default calibration and held-out image sets from bundled sample photos.

The photos come from scikit-image's, scikit-learn's and matplotlib's installed packages (no download), so the
sets rebuild offline and byte-for-byte: ``pip install scikit-image scikit-learn matplotlib`` then
``python calibration/make_default_set.py``. See README.md in this folder for sources and licenses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# The sets ship inside the package (package data), so an installed wheel has them too.
SETS = Path(__file__).resolve().parents[1] / "deploykit" / "data" / "sets"
CROP = 256
# Source photos are split by photo, so held-out crops never share a scene with calibration crops.
CALIBRATION_SOURCES = ["astronaut", "china", "flower", "rocket", "coins", "hubble_deep_field", "retina"]
# Held-out photos are object-centric photos that an ImageNet classifier recognises with confidence (a cat, an espresso,
# a man at a tripod, a woman in uniform), so the INT8 gate sees what quantization does to a confident top-1.
HOLDOUT_SOURCES = ["chelsea", "coffee", "camera", "grace_hopper"]
CROPS_PER_SOURCE = {"calibration": 10, "holdout": 12}
# Calibration crops cover 35-100% of the shorter side (textures and parts); held-out crops 60-100%, so the object stays in view.
SMALLEST_CROP = {"calibration": 0.35, "holdout": 0.6}


def load_photo(name: str) -> Image.Image:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        array = load_sample_image(f"{name}.jpg")
    elif name == "grace_hopper":
        from matplotlib import cbook

        array = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")))
    else:
        from skimage import data

        array = getattr(data, name)()
    image = Image.fromarray(np.asarray(array))
    return image.convert("RGB")


def random_crops(image: Image.Image, count: int, rng: np.random.Generator, smallest: float = 0.35) -> list[Image.Image]:
    """Square crops covering ``smallest``-100% of the shorter side, some mirrored, resized to CROP x CROP."""
    width, height = image.size
    crops = []
    for _ in range(count):
        side = int(min(width, height) * rng.uniform(smallest, 1.0))
        left = int(rng.integers(0, width - side + 1))
        top = int(rng.integers(0, height - side + 1))
        crop = image.crop((left, top, left + side, top + side)).resize((CROP, CROP), Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crops.append(crop)
    return crops


def main() -> None:
    rng = np.random.default_rng(20261123)
    for folder, sources in (("calibration", CALIBRATION_SOURCES), ("holdout", HOLDOUT_SOURCES)):
        out = SETS / folder
        out.mkdir(exist_ok=True)
        for old in out.glob("*.jpg"):
            old.unlink()
        for source in sources:
            for index, crop in enumerate(random_crops(load_photo(source), CROPS_PER_SOURCE[folder], rng, SMALLEST_CROP[folder])):
                crop.save(out / f"{source}_{index:02d}.jpg", quality=90)
        print(f"{out}: {len(list(out.glob('*.jpg')))} images")


if __name__ == "__main__":
    main()
