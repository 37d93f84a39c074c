"""Load on a Triton model, measured: concurrent clients (tritonclient's asyncio HTTP client) over a fixed window, with
the server's own queue and compute times from its statistics endpoint, and server configurations tried in turn by
reloading the model with a config override (Triton's explicit model control, as Model Analyzer does).
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from dataclasses import asdict, dataclass

import numpy as np

from deploykit.choices import NO_BATCHING
from deploykit.errors import DeployKitError, first_line
from deploykit.processes import run_stoppable
from deploykit.serve.client import RemoteModel, tritonclient_http

OVERRIDE_OF = "deploykit.override_of"


@dataclass(frozen=True)
class Configuration:
    """A server configuration to measure: instances and queue delay, None for what the model is served with."""

    instances: int | None = None
    queue_delay_us: int | None = None

    @property
    def label(self) -> str:
        parts = [f"{self.instances} instance{'s' if self.instances != 1 else ''}"] if self.instances else []
        if self.queue_delay_us == NO_BATCHING:
            parts.append("no dynamic batching")
        elif self.queue_delay_us is not None:
            parts.append(f"queue delay {self.queue_delay_us} us")
        return ", ".join(parts) or "as served"

    def applied_to(self, config: dict) -> dict:
        """A model config (Triton's JSON form) with this configuration's changes; an override records the original it was
        made from (``OVERRIDE_OF``), so that a sweep stopped before it could restore is not taken for the original later."""
        changed = copy.deepcopy(config)
        if self != Configuration():
            changed.setdefault("parameters", {})[OVERRIDE_OF] = {"string_value": json.dumps(config)}
        if self.instances:
            groups = changed.get("instance_group") or [{"kind": "KIND_CPU"}]
            before = sum(int(g.get("count", 1)) for g in groups)
            changed["instance_group"] = [{**groups[0], "count": self.instances}]
            threads = changed.get("parameters", {}).get("deploykit.threads")
            if threads:  # deploykit's CPU models share the cores among their instances
                threads["string_value"] = str(max(1, int(threads["string_value"]) * before // self.instances))
        if self.queue_delay_us == NO_BATCHING:
            changed.pop("dynamic_batching", None)
        elif self.queue_delay_us is not None:
            changed.setdefault("dynamic_batching", {})["max_queue_delay_microseconds"] = self.queue_delay_us
        return changed


@dataclass(frozen=True)
class LoadLevel:
    """One configuration at one concurrency: what the clients saw and what the server says it spent."""

    configuration: str
    concurrency: int
    batch: int
    requests: int
    errors: int
    throughput: float  # images per second, completed within the window
    p50_ms: float
    p90_ms: float
    p99_ms: float
    queue_ms: float | None
    compute_ms: float | None
    images_per_execution: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def measure_level(model: RemoteModel, inputs: list[np.ndarray], concurrency: int, configuration: str, warmup_s: float, window_s: float, timeout_s: float) -> LoadLevel:
    """``concurrency`` clients, each sending its next request when the last returns, for ``warmup_s`` then ``window_s``."""
    http = tritonclient_http()
    stats = http.InferenceServerClient(model.address, network_timeout=30)
    before = _statistics(stats, model.name)
    started, latencies, finished, errors, first_error = run_stoppable(_clients(model, inputs, concurrency, warmup_s, window_s, timeout_s))
    after = _statistics(stats, model.name)
    window_start, window_end = started + warmup_s, started + warmup_s + window_s
    done = sum(1 for t in finished if window_start <= t <= window_end)
    if not latencies:
        why = f"; the server said: {first_error}" if first_error else "; raise --duration or check the server's log"
        raise DeployKitError(f"no request to {model.name} completed in {window_s:g} s at concurrency {concurrency} ({errors} failed){why}")
    p50, p90, p99 = np.percentile(np.array(latencies) * 1000, [50, 90, 99])
    batch = len(inputs[0])
    return LoadLevel(
        configuration,
        concurrency,
        batch,
        len(latencies),
        errors,
        round(done * batch / window_s, 2),
        round(float(p50), 3),
        round(float(p90), 3),
        round(float(p99), 3),
        *_server_times(before, after),
    )


async def _clients(
    model: RemoteModel, inputs: list[np.ndarray], concurrency: int, warmup_s: float, window_s: float, timeout_s: float
) -> tuple[float, list[float], list[float], int, str]:
    import tritonclient.http.aio as aio

    client = aio.InferenceServerClient(model.address, conn_limit=concurrency, conn_timeout=timeout_s)
    requests = [model.request(aio, batch) for batch in inputs]
    latencies: list[float] = []
    finished: list[float] = []
    errors = 0
    first_error = ""
    started = time.perf_counter()
    measured_from, end = started + warmup_s, started + warmup_s + window_s

    async def client_loop(index: int) -> None:
        nonlocal errors, first_error
        while (sent := time.perf_counter()) < end:
            try:
                await asyncio.wait_for(client.infer(model.name, requests[index % len(requests)]), timeout_s)
            except Exception as exc:  # a failed or timed-out request is counted, the load goes on
                first_error = first_error or f"{type(exc).__name__}: {first_line(exc)}"[:300]
                if sent >= measured_from:
                    errors += 1
            else:
                now = time.perf_counter()
                finished.append(now)
                if sent >= measured_from:
                    latencies.append(now - sent)
            index += concurrency

    try:
        await asyncio.gather(*(client_loop(i) for i in range(concurrency)))
    finally:
        await client.close()
    return started, latencies, finished, errors, first_error


def _statistics(client, name: str) -> dict:
    """The model's counters from Triton's statistics endpoint, checked; one line when they are not Triton's."""
    try:
        reply = client.get_inference_statistics(name)
    except Exception as exc:  # tritonclient's and the socket's own errors: the server went away mid-sweep
        raise DeployKitError(f"Triton stopped answering while {name} was measured ({type(exc).__name__}: {first_line(exc)}); see the server's log") from exc
    try:
        stats = reply["model_stats"][-1]  # the newest version's
        counters = {
            "inferences": int(stats["inference_count"]),
            "executions": int(stats["execution_count"]),
            **{key: (int(value["count"]), int(value["ns"])) for key, value in stats["inference_stats"].items()},
        }
        if not {"queue", "compute_input", "compute_infer", "compute_output"} <= set(counters):
            raise KeyError("queue, compute_input, compute_infer, compute_output")
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise DeployKitError(f"the statistics the server returned for {name} are not Triton's ({type(exc).__name__}: {exc}); is the server Triton?") from exc
    return counters


def _server_times(before: dict, after: dict) -> tuple[float | None, float | None, float | None]:
    """Mean queue and compute time per request (ms) and images per execution, over the level."""

    def mean_ms(*keys: str) -> float | None:
        count = after[keys[0]][0] - before[keys[0]][0]
        total = sum(after[k][1] - before[k][1] for k in keys)
        return round(total / count / 1e6, 3) if count else None

    executions = after["executions"] - before["executions"]
    per_execution = round((after["inferences"] - before["inferences"]) / executions, 2) if executions else None
    return mean_ms("queue"), mean_ms("compute_input", "compute_infer", "compute_output"), per_execution


def reload_with(model: RemoteModel, configuration: Configuration, original: dict) -> None:
    """Reload the model with ``configuration`` applied to its original config (as served: the original itself; a reload
    without a config would keep the last override, since the repository's files did not change)."""
    http = tritonclient_http()
    client = http.InferenceServerClient(model.address, network_timeout=300)
    try:
        client.load_model(model.name, config=json.dumps(configuration.applied_to(original)))
    except Exception as exc:  # tritonclient's InferenceServerException: the server refused the reload
        raise DeployKitError(
            f"Triton could not reload {model.name} as '{configuration.label}': {first_line(exc)} (sweeping "
            "configurations needs a server started with --model-control-mode explicit, as `deploykit serve` "
            "starts it)"
        ) from exc


def original_config(model: RemoteModel) -> dict:
    """The model's config as its repository has it: the live one, or the original an unrestored override recorded."""
    try:
        config = tritonclient_http().InferenceServerClient(model.address).get_model_config(model.name)
    except Exception as exc:
        raise DeployKitError(f"Triton stopped answering before {model.name}'s configurations were tried: {first_line(exc)}") from exc
    recorded = config.get("parameters", {}).get(OVERRIDE_OF, {}).get("string_value") if isinstance(config, dict) else None
    return json.loads(recorded) if recorded else config
