import numpy as np
import pytest
from PIL import Image

from deploykit import DeployKitError
from deploykit.data import DEFAULT_CALIBRATION_DIR, DEFAULT_HOLDOUT_DIR, Preprocess, find_images, load_images
from deploykit.models import get_spec


def test_preprocess_resizes_crops_and_normalizes():
    pre = Preprocess(size=224, resize=256, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    image = Image.new("RGB", (640, 480), (255, 128, 0))
    array = pre(image)
    assert array.shape == (3, 224, 224) and array.dtype == np.float32
    np.testing.assert_allclose(array[:, 100, 100], [(1 - 0.5) / 0.25, (128 / 255 - 0.5) / 0.5, (0 - 0.5) / 1.0], atol=1e-6)


def test_preprocess_for_model_follows_the_spec():
    assert Preprocess.for_model(get_spec("resnet50")).resize == 256
    assert Preprocess.for_model(get_spec("inception_v3")).resize == 342
    cifar = Preprocess.for_model(get_spec("cifar_resnet20"))
    assert (cifar.size, cifar.resize, cifar.mean) == (32, 32, get_spec("cifar_resnet20").mean)


def test_center_crop_keeps_the_middle():
    image = Image.new("RGB", (300, 100), (0, 0, 0))
    image.paste((255, 255, 255), (140, 0, 160, 100))  # a white stripe in the middle
    array = Preprocess(size=64, resize=64, mean=(0, 0, 0), std=(1, 1, 1))(image)
    assert array[0, :, 32].min() > 0.9 and array[0, :, 0].max() < 0.1


def test_shipped_calibration_sets():
    assert len(find_images(DEFAULT_CALIBRATION_DIR)) >= 64
    holdout = find_images(DEFAULT_HOLDOUT_DIR)
    assert len(holdout) >= 32
    batch = load_images(holdout[:4], Preprocess.for_model(get_spec("resnet18")))
    assert batch.shape == (4, 3, 224, 224) and np.isfinite(batch).all() and batch.std() > 0.1


def test_class_subfolders_are_searched(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (40, 40)).save(tmp_path / cls / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.parent.name for p in find_images(tmp_path)] == ["cat", "dog"]


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(DeployKitError, match="does not exist"):
        find_images(tmp_path / "nope")
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(DeployKitError, match="no images"):
        find_images(tmp_path)


def test_unreadable_image_is_named(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DeployKitError, match="cannot read image .*broken.jpg"):
        load_images([bad], Preprocess(32, 32, (0, 0, 0), (1, 1, 1)))
