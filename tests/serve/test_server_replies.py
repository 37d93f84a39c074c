"""`bench --server` against a fake Triton on 127.0.0.1 that answers what a damaged or foreign server could: every reply
is checked before use, and each ends in one `Error:` line naming what is wrong, never a traceback or a runaway client."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.cli import run_cli

PREPROCESS = {"deploykit.size": "16", "deploykit.resize": "18", "deploykit.mean": "0.5,0.5,0.5", "deploykit.std": "0.25,0.25,0.25"}


def config(**changes) -> dict:
    base = {
        "name": "m",
        "max_batch_size": 8,
        "input": [{"name": "input", "data_type": "TYPE_FP32", "dims": [3, 16, 16]}],
        "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": [10]}],
        "parameters": {key: {"string_value": value} for key, value in PREPROCESS.items()},
    }
    return {**base, **changes}


def with_parameter(key: str, value: str) -> dict:
    changed = config()
    changed["parameters"] = {**changed["parameters"], key: {"string_value": value}}
    return changed


REPLIES = {
    "an empty config": ({}, "config has input"),
    "two inputs": (config(input=[{"name": "a", "data_type": "TYPE_FP32"}, {"name": "b", "data_type": "TYPE_FP32"}]), "config has input"),
    "a list": ([1, 2], "config is '[1, 2]', not a config"),
    "an unknown input type": (config(input=[{"name": "input", "data_type": "TYPE_STRING"}]), "input.data_type 'TYPE_STRING'"),
    "a negative size": (with_parameter("deploykit.size", "-3"), "deploykit.size -3 is not from 1 to 4096"),
    "a huge size": (with_parameter("deploykit.size", "100000"), "deploykit.size 100000 is not from 1 to 4096"),
    "a zero std": (with_parameter("deploykit.std", "0,0,0"), "deploykit.std '0,0,0' is not above 0"),
    "a NaN mean": (with_parameter("deploykit.mean", "nan,0,0"), "is not three finite numbers"),
    "a max batch in words": (config(max_batch_size="many"), "max_batch_size 'many'"),
    "no statistics": ("no statistics", "statistics the server returned for m are not Triton's"),
}


class FakeTriton(BaseHTTPRequestHandler):
    reply: object = None

    def do_GET(self) -> None:
        if self.path.endswith("/ready"):
            return self._send(200, b"")
        if self.path.endswith("/config"):
            return self._send(200, json.dumps(config() if self.reply == "no statistics" else self.reply).encode())
        if self.path.endswith("/stats"):
            return self._send(200, json.dumps({"model_stats": []}).encode())
        self._send(404, b"{}")

    def do_POST(self) -> None:
        self._send(400, json.dumps({"error": "fake"}).encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_triton():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeTriton)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("reply", REPLIES)
def test_what_a_server_sends_is_checked_before_use(reply, fake_triton):
    FakeTriton.reply, expected = REPLIES[reply]
    url = f"http://127.0.0.1:{fake_triton.server_address[1]}"
    result, text = run_cli("bench", "--server", url, "--model", "m", "--concurrency", "1", "--duration", 0.2)
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert text.startswith("Error: ") and expected in text, text


def test_a_batch_above_the_servers_max_is_refused_before_any_request(fake_triton):
    FakeTriton.reply = config()
    url = f"http://127.0.0.1:{fake_triton.server_address[1]}"
    result, text = run_cli("bench", "--server", url, "--model", "m", "--batch", 64, "--duration", 0.2)
    assert result.exit_code == 2 and text == (f"Error: --batch 64 is above m's max_batch_size 8 on {url}; use --batch 8 or less"), text
