"""Published pretrained weights: torchvision's ImageNet checkpoints by tag, fetched once into torch's cache.

The table (``pretrained.json``: URL, file name, evaluation transforms, published accuracy) was read
from torchvision's weight enums once, by ``tests/models/tools/read_torchvision_weights.py``; there is
no torchvision dependency at run time. Files go where torchvision puts them,
``$TORCH_HOME/hub/checkpoints/<file name>``, so a checkpoint a user already has is reused offline.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from deploykit.errors import DeployKitError, first_line
from deploykit.io import sha256_file
from deploykit.progress import live, stage

TABLE_PATH = Path(__file__).with_name("pretrained.json")
BASE_URL_ENV = "DEPLOYKIT_WEIGHTS_URL"  # replaces torchvision's base URL: mirrors, air-gapped sites
DEFAULT_TAGS = {"DEFAULT", "IMAGENET"}  # both mean torchvision's default weights for the model
_TAG = re.compile(r"^[A-Z0-9]+(_[A-Z0-9]+)*_V\d+$")
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.")  # torchvision's file names carry a sha256 prefix
_CHUNK = 1 << 20
DOWNLOAD_TIMEOUT_S = 30  # per read
MIN_RATE = 16_000  # bytes/s averaged over the download, checked once MIN_RATE_AFTER_S have passed
MIN_RATE_AFTER_S = 20
PARTIAL_MARK = ".partial-"  # .NAME.partial-XXXX: a download in progress, or one a killed run left
STALE_PARTIAL_S = 600


@dataclass(frozen=True)
class PublishedWeights:
    """One published checkpoint, with the evaluation recipe its accuracy was measured with."""

    model: str
    tag: str
    url: str
    file_name: str
    resize: int
    crop: int
    interpolation: str
    top1: float
    top5: float
    default: bool
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    build_kwargs: dict = field(default_factory=dict)  # how torchvision builds the model for them (GoogLeNet: transform_input)
    source: str = "torchvision"

    @property
    def sha256_prefix(self) -> str | None:
        match = _HASH_IN_NAME.search(self.file_name)
        return match.group(1) if match else None


@cache
def _table() -> dict[str, list[PublishedWeights]]:
    rows = json.loads(TABLE_PATH.read_text())["weights"]
    table: dict[str, list[PublishedWeights]] = {}
    for row in rows:
        row = {**row, "mean": tuple(row["mean"]), "std": tuple(row["std"])}
        table.setdefault(row["model"], []).append(PublishedWeights(**row))
    return table


def published_weights(model: str) -> list[PublishedWeights]:
    """Every published checkpoint of a registered model (empty when there is none)."""
    return _table().get(model, [])


def is_weights_tag(text: str | os.PathLike | None) -> bool:
    """Whether ``--weights`` names published weights (IMAGENET1K_V1, DEFAULT, imagenet) rather than a file."""
    if text is None or isinstance(text, os.PathLike) or os.sep in text or Path(text).exists():
        return False
    return text.upper() in DEFAULT_TAGS or bool(_TAG.match(text.upper()))


def find_weights(model: str, tag: str) -> PublishedWeights:
    """The published weights of ``model`` for ``tag``; a one-line error listing what exists otherwise."""
    available = published_weights(model)
    if not available:
        raise DeployKitError(f"{model} has no published pretrained weights; pass --weights PATH to a checkpoint of your own")
    wanted = tag.upper()
    for weights in available:
        if weights.tag == wanted or (wanted in DEFAULT_TAGS and weights.default):
            return weights
    tags = ", ".join(w.tag for w in available)
    raise DeployKitError(f"{model} has no weights {tag!r}; published: {tags} (or DEFAULT)")


def checkpoint_dir() -> Path:
    """Where torch.hub and torchvision keep downloaded checkpoints."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


_digests: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256: one process hashes a big file once


