"""`deploykit serve` and `bench --server` against the real tritonserver nvidia-pytriton bundles, on free loopback ports,
with real requests from tritonclient: the logits are onnxruntime's, concurrent clients are batched, and what goes wrong
(a missing extra, a port in use, a model that fails to load) ends in one line."""

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as http

from deploykit.recipes.serve import serving
from deploykit.serve.server import Ports
from deploykit.runtime import OrtRunner
from tests.cli import run_cli

pytestmark = pytest.mark.xdist_group("triton-server")


@pytest.fixture(scope="module")
def repo(trained_digits, tmp_path_factory):
    """The digits-trained cifar_resnet20 exported with INT8 straight into a repository, for the CPU."""
    out = tmp_path_factory.mktemp("served")
    result, _ = run_cli(
        "export",
        f"cifar_resnet20:{trained_digits.weights}",
        "--input-size",
        16,
        16,
        "--dynamic-batch",
        "--int8",
        "--calib",
        trained_digits.calib,
        "--no-timing",
        "--out",
        out / "export",
        "--triton",
        out / "repo",
        "--triton-device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    return out / "repo", out / "export" / "cifar_resnet20"


@pytest.fixture(scope="module")
def server(repo):
    with serving(repo[0], Ports.free()) as served:
        yield served


def infer(url: str, model: str, batch: np.ndarray) -> np.ndarray:
    client = http.InferenceServerClient(url.removeprefix("http://"))
    tensor = http.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    return client.infer(model, [tensor]).as_numpy("logits")


def onnxruntime_logits(path, batch: np.ndarray) -> np.ndarray:
    with OrtRunner(path) as runner:
        return runner.infer(batch)


def test_logits_are_onnxruntimes_at_batch_1_and_5(server, repo, trained_digits):
    images = trained_digits.test_images[:5]
    assert server.models == ["cifar_resnet20", "cifar_resnet20_int8"]
    for model, file_name in (("cifar_resnet20", "model.onnx"), ("cifar_resnet20_int8", "model.int8.onnx")):
        expected = onnxruntime_logits(repo[1] / file_name, images)
        for batch in (images[:1], images):
            served = infer(server.url, model, batch)
            assert served.dtype == np.float32 and served.shape == (len(batch), 10)
            np.testing.assert_array_equal(served, expected[: len(batch)])


def test_concurrent_clients_are_batched_and_each_gets_its_own_logits(server, repo, trained_digits):
    images = trained_digits.test_images[:48]
    expected = onnxruntime_logits(repo[1] / "model.int8.onnx", images)
    stats = http.InferenceServerClient(server.url.removeprefix("http://"))
    before = stats.get_inference_statistics("cifar_resnet20_int8")["model_stats"][0]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        served = list(pool.map(lambda i: infer(server.url, "cifar_resnet20_int8", images[i : i + 1]), range(len(images))))
    after = stats.get_inference_statistics("cifar_resnet20_int8")["model_stats"][0]
    np.testing.assert_allclose(np.concatenate(served), expected, rtol=0, atol=1e-5)  # a merged batch: the same file, other rows
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert inferences == 48 and executions < inferences  # dynamic batching merged requests


def test_bench_server_sweeps_concurrency_and_configurations_and_report_plots_it(server, tmp_path):
    result, text = run_cli(
        "bench", "--server", server.url, "--model", "cifar_resnet20", "--concurrency", "1,4", "--duration", 1, "--queue-delay", "off,2000", "--json", tmp_path / "load.json"
    )
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "load.json").read_text())["results"]
    assert [(r["configuration"], r["concurrency"]) for r in rows] == [("no dynamic batching", 1), ("no dynamic batching", 4), ("queue delay 2000 us", 1), ("queue delay 2000 us", 4)]
    for row in rows:
        assert row["errors"] == 0 and row["throughput"] > 0 and 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["queue_ms"] >= 0 and row["compute_ms"] > 0
    assert rows[1]["images_per_execution"] == 1.0 and rows[3]["images_per_execution"] > 1.0  # only the batcher merges
    config = http.InferenceServerClient(server.url.removeprefix("http://")).get_model_config("cifar_resnet20")
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 100  # the repository's config again
    result, _ = run_cli(
        "bench", "--server", server.url, "--model", "cifar_resnet20", "--concurrency", "1,2,4", "--duration", 0.5, "--max-latency", 0.001, "--json", tmp_path / "capped.json"
    )
    assert result.exit_code == 0 and len(json.loads((tmp_path / "capped.json").read_text())["results"]) == 1
    assert "as served: 2, 4 clients not measured (p99" in result.output and "passed --max-latency 0.001 ms" in result.output
    result, _ = run_cli("report", tmp_path / "load.json", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    assert "triton" in (tmp_path / "report" / "report.md").read_text() and (tmp_path / "report" / "pareto.png").stat().st_size > 0


def as_a_user_runs_it(tmp_path) -> dict[str, str]:
    """The environment of a systemd unit or a cron job: the venv not activated (its bin/ off PATH), temp files in tmp_path."""
    venv_bin = os.path.dirname(sys.executable)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and os.path.realpath(p) != os.path.realpath(venv_bin))
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    return {**env, "PATH": path, "TMPDIR": str(tmp_path)}


