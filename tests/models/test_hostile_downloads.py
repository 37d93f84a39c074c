"""Issue 22, cause 4: a hostile or broken server, a bad URL, a read-only cache and a killed download each end in one
`Error:` line (exit code 2), through `python -m deploykit` in a subprocess against a real loopback server."""

import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.mounts import tmpfs

NAME = "mobilenet_v2-b0353104.pth"
HEADER_END = b"\r\n\r\n"


@contextmanager
def scripted_server(reply):
    """A TCP server on 127.0.0.1 that answers every request with ``reply(connection)``; yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                request = b""
                while HEADER_END not in request:
                    data = connection.recv(4096)
                    if not data:
                        break
                    request += data
                try:
                    reply(connection, stop)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()


def sends(raw: bytes):
    return lambda connection, stop: connection.sendall(raw)


def trickle(connection, stop):
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
    while not stop.wait(1.0):
        connection.sendall(b"x")


REPLIES = {
    "bad chunk size": sends(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
    "bad status line": sends(b"HTTP/1.1 OK-ish\r\n\r\nbody"),
    "HTTP/0.9 reply": sends(b"just some bytes, no status line at all\n"),
    "Content-Length: abc": sends(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nbody"),
    "a 70 KB header": sends(b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\nbody"),
    "150 headers": sends(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\nbody"),
}


def fetch(tmp_path: Path, url: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "deploykit", "export", "mobilenet_v2", "--weights", "IMAGENET1K_V1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TORCH_HOME": str(tmp_path / "home"), "DEPLOYKIT_WEIGHTS_URL": url},
    )
    return proc, time.monotonic() - started


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("case", list(REPLIES))
def test_a_broken_reply_is_one_line_and_leaves_no_file(case, tmp_path):
    with scripted_server(REPLIES[case]) as url:
        proc, _ = fetch(tmp_path, url)
    assert f"{url}/{NAME}" in one_error_line(proc)  # "cannot download ..." or, where the reply parsed, "... sent a file whose sha256"
    checkpoints = tmp_path / "home" / "hub" / "checkpoints"
    assert not checkpoints.exists() or list(checkpoints.iterdir()) == []


def test_a_malformed_url_is_one_line(tmp_path):
    proc, _ = fetch(tmp_path, "http://[::1")
    assert "cannot download http://[::1" in one_error_line(proc)


def test_a_trickling_server_is_abandoned_with_the_reason(tmp_path):
    with scripted_server(trickle) as url:
        proc, seconds = fetch(tmp_path, url)
    line = one_error_line(proc)
    assert "under the minimum of 16 kB/s" in line and seconds < 60, (line, seconds)


def test_a_read_only_cache_is_one_line(tmp_path):
    with tmpfs(tmp_path / "home", "size=1m,ro"):
        proc, _ = fetch(tmp_path, "http://127.0.0.1:9")
    assert "set TORCH_HOME to a writable folder" in one_error_line(proc)


def test_a_killed_downloads_partial_file_is_cleaned_by_the_next_run(real_checkpoint, tmp_path):
    from tests.models.test_pretrained import serving

    checkpoints = tmp_path / "home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    stale = checkpoints / f".{NAME}.partial-k1ll3d"
    stale.write_bytes(b"\0" * 1_000_000)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    served = tmp_path / "mirror"
    served.mkdir()
    (served / NAME).symlink_to(real_checkpoint(NAME))
    with serving(served) as url:
        proc = subprocess.run(
            [sys.executable, "-c", "from deploykit import get_model; get_model('mobilenet_v2:IMAGENET1K_V1')"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "TORCH_HOME": str(tmp_path / "home"), "DEPLOYKIT_WEIGHTS_URL": url},
        )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in checkpoints.iterdir()) == [NAME]
