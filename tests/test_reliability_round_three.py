"""Round three's attacks on the training and serving surfaces that need no server: folders whose classes a model may or
may not have, hints with brackets and spaces, and a serve that cannot start. One `Error:` line or the right behaviour."""

import json
import os
import socket


from tests.cli import run_cli

MOBILENET = "mobilenet_v2-b0353104.pth"


def photo_folders(root, imagenet_sample, names, per_class):
    """Class folders of real photos (links into ../shared/imagenet-sample), ``per_class`` each."""
    photos = sorted(p for p in imagenet_sample.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    for index, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for photo in photos[index * per_class : (index + 1) * per_class]:
            os.symlink(photo, root / name / photo.name)
    return root


def test_a_random_student_distils_onto_an_imagenet_teachers_synsets(real_checkpoint, imagenet_sample, tmp_path):
    """20 synset folders: the student is built with the teacher's 1000 classes, not refused for having 20."""
    synsets = sorted(p.name for p in imagenet_sample.iterdir() if p.is_dir())[:20]
    data = photo_folders(tmp_path / "data", imagenet_sample, synsets, 5)
    result, text = run_cli(
        "distill", "--teacher", f"mobilenet_v2:{real_checkpoint(MOBILENET)}", "--student", "mobilenet_v2", "--data", data, "--epochs", 1, "--input-size", 32, "--out", tmp_path / "out"
    )
    assert result.exit_code == 0, text
    assert "classes by ImageNet synset" in text
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["model"]["num_classes"] == 1000


def test_folders_that_are_not_the_models_classes_get_a_new_head_and_say_so(real_checkpoint, imagenet_sample, tmp_path):
    data = photo_folders(tmp_path / "data", imagenet_sample, ["cat", "dog", "zebra"], 10)
    result, text = run_cli("train", f"mobilenet_v2:{real_checkpoint(MOBILENET)}", "--data", data, "--epochs", 1, "--input-size", 32, "--out", tmp_path / "out")
    assert result.exit_code == 0, text
    assert "classifier 1000 -> 3 classes: cat, dog, zebra" in text
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["model"]["classes"] == ["cat", "dog", "zebra"]


def test_hints_keep_their_brackets_and_quote_their_spaces(tmp_path):
    repo = tmp_path / "my repo[v2]"
    result, text = run_cli("export", "cifar_resnet20", "--input-size", 16, 16, "--dynamic-batch", "--no-timing", "--out", tmp_path / "out", "--triton", repo, "--triton-device", "cpu")
    assert result.exit_code == 0, text
    assert f"serve it on this CPU: deploykit serve '{repo}'" in text, text


def test_one_port_for_both_protocols_is_refused_before_the_server_starts(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result, text = run_cli("serve", tmp_path / "missing", "--http-port", port, "--grpc-port", port)
    assert result.exit_code == 2 and text == f"Error: --http-port and --grpc-port are both {port}; give them different ports", text


def test_a_mac_target_above_the_models_is_refused_before_anything_is_pruned(tmp_path):
    result, text = run_cli("prune", "cifar_resnet20", "--target-macs", "1e12", "--input-size", 16, "--no-timing", "--out", tmp_path)
    assert result.exit_code == 2 and text.startswith("Error: --target-macs 1e+12 G is not below the model's"), result.output
    assert not list(tmp_path.iterdir())