def start_serve(command: list, repo, ports: Ports, env: dict, cwd) -> subprocess.Popen:
    process = subprocess.Popen(
        [*map(str, command), "serve", str(repo), "--http-port", str(ports.http), "--grpc-port", str(ports.grpc)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )
    line = process.stdout.readline()
    if f"at http://127.0.0.1:{ports.http}" not in line or "Ctrl-C stops it" not in line:
        process.kill()
        raise AssertionError(line + process.stderr.read())
    return process


def processes_using(text: str) -> list[int]:
    """Live processes whose command line mentions ``text`` (tritonserver and its stubs name their working copy)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            pass
    return found


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen()  # a listener still there would refuse this
        except OSError:
            return False
    return True


def test_serve_runs_unactivated_from_another_folder_and_its_server_dies_with_it(repo, tmp_path):
    """bin/deploykit by absolute path, then `python -m deploykit`, with the venv off PATH: both serve onnxruntime's logits.
    The first is SIGKILLed: tritonserver and its stubs die with it, and the next serve removes the copy it left. The second
    stops cleanly on SIGHUP (a closed terminal), leaving no copy and no shared memory."""
    env, elsewhere = as_a_user_runs_it(tmp_path), tmp_path / "elsewhere"
    elsewhere.mkdir()
    images = np.zeros((1, 3, 16, 16), np.float32)
    expected = onnxruntime_logits(repo[1] / "model.onnx", images)
    ports = Ports.free()
    process = start_serve([Path(sys.executable).parent / "deploykit"], repo[0], ports, env, elsewhere)
    try:
        np.testing.assert_array_equal(infer(f"http://127.0.0.1:{ports.http}", "cifar_resnet20", images), expected)
        (left,) = tmp_path.glob("deploykit-serve-*")
        assert processes_using(str(left)) and list(Path("/dev/shm").glob(f"{left.name}_*"))
        process.kill()
        process.wait(10)
        deadline = time.monotonic() + 30
        while (processes_using(str(left)) or not port_is_free(ports.http)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not processes_using(str(left)) and port_is_free(ports.http), "tritonserver outlived the serve that started it"
    finally:
        process.kill()
    assert left.is_dir()  # a SIGKILL runs no clean-up: the next serve does it
    ports = Ports.free()
    process = start_serve([sys.executable, "-m", "deploykit"], repo[0], ports, env, elsewhere)
    try:
        assert not left.exists()
        np.testing.assert_array_equal(infer(f"http://127.0.0.1:{ports.http}", "cifar_resnet20", images), expected)
        (copy,) = tmp_path.glob("deploykit-serve-*")
        process.send_signal(signal.SIGHUP)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0 and stdout.strip() == "stopped" and stderr == ""
    assert not list(tmp_path.glob("deploykit-serve-*")) and not list(Path("/dev/shm").glob(f"{copy.name}_*"))
    assert port_is_free(ports.http) and not processes_using(str(copy))


def test_a_port_in_use_and_a_model_that_fails_to_load_are_one_line(repo, tmp_path):
    ports = Ports.free()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.http))
        taken.listen()
        result, text = run_cli("serve", repo[0], "--http-port", ports.http, "--grpc-port", ports.grpc)
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert text == f"Error: port {ports.http} on 127.0.0.1 is in use (Address already in use); choose another with --http-port"
    broken = tmp_path / "repo"
    broken.mkdir()
    for name in ("cifar_resnet20",):
        (broken / name / "1").mkdir(parents=True)
        for entry in ("config.pbtxt", ".deploykit.json", "1/model.onnx"):
            (broken / name / entry).write_bytes((repo[0] / name / entry).read_bytes())
    config = broken / "cifar_resnet20" / "config.pbtxt"
    config.write_text(config.read_text().replace("dims: 16\n  dims: 16", "dims: 32\n  dims: 32", 1))  # edited by hand
    started = time.monotonic()
    result, text = run_cli("serve", broken, "--http-port", ports.http, "--grpc-port", ports.grpc)
    assert result.exit_code == 2 and result.output.count("\n") == 1 and time.monotonic() - started < 60
    assert text == (
        "Error: tritonserver stopped while starting: Triton could not load model cifar_resnet20: ValueError: config.pbtxt "
        "declares input dims [3, 32, 32] but model.onnx takes [3, 16, 16]; write the repository again with `deploykit triton`"
    )


def test_without_the_serve_extra_each_command_says_how_to_install_it(repo, tmp_path):
    """The packages are hidden from a real process by an import hook, as if they were not installed."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('pytriton', 'tritonclient'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Hide())\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for args in (["serve", repo[0]], ["triton", tmp_path / "new", repo[1]], ["bench", "--server", "http://127.0.0.1:9", "--model", "m"]):
        process = subprocess.run([sys.executable, "-m", "deploykit", *map(str, args)], capture_output=True, text=True, env=env, timeout=120)
        assert process.returncode == 2 and process.stderr.count("\n") == 1, process.stderr
        assert "pip install 'deploykit[serve]'" in process.stderr, process.stderr


def test_a_stopped_sweep_restores_the_config_and_a_killed_server_is_one_line(repo, tmp_path):
    """bench --server SIGTERMed while a 5000 us queue-delay override is loaded puts the repository's config back; then the
    server is SIGKILLed mid-sweep and bench ends in one line."""
    with serving(repo[0], Ports.free()) as served:
        client = http.InferenceServerClient(served.url.removeprefix("http://"))
        delay = lambda: client.get_model_config("cifar_resnet20")["dynamic_batching"]["max_queue_delay_microseconds"]  # noqa: E731
        command = [sys.executable, "-m", "deploykit", "bench", "--server", served.url, "--model", "cifar_resnet20", "--concurrency", "1", "--duration", "30"]
        bench = subprocess.Popen([*command, "--queue-delay", "5000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while delay() != 5000 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert delay() == 5000
            time.sleep(1.5)  # within the level's 30 s window, not while its event loop is being built
            bench.send_signal(signal.SIGTERM)
            _, stderr = bench.communicate(timeout=120)
        finally:
            bench.kill()
        assert bench.returncode == 143 and stderr.endswith("Error: stopped by SIGTERM; nothing half-written was published\n"), stderr
        assert delay() == 100  # the repository's own config again
        bench = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(3)
            os.killpg(served.server.process.pid, signal.SIGKILL)
            _, stderr = bench.communicate(timeout=120)
        finally:
            bench.kill()
        assert bench.returncode == 2 and stderr.count("\n") == 1 and stderr.startswith("Error: "), stderr


def test_a_start_up_cut_short_leaves_no_shared_memory_and_a_killed_server_is_named(repo, tmp_path, tmp_path_factory):
    """--start-timeout 1 stops the server while its models load: every Triton shared-memory region left belongs to a
    working copy that still exists (a live server, or one a test killed on purpose: those run with TMPDIR in their own
    tmp_path). Then tritonserver is SIGKILLed under a running serve: one line says so."""
    result, text = run_cli("serve", repo[0], "--start-timeout", 1, "--http-port", (ports := Ports.free()).http, "--grpc-port", ports.grpc)
    assert result.exit_code == 2 and text.startswith("Error: tritonserver was not ready within 1 s"), text
    assert "killed by SIGINT" not in text  # the stop deploykit sent is not the reason
    copies = [folder.name for folder in (*Path(tempfile.gettempdir()).glob("deploykit-serve-*"), *tmp_path_factory.getbasetemp().parent.glob("*/*/deploykit-serve-*"))]
    for region in Path("/dev/shm").glob("deploykit-serve-*"):
        assert any(region.name.startswith(f"{name}_") for name in copies), f"{region} outlived the serve that made it"
    env, ports = as_a_user_runs_it(tmp_path), Ports.free()
    process = start_serve([sys.executable, "-m", "deploykit"], repo[0], ports, env, tmp_path)
    try:
        (copy,) = tmp_path.glob("deploykit-serve-*")
        server = next(pid for pid in processes_using(str(copy)) if "bin/tritonserver" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"))
        os.kill(server, signal.SIGKILL)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 2 and stderr == "Error: tritonserver stopped: it was killed by SIGKILL\n", stderr
