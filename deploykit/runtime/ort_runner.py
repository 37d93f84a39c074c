"""Runs an ONNX file with ONNX Runtime."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from deploykit.batch import Batch
from deploykit.errors import DeployKitError, first_line
from deploykit.runtime.availability import require_ort_providers
from deploykit.runtime.base import InputMetadata, Runner, padded_batches

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class OrtRunner(Runner):
    """``model`` is an .onnx path or a serialized ModelProto. ``exact_int8`` runs a Q/DQ file with onnxruntime's graph
    optimisations off: no integer kernel fusion, each layer computed in float from the dequantized integers, without
    saturation; close to what a VNNI CPU computes, not bit for bit (compress/cpu_target.py)."""

    def __init__(self, model: str | Path | bytes, providers: list[str] | None = None, threads: int | None = None, name: str = "onnxruntime", exact_int8: bool = False) -> None:
        super().__init__(name)
        self.model = model if isinstance(model, bytes) else Path(model)
        self.providers = providers or ["CPUExecutionProvider"]
        self.threads = threads
        self.exact_int8 = exact_int8
        self.session = None

    def load_impl(self) -> None:
        self.session = create_session(self.model, self.providers, self.threads, optimize=not self.exact_int8)

    def input_metadata(self) -> InputMetadata:
        (model_input,) = self.session.get_inputs()
        shape = tuple(d if isinstance(d, int) else None for d in model_input.shape)
        return InputMetadata(model_input.name, shape, np.dtype(_ORT_TYPES.get(model_input.type, np.float32)))

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        name = self.session.get_inputs()[0].name
        try:
            return self.session.run(None, {name: batch})[0]
        except Exception as exc:  # onnxruntime's own exception types: the file cannot take this input
            what = self.model if isinstance(self.model, Path) else self.name
            raise DeployKitError(f"onnxruntime cannot run {what} on a {list(batch.shape)} input: {first_line(exc)}; check its input layout (NCHW) and size (--input-size)") from exc

    def close_impl(self) -> None:
        self.session = None


def create_session(model: str | Path | bytes, providers: list[str], threads: int | None = None, optimize: bool = True, session_options: dict | None = None):
    """An InferenceSession, with unreadable files and missing providers as one-line user errors. Without ``threads``,
    OMP_NUM_THREADS (where set) bounds onnxruntime's threads as it bounds torch's; otherwise it takes every core.
    ``optimize=False`` turns every graph optimisation off; ``session_options`` sets more SessionOptions attributes."""
    import onnxruntime as ort

    if not isinstance(model, bytes) and not Path(model).is_file():
        raise DeployKitError(f"ONNX file {model} does not exist")
    require_ort_providers(providers)
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: its errors reach the user as deploykit's one line
    threads = threads or _omp_threads()
    if threads:
        options.intra_op_num_threads = threads
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    for key, value in (session_options or {}).items():
        setattr(options, key, value)
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        where = "the ONNX model" if isinstance(model, bytes) else f"ONNX file {model}"
        raise DeployKitError(f"onnxruntime cannot load {where}: {first_line(exc)}; re-export it with `deploykit export`") from exc


def _omp_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def run_with_intermediates(proto, names: list[str], inputs: np.ndarray, batch: int | None = None) -> dict[str, np.ndarray]:
    """Run an ONNX model with extra graph outputs for the named intermediate tensors.

    Returns {name: values over all inputs}; names the graph does not have are left out. Inputs run
    in batches of the graph's fixed batch size (padded), or all at once when the batch is dynamic.
    """
    chunks: dict[str, list[np.ndarray]] = {}
    for _, values in stream_intermediates(proto, names, inputs, batch):
        for name, value in values.items():
            chunks.setdefault(name, []).append(value)
    return {name: np.concatenate(values) for name, values in chunks.items()}


def stream_intermediates(proto, names: list[str], inputs: np.ndarray, batch: int | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """The named tensors chunk by chunk, from one session: (images in the chunk, {name: their values}), so memory holds
    one chunk's tensors at a time. The graph's input may be named too; tensors without a batch dimension are left out.
    Chunks are the graph's fixed batch (padded), else ``batch`` inputs, else all of them."""
    import onnx

    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    input_name = probe.graph.input[0].name
    produced = {out for node in probe.graph.node for out in node.output}
    existing = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names if n in produced and n not in existing)
    session = create_session(probe.SerializeToString(), ["CPUExecutionProvider"])
    wanted = [n for n in names if n in produced and n != input_name]
    step = Batch.of_graph(probe).size or batch or len(inputs)
    for chunk, count in padded_batches(inputs, step):
        values = dict(zip(wanted, session.run(wanted, {input_name: chunk})))
        if input_name in names:
            values[input_name] = chunk
        yield count, {name: value[:count] for name, value in values.items() if value.ndim and value.shape[0] == len(chunk)}