def file_digest(path: Path) -> str:
    """The sha256 of a file, computed once per process for each (path, size, mtime)."""
    status = path.stat()
    key = (str(path.resolve()), status.st_size, status.st_mtime_ns)
    if key not in _digests:
        _digests[key] = sha256_file(path)
    return _digests[key]


def download_url(weights: PublishedWeights) -> str:
    base = os.environ.get(BASE_URL_ENV)
    return f"{base.rstrip('/')}/{weights.file_name}" if base else weights.url


def fetch_weights(weights: PublishedWeights, progress: bool = True) -> Path:
    """The local checkpoint file: reused when present and still the published file (its sha256 checked at every use),
    otherwise downloaded, hash-checked and written atomically."""
    path = checkpoint_dir() / weights.file_name
    if path.is_file():
        digest = file_digest(path)
        expected = weights.sha256_prefix
        if expected and not digest.startswith(expected):
            raise DeployKitError(
                f"the cached checkpoint {path} is not the published {weights.file_name}: its sha256 starts with "
                f"{digest[: len(expected)]}, not {expected} as its name says (changed or damaged since it was "
                "downloaded); delete it, and the next run downloads it again"
            )
        return path
    url = download_url(weights)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(path)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{weights.file_name}{PARTIAL_MARK}")
        with os.fdopen(handle, "wb") as out:
            # A bar of its own on stderr (stdout is the caller's) when deploykit is used as a library; joins a command's display otherwise.
            with live(sys.stderr):
                digest = _download(url, out, weights.file_name, progress)
        expected = weights.sha256_prefix
        if expected and not digest.startswith(expected):
            raise DeployKitError(
                f"{url} sent a file whose sha256 starts with {digest[: len(expected)]}, not {expected} as its name "
                f"says: corrupt or not the published checkpoint, so it was not kept; retry, or place the "
                f"right file at {path}"
            )
        os.replace(temporary, path)
    except (http.client.HTTPException, OSError, ValueError) as exc:  # URLError, timeouts and resets are OSErrors too
        reason = getattr(exc, "reason", None) or first_line(exc) or type(exc).__name__
        if isinstance(exc, OSError) and not isinstance(exc, (urllib.error.URLError, TimeoutError, ConnectionError)):
            raise DeployKitError(f"cannot write the downloaded weights into {path.parent} ({reason}); set TORCH_HOME to a writable folder") from exc
        raise DeployKitError(f"cannot download {url} ({type(exc).__name__}: {reason}); download {weights.url} elsewhere and place it at {path}") from exc
    finally:
        if temporary and os.path.exists(temporary):
            os.unlink(temporary)
    return path


def _remove_stale_partials(path: Path) -> None:
    """Partial downloads of this file that a killed run left behind (untouched for STALE_PARTIAL_S: no download is writing them)."""
    for partial in path.parent.glob(f".{path.name}{PARTIAL_MARK}*"):
        with contextlib.suppress(OSError):
            if time.time() - partial.stat().st_mtime > STALE_PARTIAL_S:
                partial.unlink()


def _download(url: str, out, label: str, progress: bool) -> str:
    """Stream ``url`` into ``out`` with a progress bar (one of its own when no command shows one); the sha256 of what arrived.

    Each read waits DOWNLOAD_TIMEOUT_S at most, and a download that averages under MIN_RATE bytes/s once MIN_RATE_AFTER_S
    have passed is abandoned: a server that trickles a byte at a time cannot hold the command forever."""
    digest = hashlib.sha256()
    started, received = time.monotonic(), 0
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with contextlib.ExitStack() as stack:
            advance = stack.enter_context(stage(f"downloading {label}", total=total, unit="bytes")) if progress else (lambda n: None)
            while chunk := response.read1(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                advance(len(chunk))
                received += len(chunk)
                elapsed = time.monotonic() - started
                if elapsed > MIN_RATE_AFTER_S and received / elapsed < MIN_RATE:
                    raise TimeoutError(f"the server sent {received:,} bytes in {elapsed:.0f} s, under the minimum of {MIN_RATE // 1000} kB/s")
    return digest.hexdigest()
