"""Published weights by tag: fetched over HTTP (a loopback server with the real file), hash-checked, cached."""

import functools
import http.server
import threading
from contextlib import contextmanager

import pytest
import torch
from click.testing import CliRunner

from deploykit import DeployKitError, get_model
from deploykit.cli import cli
from deploykit.data import Preprocess
from deploykit.models import get_spec, list_models
from deploykit.models.pretrained import BASE_URL_ENV, fetch_weights, find_weights, is_weights_tag, published_weights

CHECKPOINT = "mobilenet_v2-b0353104.pth"


@contextmanager
def serving(folder):
    """An HTTP server on 127.0.0.1 serving ``folder``; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home / "hub" / "checkpoints"


def test_download_checks_the_hash_caches_and_loads(real_checkpoint, torch_home, tmp_path, monkeypatch):
    served = tmp_path / "mirror"
    served.mkdir()
    (served / CHECKPOINT).write_bytes(real_checkpoint(CHECKPOINT).read_bytes())
    with serving(served) as url:
        monkeypatch.setenv(BASE_URL_ENV, url)
        model = get_model("mobilenet_v2", weights="IMAGENET1K_V1")
    assert (torch_home / CHECKPOINT).read_bytes() == (served / CHECKPOINT).read_bytes()
    assert [p.name for p in torch_home.iterdir()] == [CHECKPOINT]  # no temporary files left behind
    expected = torch.load(served / CHECKPOINT, weights_only=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())
    # the server is gone: the cached file is used without the network
    again = get_model("mobilenet_v2", weights="imagenet1k_v1")
    assert torch.equal(again.features[0][0].weight, model.features[0][0].weight)


def test_corrupt_download_is_refused_and_not_cached(real_checkpoint, torch_home, tmp_path, monkeypatch):
    served = tmp_path / "mirror"
    served.mkdir()
    data = bytearray(real_checkpoint(CHECKPOINT).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (served / CHECKPOINT).write_bytes(bytes(data))
    with serving(served) as url:
        monkeypatch.setenv(BASE_URL_ENV, url)
        with pytest.raises(DeployKitError, match="sha256 starts with .*not b0353104.*not kept"):
            fetch_weights(find_weights("mobilenet_v2", "IMAGENET1K_V1"), progress=False)
    assert not torch_home.exists() or not any(torch_home.iterdir())


def test_offline_error_names_the_url_and_the_place_for_the_file(torch_home, monkeypatch):
    with serving(torch_home.parent.parent) as url:
        pass  # a port that was just closed: nothing listens there
    monkeypatch.setenv(BASE_URL_ENV, url + "/models")
    result = CliRunner().invoke(cli, ["export", "mobilenet_v2", "--weights", "IMAGENET1K_V2", "--out", str(torch_home.parent)])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert f"{url}/models/mobilenet_v2-7ebf99e0.pth" in message and str(torch_home / "mobilenet_v2-7ebf99e0.pth") in message
    assert "Traceback" not in result.output


def test_tags_and_their_errors():
    assert is_weights_tag("IMAGENET1K_V1") and is_weights_tag("DEFAULT") and is_weights_tag("imagenet")
    assert not is_weights_tag("weights.pth") and not is_weights_tag("runs/IMAGENET1K_V1")
    assert find_weights("mobilenet_v2", "DEFAULT").tag == find_weights("mobilenet_v2", "imagenet").tag == "IMAGENET1K_V2"
    with pytest.raises(DeployKitError, match="published: IMAGENET1K_V1, IMAGENET1K_V2"):
        find_weights("mobilenet_v2", "IMAGENET1K_V9")
    with pytest.raises(DeployKitError, match="mobilenet_v1 has no published pretrained weights; pass --weights PATH"):
        get_model("mobilenet_v1", weights="DEFAULT")


def test_every_published_entry_is_a_registered_model_with_a_hash_in_its_file_name():
    names = set(list_models())
    rows = [w for name in names for w in published_weights(name)]
    assert len(rows) >= 36 and all(w.sha256_prefix for w in rows)
    assert sum(w.default for w in rows) == len({w.model for w in rows})  # one DEFAULT per model
    assert find_weights("resnet50", "IMAGENET1K_V1").top1 == 76.13 and find_weights("googlenet", "DEFAULT").build_kwargs


def test_published_recipe_sets_the_preprocessing():
    spec = get_spec("resnet50")
    v2 = Preprocess.for_model(spec, 224, find_weights("resnet50", "IMAGENET1K_V2"))
    assert (v2.resize, v2.size, v2.interpolation) == (232, 224, "bilinear")
    b0 = Preprocess.for_model(get_spec("efficientnet_b0"), 224, find_weights("efficientnet_b0", "DEFAULT"))
    assert b0.interpolation == "bicubic"
    assert Preprocess.for_model(spec, 160, find_weights("resnet50", "IMAGENET1K_V2")).resize == 183  # other size: generic recipe


def test_info_lists_published_weights_or_says_there_are_none():
    text = " ".join(CliRunner().invoke(cli, ["info", "mobilenet_v2"]).output.split())
    assert "IMAGENET1K_V1" in text and "71.88" in text and "IMAGENET1K_V2 (DEFAULT)" in text and "72.15" in text
    text = " ".join(CliRunner().invoke(cli, ["info", "se_resnet50"]).output.split())
    assert "no published pretrained weights for se_resnet50: pass --weights PATH" in text
