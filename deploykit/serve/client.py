"""A model served by Triton, as a client sees it: its input and output, and the preprocessing its config records."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

import numpy as np

from deploykit.data.preprocess import Preprocess
from deploykit.errors import DeployKitError, first_line
from deploykit.serve.triton_config import recorded_preprocess

_NUMPY_TYPES = {"FP32": np.float32, "FP16": np.float16}
MAX_SERVER_BATCH = 65536


def server_address(url: str) -> str:
    """``host:port`` of an ``http://`` URL (what tritonclient takes); one line for anything else."""
    parsed = urllib.parse.urlparse(url if "://" in url else f"http://{url}")
    if parsed.scheme != "http" or not parsed.hostname or parsed.path not in ("", "/"):
        raise DeployKitError(f"--server takes a Triton HTTP address such as http://127.0.0.1:8000, got {url!r}")
    return f"{parsed.hostname}:{parsed.port or 80}"


def tritonclient_http():
    try:
        import tritonclient.http as http
    except ImportError as exc:
        raise DeployKitError("talking to Triton needs tritonclient: pip install 'deploykit[serve]'") from exc
    return http


@dataclass(frozen=True)
class RemoteModel:
    """What ``GET /v2/models/NAME/config`` says about a deploykit model."""

    address: str
    name: str
    input: str
    output: str
    datatype: str
    max_batch_size: int
    parameters: dict[str, str]

    @classmethod
    def fetch(cls, url: str, name: str) -> RemoteModel:
        http = tritonclient_http()
        address = server_address(url)
        try:
            client = http.InferenceServerClient(address, connection_timeout=10, network_timeout=30)
            if not client.is_model_ready(name):
                raise DeployKitError(f"{url} serves no ready model {name!r}; see GET {url}/v2/repository/index for its models")
            config = client.get_model_config(name)
        except DeployKitError:
            raise
        except Exception as exc:  # tritonclient's and the socket's own errors: the server cannot be reached
            raise DeployKitError(f"cannot reach Triton at {url}: {first_line(exc)}; start it with `deploykit serve REPO`") from exc
        return cls.from_config(address, name, config, url)

    @classmethod
    def from_config(cls, address: str, name: str, config: object, url: str) -> RemoteModel:
        """The model as its config (Triton's JSON form) describes it, every field used checked: one line naming the first
        that is not what a deploykit classifier has."""

        def bad(field: str, value: object, wanted: str) -> DeployKitError:
            what = f"has {field}" if field else "is"
            return DeployKitError(
                f"{url}: model {name}'s config {what} {str(value)[:120]!r}, not {wanted}; it is not a model deploykit wrote (`deploykit triton`), or the server is not Triton"
            )

        if not isinstance(config, dict):
            raise bad("", config, "a config")
        tensors = {}
        for key in ("input", "output"):
            value = config.get(key)
            if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict) or not isinstance(value[0].get("name"), str):
                raise bad(key, value, f"one named {key} tensor")
            tensors[key] = value[0]
        datatype = str(tensors["input"].get("data_type", "")).removeprefix("TYPE_")
        if datatype not in _NUMPY_TYPES:
            raise bad("input.data_type", tensors["input"].get("data_type"), f"one of {', '.join('TYPE_' + t for t in _NUMPY_TYPES)}")
        max_batch = config.get("max_batch_size", 0)
        if type(max_batch) is not int or not 0 <= max_batch <= MAX_SERVER_BATCH:
            raise bad("max_batch_size", max_batch, f"a whole number from 0 to {MAX_SERVER_BATCH}")
        raw = config.get("parameters", {})
        if not isinstance(raw, dict) or not all(isinstance(v, dict) and isinstance(v.get("string_value", ""), str) for v in raw.values()):
            raise bad("parameters", raw, "string parameters")
        parameters = {key: value.get("string_value", "") for key, value in raw.items()}
        model = cls(address, name, tensors["input"]["name"], tensors["output"]["name"], datatype, max_batch, parameters)
        _ = model.preprocess  # read now, so a damaged record is one line before any request
        return model

    @property
    def preprocess(self) -> Preprocess:
        """The preprocessing the config records (``deploykit triton`` writes it)."""
        return recorded_preprocess(self.parameters, self.name)

    @property
    def precision(self) -> str:
        return self.parameters.get("deploykit.precision", self.datatype.lower())

    def request(self, http_module, batch: np.ndarray):
        """The input of one request for ``batch``, cast to the type the model takes."""
        array = np.ascontiguousarray(batch, dtype=_NUMPY_TYPES.get(self.datatype, np.float32))
        tensor = http_module.InferInput(self.input, list(array.shape), self.datatype)
        tensor.set_data_from_numpy(array)
        return [tensor]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits for ``batch`` from the server, one request per ``max_batch_size`` rows."""
        http = tritonclient_http()
        client = http.InferenceServerClient(self.address, network_timeout=120)
        step = max(1, self.max_batch_size)
        parts = [client.infer(self.name, self.request(http, batch[i : i + step])).as_numpy(self.output) for i in range(0, len(batch), step)]
        return np.concatenate(parts).astype(np.float32, copy=False)
