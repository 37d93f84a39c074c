import pytest
import torch

from deploykit import DeployKitError
from deploykit.models import get_model


@pytest.fixture()
def resnet18_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = get_model("resnet18", num_classes=10).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return model, path


def _same_outputs(a, b, size=32):
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_checkpoint_round_trip(resnet18_checkpoint):
    model, path = resnet18_checkpoint
    assert _same_outputs(model, get_model("resnet18", num_classes=10, weights=str(path)))


def test_training_checkpoint_wrappers_and_ddp_prefix_are_unwrapped(resnet18_checkpoint, tmp_path):
    model, _ = resnet18_checkpoint
    wrapped = tmp_path / "train.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, wrapped)
    assert _same_outputs(model, get_model("resnet18", num_classes=10, weights=str(wrapped)))


def test_class_count_mismatch_is_explained(resnet18_checkpoint):
    _, path = resnet18_checkpoint
    with pytest.raises(DeployKitError) as info:
        get_model("resnet18", weights=str(path))
    message = str(info.value)
    assert "2 shape mismatch(es)" in message and "fc.weight [10, 512] vs [1000, 512]" in message
    assert "trained on 10 classes" in message and "\n" not in message


def test_wrong_architecture_lists_missing_and_unexpected_keys(resnet18_checkpoint):
    _, path = resnet18_checkpoint
    with pytest.raises(DeployKitError, match=r"does not match resnet34: \d+ missing key\(s\) \(layer1\.2\.conv1\.weight"):
        get_model("resnet34", num_classes=10, weights=str(path))


def test_corrupt_checkpoint_gives_one_line(tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(DeployKitError, match="cannot read checkpoint .*corrupt.pth") as info:
        get_model("resnet18", weights=str(path))
    assert "\n" not in str(info.value)


def test_truncated_checkpoint_gives_one_line(resnet18_checkpoint, tmp_path):
    _, path = resnet18_checkpoint
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DeployKitError, match="cannot read checkpoint"):
        get_model("resnet18", num_classes=10, weights=str(truncated))


def test_pickled_code_is_refused(tmp_path):
    """weights_only=True: a checkpoint holding arbitrary objects is not unpickled."""
    path = tmp_path / "module.pth"
    torch.save(get_model("cifar_resnet20"), path)
    with pytest.raises(DeployKitError, match="holds code or Python objects beyond tensors, so it was not loaded"):
        get_model("cifar_resnet20", weights=str(path))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(DeployKitError, match="does not exist"):
        get_model("resnet18", weights=str(tmp_path / "nope.pth"))


def test_densenet_legacy_keys_are_remapped(tmp_path):
    torch.manual_seed(0)
    model = get_model("densenet121", num_classes=10).eval()
    legacy = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue  # pre-0.4 checkpoints have no batch counters
        for old, new in (("norm1.", "norm.1."), ("norm2.", "norm.2."), ("conv1.", "conv.1."), ("conv2.", "conv.2.")):
            if "denselayer" in key and f".{old}" in key:
                key = key.replace(f".{old}", f".{new}")
        legacy[key] = value
    assert any(".norm.1." in k for k in legacy)
    path = tmp_path / "densenet_legacy.pth"
    torch.save(legacy, path)
    assert _same_outputs(model, get_model("densenet121", num_classes=10, weights=str(path)), size=64)


def test_googlenet_checkpoint_without_aux_heads_gets_a_hint(tmp_path):
    path = tmp_path / "googlenet_noaux.pth"
    torch.save(get_model("googlenet", num_classes=10, aux_logits=False).state_dict(), path)
    with pytest.raises(DeployKitError, match="pass aux_logits=False"):
        get_model("googlenet", num_classes=10, weights=str(path))
    assert get_model("googlenet", num_classes=10, aux_logits=False, weights=str(path)) is not None
