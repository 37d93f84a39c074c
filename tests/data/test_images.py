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


@pytest.mark.parametrize(
    "name, tag",
    [
        ("mobilenet_v2", "IMAGENET1K_V1"),  # resize 256, bilinear
        ("resnet50", "IMAGENET1K_V2"),  # resize 232
        ("efficientnet_b0", "IMAGENET1K_V1"),  # bicubic
        ("inception_v3", "IMAGENET1K_V1"),  # 342 / 299
    ],
)
def test_published_weights_are_preprocessed_exactly_as_torchvision_does(name, tag):
    """The eval transform of a published checkpoint is torchvision's own weights.transforms(), bit for bit."""
    from deploykit.data.vision import torchvision
    from deploykit.models.pretrained import find_weights

    enums = {"mobilenet_v2": "MobileNet_V2_Weights", "resnet50": "ResNet50_Weights", "efficientnet_b0": "EfficientNet_B0_Weights", "inception_v3": "Inception_V3_Weights"}
    reference = getattr(torchvision().models, enums[name])[tag].transforms()
    preprocess = Preprocess.for_model(get_spec(name), None, find_weights(name, tag))
    paths = find_images(DEFAULT_HOLDOUT_DIR)[::4]
    expected = np.stack([reference(Image.open(path).convert("RGB")).numpy() for path in paths])
    np.testing.assert_array_equal(load_images(paths, preprocess, workers=2), expected)


def test_training_augmentation_is_random_and_normalized():
    import torch

    preprocess = Preprocess.for_model(get_spec("resnet18"), 64)
    image = Image.open(find_images(DEFAULT_HOLDOUT_DIR)[0])
    torch.manual_seed(0)
    first, second = preprocess.train_transform(image), preprocess.train_transform(image)
    assert first.shape == second.shape == (3, 64, 64) and first.dtype == torch.float32
    assert not torch.equal(first, second)


def test_an_unreadable_image_in_a_worker_process_is_one_line(tmp_path):
    paths = find_images(DEFAULT_HOLDOUT_DIR)[:40]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DeployKitError) as error:
        load_images([*paths, bad], Preprocess(32, 32, (0, 0, 0), (1, 1, 1)), workers=2)
    assert str(error.value).startswith(f"cannot read image {bad}") and "\n" not in str(error.value)


def test_torchvision_imports_beside_the_cpu_build_of_torch():
    """PyPI's torchvision cannot load its C extension beside torch's CPU build; its Python side still imports."""
    import subprocess
    import sys

    code = "from deploykit.data.vision import transforms_v2; print(transforms_v2().RandomResizedCrop.__name__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "RandomResizedCrop", proc.stderr[-2000:]
