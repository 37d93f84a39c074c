"""The options of each command, one typed config per recipe; the command-line options read their defaults here.

Kept free of torch and onnx, so that ``deploykit --help`` starts at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from deploykit.choices import DEFAULT_OPSET, IMAGENET_MEAN, IMAGENET_STD
from deploykit.compress.configs import QatConfig, QuantizeConfig
from deploykit.data import DEFAULT_CALIBRATION_DIR
from deploykit.io import check_writable_file
from deploykit.parity import Tolerances

if TYPE_CHECKING:
    from deploykit.bench.presets import Preset

DEFAULT_OUT = Path("deploykit-out")


@dataclass(frozen=True)
class TritonConfig:
    """Options of ``deploykit triton`` (and ``export --triton``): where the repository goes and how its models are served.

    ``device`` is the instance kind, gpu or cpu (default: cpu for OpenVINO, gpu otherwise); ``bench_results`` are
    ``deploykit bench --json`` files whose rows for a served file set its batching.
    """

    repo: Path
    backend: str = "onnxruntime"
    device: str | None = None
    instances: int = 1
    dynamic_batching: bool = True
    bench_results: tuple[Path, ...] = ()

    @property
    def kind(self) -> str:
        return self.device or ("cpu" if self.backend == "openvino" else "gpu")


@dataclass(frozen=True)
class ServerBenchConfig:
    """Options of ``deploykit bench --server URL --model NAME``: the concurrency sweep and the configurations tried.

    Every level runs ``warmup_s`` then a window of ``duration_s``; the sweep of a configuration stops at the first level
    whose p99 passes ``max_latency_ms``. ``queue_delays_us`` may hold -1: no dynamic batching.
    """

    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    max_latency_ms: float | None = None
    duration_s: float = 5.0
    warmup_s: float = 1.0
    batch_size: int = 1
    instances: tuple[int, ...] = ()
    queue_delays_us: tuple[int, ...] = ()
    timeout_s: float = 60.0


@dataclass(frozen=True)
class ExportConfig:
    """Options of ``deploykit export``; each maps to one command-line option.

    ``name`` is any model reference that names an architecture (``resnet50``, ``resnet50:ckpt.pth``,
    ``resnet50:IMAGENET1K_V2``, a pruned folder); ``weights`` is ``--weights``.
    """

    name: str | None = None
    out: Path = DEFAULT_OUT
    weights: str | None = None
    opset: int = DEFAULT_OPSET
    batch: int = 1
    dynamic_batch: bool = False
    input_size: int | None = None
    simplify: bool = True
    tolerances: Tolerances = field(default_factory=Tolerances)
    parity_images: Path | None = DEFAULT_CALIBRATION_DIR
    quantize: QuantizeConfig | None = None  # --int8: the INT8 file and its gate
    fp16: bool = False
    fp16_io: bool = False
    time_runtimes: bool = True  # time every file on every CPU runtime and name the fastest (``--no-timing`` skips it)
    model_kwargs: dict = field(default_factory=dict)
    mean: tuple[float, float, float] = IMAGENET_MEAN  # preprocessing of a user's ONNX file (it has no manifest)
    std: tuple[float, float, float] = IMAGENET_STD
    module: str | None = None  # path/to/file.py:function, the user's own nn.Module, instead of ``name``
    qat: QatConfig | None = None  # with ``quantize``: quantization-aware fine-tuning after PTQ
    qat_data: Path | None = None  # images for it (labels optional); the calibration images by default
    triton: TritonConfig | None = None  # --triton REPO: also write the export into a Triton model repository


@dataclass(frozen=True)
class PruneCheck:
    """How ``deploykit prune`` judges the pruned model against the unpruned one."""

    data: str | None = None  # labelled folder (top-1) or flat folder (agreement); the bundled held-out photos otherwise
    batch: int = 32  # the larger batch timed beside batch 1
    max_drop: float = 2.0  # top-1 points (or percent of disagreement) beyond which the loss is called out
    timing: bool = True
    held_out: bool = False  # only the last tenth of each class folder of ``data`` (what train holds out of it)


@dataclass(frozen=True)
class Compression:
    """The compression stages ``deploykit export`` can run before exporting: prune, then distil or fine-tune."""

    prune_ratio: float | None = None
    teacher: str | None = None
    data: str | None = None
    epochs: int = 10
    val: Path | None = None  # held-out labelled photos the chain is judged on (else the held-out tenth of --data)
    max_drop: float = 1.0  # top-1 points the shipped file may lose against the original
    limit: int | None = None  # train on at most this many photos of ``data``

    @property
    def requested(self) -> bool:
        return self.prune_ratio is not None or bool(self.teacher) or bool(self.data)

    def for_export(self, qat: bool) -> Compression:
        """The stages to run: with ``--int8 --qat`` alone, ``--data`` is the QAT images, not data to train on first."""
        trains = not qat or self.prune_ratio is not None or bool(self.teacher)
        return self if trains else Compression(self.prune_ratio, self.teacher, None, self.epochs, self.val, self.max_drop, self.limit)


@dataclass(frozen=True)
class BenchConfig:
    """Options of ``deploykit bench``; each maps to one command-line option."""

    engine: str = "torch"
    device: str = "cpu"
    precision: str = "fp32"
    batches: tuple[int, ...] = (1,)
    threads: int | None = None
    runs: int = 50
    warmup: int = 10
    warmup_seconds: float | None = None
    data: Path | None = None
    data_limit: int | None = None  # images of --data, spread over the folder; None: all of them, streamed
    duration_s: float | None = None  # time each batch size for this long instead of ``runs`` (``--duration``)
    profile: bool = False  # also time each layer of the timed file (``--profile``): ort or openvino
    out: Path = DEFAULT_OUT
    ort_provider: str | None = None
    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    workspace_gb: float = 4.0
    no_data_transfers: bool = False  # trt: time the engine alone, input kept on the GPU (trtexec --noDataTransfers)
    input_size: int | None = None  # for an ONNX file with no manifest
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    preset: str | None = None  # the deployment preset (``--target``) the engine, device, precision and batches came from
    auto: bool = False  # the engine and precision are the export's fastest (``--engine auto``)
    streams: int = 1  # above 1: a second row per batch with that many requests in parallel (``--streams``)

    @classmethod
    def with_preset(cls, preset: Preset | None, **given) -> BenchConfig:
        """The options given, then the preset's (``bench --target``) for those not given, then the defaults."""
        from_preset = (
            {}
            if preset is None
            else {
                "engine": preset.engine,
                "device": preset.device,
                "precision": preset.precision,
                "batches": preset.batches,
                "threads": preset.threads,
                "workspace_gb": preset.workspace_gb,
                "preset": preset.name,
            }
        )
        chosen = {**{k: v for k, v in from_preset.items() if v is not None}, **{k: v for k, v in given.items() if v is not None}}
        return cls(**chosen)


@dataclass(frozen=True)
class ResultFiles:
    """Where ``--json``, ``--csv`` and ``--md`` write a run's rows (each optional)."""

    json: Path | None = None
    csv: Path | None = None
    md: Path | None = None

    def check_writable(self) -> None:
        """Each file must be writable before a long run, not found unwritable after it."""
        for path in (self.json, self.csv, self.md):
            check_writable_file(path)


@dataclass(frozen=True)
class EvalConfig:
    """Options of ``deploykit eval``; each maps to one command-line option."""

    data: Path
    engine: str = "ort"
    precision: str = "fp32"
    batch_size: int = 32
    workers: int = 2
    limit: int | None = None
    held_out: bool = False  # only the last tenth of each class folder (what train holds out of it)
    input_size: int | None = None  # for an ONNX file with no manifest
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    out: Path = DEFAULT_OUT


@dataclass(frozen=True)
class CompareConfig:
    """Options of ``deploykit compare``; each maps to one command-line option."""

    input_size: int | None = None
    images: Path | None = DEFAULT_CALIBRATION_DIR
    per_layer: bool = False
    layer_tolerance: float = 1e-3
    tolerances: Tolerances = field(default_factory=Tolerances)
