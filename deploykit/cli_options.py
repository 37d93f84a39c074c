"""The option groups the commands declare, each reading its default from the config type it fills, and the mapping of
``deploykit export``'s many options onto its typed configs."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.bench.presets import DEVICES, ENGINES, PRECISIONS, load_presets
from deploykit.choices import (AMP_TYPES, CALIBRATION_METHODS, CPU_TARGETS, IMAGENET_MEAN, IMAGENET_STD, INT8_LAYOUTS, MAX_THREADS,
                               MAX_WORKERS, WEIGHT_ROUNDINGS,
                               NO_BATCHING, TRITON_BACKENDS, TRITON_DEVICES)
from deploykit.cli_types import BatchList, FiniteFloatRange, Warmup, input_size_option
from deploykit.compress.configs import DistillConfig, QatConfig, QuantizeConfig
from deploykit.errors import DeployKitError
from deploykit.parity import Tolerances
from deploykit.recipes.configs import DEFAULT_OUT, BenchConfig, Compression, ExportConfig, ServerBenchConfig, TritonConfig

OUT_OPTION = dict(type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUT, show_default=True)


def apply(options: list):
    """Decorate a command with ``options`` in the order they are listed (as ``--help`` shows them)."""
    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


tolerance_options = apply([
    click.option("--rel-error", type=FiniteFloatRange(min=0), default=Tolerances.rel_error, show_default=True,
                 help="Maximum abs error, as a fraction of the reference logit range."),
    click.option("--min-cosine", type=FiniteFloatRange(-1, 1), default=Tolerances.min_cosine, show_default=True,
                 help="Minimum cosine similarity of the logits, per input."),
    click.option("--min-top1", type=FiniteFloatRange(0, 1), default=Tolerances.min_top1, show_default=True,
                 help="Minimum top-1 agreement (fraction of inputs)."),
])

foreign_onnx_options = apply([
    input_size_option("Input size of an ONNX file with a dynamic size and no manifest: N (square) or H W."),
    click.option("--mean", nargs=3, type=float, default=IMAGENET_MEAN, show_default=True,
                 help="Per-channel mean for an ONNX file with no manifest."),
    click.option("--std", nargs=3, type=float, default=IMAGENET_STD, show_default=True,
                 help="Per-channel std for an ONNX file with no manifest."),
])

training_options = apply([
    click.option("--data", required=True, help="'digits' (built in), a folder of class subfolders, or (distill) a flat folder "
                 "of unlabelled photos."),
    click.option("--val", type=click.Path(file_okay=False), help="Labelled folder of held-out photos to validate each epoch on "
                 "(default: the last tenth of each class folder of --data)."),
    click.option("--limit", type=click.IntRange(min=2), help="Train on at most this many photos of --data, spread evenly over "
                 "its classes (default: all but the held-out ones)."),
    click.option("--new-head", is_flag=True, help="Replace the classifier with a new one for --data's classes even where the "
                 "folders could map onto the model's (a pretrained model whose classes differ gets one anyway)."),
    click.option("--epochs", type=click.IntRange(min=1), default=DistillConfig.epochs, show_default=True),
    click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=DistillConfig.lr, show_default=True,
                 help="Peak learning rate (SGD, Nesterov) of a new classifier, or of every layer without one."),
    click.option("--backbone-lr", type=FiniteFloatRange(0, 1, min_open=True), default=DistillConfig.backbone_lr,
                 show_default=True, help="Under a new classifier: the pretrained layers' rate, as a fraction of --lr."),
    click.option("--warmup-epochs", type=FiniteFloatRange(min=0), default=DistillConfig.warmup_epochs, show_default=True,
                 help="Linear warm-up of the rate (epochs, fractions allowed), then a cosine to zero."),
    click.option("--label-smoothing", type=FiniteFloatRange(0, 1, max_open=True), default=DistillConfig.label_smoothing,
                 show_default=True),
    click.option("--min-crop-scale", type=FiniteFloatRange(0, 1, min_open=True), default=DistillConfig.min_crop_scale,
                 show_default=True, help="Random crops keep at least this share of each photo (ImageNet recipes use 0.08)."),
    click.option("--batch-size", type=click.IntRange(min=1), default=DistillConfig.batch_size, show_default=True),
    click.option("--seed", type=int, default=DistillConfig.seed, show_default=True),
    input_size_option(),
    click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
                 help="Output folder: best.pth, last.pth and a manifest; the folder is a model reference itself."),
    click.option("--resume/--no-resume", default=True, show_default=True, help="Continue from OUT/checkpoint.pth if present."),
    click.option("--workers", type=click.IntRange(0, MAX_WORKERS), help="DataLoader worker processes (default: up to 4)."),
    click.option("--amp", type=click.Choice(AMP_TYPES), default=DistillConfig.amp, show_default=True,
                 help="Mixed precision: bf16 (CPU or CUDA) or fp16 (CUDA, with loss scaling)."),
])


def training_config(o: dict, teacher: bool) -> DistillConfig:
    """``train``'s and ``distill``'s options as the training config (``distill`` adds the teacher's share)."""
    return DistillConfig(epochs=o["epochs"], temperature=o.get("temperature", DistillConfig.temperature),
                         alpha=o["alpha"] if teacher else 0.0, lr=o["lr"], backbone_lr=o["backbone_lr"],
                         warmup_epochs=o["warmup_epochs"], label_smoothing=o["label_smoothing"], min_crop_scale=o["min_crop_scale"],
                         batch_size=o["batch_size"], seed=o["seed"], amp=o["amp"])


def _deprecated_target(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        click.echo("warning: export --target is now --int8-layout (same values); --target will be removed in the next release",
                   err=True)
    return value


export_options = apply([
    click.argument("name", required=False),
    click.option("--module", help="Export your own nn.Module instead: path/to/file.py:function (called with no arguments)."),
    click.option("--weights", help="Published weights (IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT, imagenet) or a checkpoint file; "
                 "default: seeded random init, for structure and latency only."),
    click.option("--out", **OUT_OPTION, help="Output folder; the export goes to OUT/NAME/."),
    click.option("--opset", type=click.IntRange(min=18), default=ExportConfig.opset, show_default=True, help="ONNX opset."),
    click.option("--batch", type=click.IntRange(min=1), default=ExportConfig.batch, show_default=True, help="Fixed batch size."),
    click.option("--dynamic-batch", is_flag=True, help="Export with a dynamic batch dimension instead of --batch."),
    input_size_option(),
    click.option("--simplify/--no-simplify", default=ExportConfig.simplify, show_default=True,
                 help="Simplify with onnxslim when parity holds."),
    click.option("--fp16", is_flag=True, help="Also write model.fp16.onnx (float16 weights and compute), checked against PyTorch."),
    click.option("--fp16-io", is_flag=True, help="With --fp16: float16 graph inputs and outputs too (default float32)."),
    click.option("--no-timing", is_flag=True, help="Skip timing every file on every CPU runtime (then bench --engine auto "
                 "has no fastest combination to read)."),
    tolerance_options,
    click.option("--int8", is_flag=True, help="Also write a calibrated Q/DQ INT8 model (model.int8.onnx)."),
    click.option("--calib", type=click.Path(exists=False, path_type=Path), default=QuantizeConfig.calib,
                 show_default="bundled photos", help="Calibration images (flat or class subfolders) or .npy/.npz arrays."),
    click.option("--calib-size", type=click.IntRange(min=1), default=QuantizeConfig.calib_size, show_default=True,
                 help="Calibration samples to use."),
    click.option("--calib-method", type=click.Choice(CALIBRATION_METHODS), default=QuantizeConfig.method, show_default=True,
                 help="Activation ranges: mean of per-image min/max (robust), global min/max, onnxruntime's histograms, "
                 "or auto: whichever of the first two is closer to FP32 on the calibration images."),
    click.option("--bias-correction/--no-bias-correction", default=QuantizeConfig.bias_correction, show_default=True,
                 help="Fold each conv's mean weight-rounding error into its bias."),
    click.option("--weight-rounding", type=click.Choice(WEIGHT_ROUNDINGS), default=QuantizeConfig.rounding, show_default=True,
                 help="gptq: choose each layer's integer weights against its FP32 output on the calibration images "
                 "(GPTQ; --qat rounds to nearest); nearest: round each weight on its own."),
    click.option("--cpu", "cpu_target", type=click.Choice(CPU_TARGETS), default=QuantizeConfig.cpu, show_default=True,
                 help="With --int8-layout cpu: the CPU the file is for. vnni: 8-bit weights (exact on VNNI); avx2: 7-bit "
                 "weights, which onnxruntime's AVX2 kernels cannot saturate; auto: this machine's kind."),
    click.option("--per-channel/--per-tensor", default=QuantizeConfig.per_channel, show_default=True,
                 help="Weight quantization granularity."),
    click.option("--exclude", multiple=True, help="Keep matching layers in FP32 (shell pattern over layer names; repeatable)."),
    click.option("--int8-layout", "layout", type=click.Choice(INT8_LAYOUTS), default=QuantizeConfig.layout, show_default=True,
                 help="Q/DQ placement: cpu (uint8 activations, fast on x86 with onnxruntime), trt (symmetric int8, "
                 "TensorRT's placement) or openvino (NNCF's placement for OpenVINO's CPU plugin; judged on OpenVINO)."),
    click.option("--target", "deprecated_target", type=click.Choice(INT8_LAYOUTS), hidden=True, callback=_deprecated_target,
                 help="Deprecated: --int8-layout."),
    click.option("--int8-min-cosine", type=FiniteFloatRange(-1, 1), default=QuantizeConfig.min_cosine, show_default=True,
                 help="Gate without --val: mean logit cosine of INT8 vs FP32 on the held-out images."),
    click.option("--int8-min-confident-agreement", type=FiniteFloatRange(0, 1), default=QuantizeConfig.min_confident_agreement,
                 show_default=True, help="Gate without --val: top-1 agreement with FP32 on the held-out images FP32 is confident "
                 "on (top-1 probability >= 0.5; gated where there are at least 8)."),
    click.option("--int8-min-top5", type=FiniteFloatRange(0, 1), default=QuantizeConfig.min_top5, show_default=True,
                 help="Gate without --val: share of held-out images whose FP32 top-1 is in the INT8 top-5."),
    click.option("--val", type=click.Path(file_okay=False, path_type=Path),
                 help="Labelled folder (class subfolders): gate INT8 on its top-1 drop instead (--max-drop); with --prune/--data, "
                 "the held-out photos the whole chain is judged on."),
    click.option("--max-drop", type=FiniteFloatRange(min=0), default=QuantizeConfig.max_drop, show_default=True,
                 help="With --val: top-1 points INT8 may lose against FP32; with --prune/--data, points the shipped file may "
                 "lose against the original."),
    click.option("--mean", nargs=3, type=float, default=ExportConfig.mean, show_default=True,
                 help="Per-channel mean, for an ONNX file given as NAME (a model's own otherwise)."),
    click.option("--std", nargs=3, type=float, default=ExportConfig.std, show_default=True,
                 help="Per-channel std, for an ONNX file given as NAME (a model's own otherwise)."),
    click.option("--holdout", type=click.Path(path_type=Path), default=QuantizeConfig.holdout, show_default="bundled photos",
                 help="Held-out images (or .npy/.npz arrays) for the INT8 accuracy check; not used for calibration."),
    click.option("--prune", "prune_ratio", type=float, help="First prune this fraction of channels (see `deploykit prune`)."),
    click.option("--distill-from", "teacher", help="Then distil from this teacher (NAME:CHECKPOINT) on --data."),
    click.option("--data", help="Training data for --distill-from or fine-tuning after --prune: a labelled folder or 'digits'."),
    click.option("--epochs", type=click.IntRange(min=1), default=Compression.epochs, show_default=True,
                 help="Epochs of distillation/fine-tuning/QAT."),
    click.option("--limit", type=click.IntRange(min=2), help="With --data: train on at most this many of its photos, spread "
                 "evenly over its classes."),
    click.option("--qat", is_flag=True, help="With --int8: quantization-aware fine-tuning from the PTQ ranges, the FP32 model "
                 "as teacher, on --data (labels optional; default: the calibration images)."),
    click.option("--qat-lr", type=FiniteFloatRange(min=0, min_open=True), default=QatConfig.lr, show_default=True,
                 help="QAT learning rate (Adam)."),
    click.option("--triton", "triton_repo", type=click.Path(file_okay=False, path_type=Path),
                 help="Also write the export into this Triton model repository (needs --dynamic-batch; see `deploykit triton`)."),
    click.option("--triton-backend", type=click.Choice(TRITON_BACKENDS), default=TritonConfig.backend, show_default=True,
                 help="With --triton: the Triton backend the ONNX files run on."),
    click.option("--triton-device", type=click.Choice(TRITON_DEVICES),
                 help="With --triton: instance kind (default: cpu for openvino, gpu otherwise)."),
])


triton_options = apply([
    click.option("--backend", type=click.Choice(TRITON_BACKENDS), default=TritonConfig.backend, show_default=True,
                 help="The Triton backend the ONNX files run on (TensorRT engines beside them are added on the tensorrt backend)."),
    click.option("--device", type=click.Choice(TRITON_DEVICES), help="Instance kind: gpu or cpu (default: cpu for openvino, gpu otherwise)."),
    click.option("--instances", type=click.IntRange(1, 64), default=TritonConfig.instances, show_default=True,
                 help="Model instances (instance_group count)."),
    click.option("--no-dynamic-batching", is_flag=True, help="Leave the dynamic batcher out (each request runs alone)."),
    click.option("--bench-results", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
                 help="`deploykit bench --json` files: their rows for a served file set max_batch_size and the preferred batch "
                 "(repeatable; default: max batch 32; the queue delay is 100 us)."),
])


def export_request(o: dict) -> tuple[ExportConfig, Compression]:
    """``deploykit export``'s options as the export config and the compression stages before it."""
    if o["dynamic_batch"] and o["batch"] != 1:
        raise DeployKitError("--batch and --dynamic-batch exclude each other: a dynamic batch has no fixed size")
    layout_given = bool(given("layout"))
    if layout_given and not o["int8"]:
        raise DeployKitError("--int8-layout places the Q/DQ nodes of the INT8 file: add --int8, or drop --int8-layout")
    if given("cpu_target") and (not o["int8"] or (o["deprecated_target"] or o["layout"]) != "cpu"):
        raise DeployKitError("--cpu names the CPU an --int8-layout cpu file is for: add --int8 (layout cpu), or drop --cpu")
    if given("weight_rounding") and not o["int8"]:
        raise DeployKitError("--weight-rounding rounds the weights of the INT8 file: add --int8, or drop --weight-rounding")
    if o["weight_rounding"] == "gptq" and given("weight_rounding") and o["qat"]:
        raise DeployKitError("--qat trains the weights with rounding to nearest and writes them so: drop --weight-rounding gptq")
    if o["deprecated_target"] and layout_given and o["deprecated_target"] != o["layout"]:
        raise DeployKitError(f"--target {o['deprecated_target']} contradicts --int8-layout {o['layout']}; give --int8-layout alone")
    quantize = QuantizeConfig(
        calib=o["calib"], calib_size=o["calib_size"], method=o["calib_method"], per_channel=o["per_channel"],
        bias_correction=o["bias_correction"], rounding=o["weight_rounding"], cpu=o["cpu_target"], exclude=o["exclude"],
        layout=o["deprecated_target"] or o["layout"],
        holdout=o["holdout"], min_cosine=o["int8_min_cosine"], min_top5=o["int8_min_top5"],
        min_confident_agreement=o["int8_min_confident_agreement"], val=o["val"], max_drop=o["max_drop"]) if o["int8"] else None
    config = ExportConfig(
        name=o["name"], out=o["out"], weights=o["weights"], opset=o["opset"], batch=o["batch"], dynamic_batch=o["dynamic_batch"],
        input_size=o["input_size"], simplify=o["simplify"], tolerances=Tolerances(o["rel_error"], o["min_cosine"], o["min_top1"]),
        quantize=quantize, fp16=o["fp16"] or o["fp16_io"], fp16_io=o["fp16_io"], module=o["module"], time_runtimes=not o["no_timing"],
        qat=QatConfig(epochs=o["epochs"], lr=o["qat_lr"]) if o["qat"] else None, qat_data=Path(o["data"]) if o["qat"] and o["data"] else None,
        mean=tuple(o["mean"]), std=tuple(o["std"]),
        triton=TritonConfig(o["triton_repo"], o["triton_backend"], o["triton_device"]) if o["triton_repo"] else None)
    if o["limit"] is not None and not (o["data"] and (o["prune_ratio"] is not None or o["teacher"] or not o["qat"])):
        raise DeployKitError("--limit caps the photos --data trains on before exporting: give --data (with --prune or "
                             "--distill-from), or drop --limit")
    return config, Compression(o["prune_ratio"], o["teacher"], o["data"], o["epochs"], o["val"], o["max_drop"], o["limit"])


bench_options = apply([
    click.argument("models", nargs=-1),
    click.option("--engine", type=click.Choice(ENGINES), help=f"Backend (default {BenchConfig.engine}, or the preset's); auto: "
                 "the fastest CPU runtime and precision the export's manifest names."),
    click.option("--device", type=click.Choice(DEVICES), help=f"cpu or cuda (default {BenchConfig.device}, or the preset's)."),
    click.option("--precision", type=click.Choice(PRECISIONS),
                 help=f"fp32, fp16 or int8 (default {BenchConfig.precision}, or the preset's)."),
    click.option("--batch", "batches", type=BatchList(high=65536), help="Comma-separated batch sizes, e.g. 1,8,32 (default 1, or the preset's)."),
    click.option("--threads", type=click.IntRange(1, MAX_THREADS), help="CPU threads (torch, ONNX Runtime, OpenVINO)."),
    click.option("--streams", type=click.IntRange(1, MAX_THREADS), default=BenchConfig.streams,
                 help="ort/openvino: also time this many requests in parallel (OpenVINO's THROUGHPUT hint with that many "
                 "streams, or as many onnxruntime sessions), for images per second; the number of cores is one per core."),
    click.option("--target", help=f"A deployment preset: {', '.join(load_presets())}, or one from --presets."),
    click.option("--presets", type=click.Path(dir_okay=False, path_type=Path), help="Extra presets (TOML file)."),
    click.option("--data", type=click.Path(file_okay=False, path_type=Path), help="Labelled folder (class subfolders) or 'digits', "
                 "for top-1 and agreement, streamed; default: FP32 agreement on the bundled held-out photos export's gate uses."),
    click.option("--data-limit", type=click.IntRange(min=1), help="With --data: this many images, spread over the folder "
                 "(default: all of them)."),
    click.option("--runs", type=click.IntRange(1, 100_000), default=BenchConfig.runs, show_default=True, help="Timed runs per batch size."),
    click.option("--all", "all_files", is_flag=True, help="Every file of an export folder on every runtime here (PyTorch, "
                 "onnxruntime, OpenVINO, its bf16), in one interleaved run: one table of size, latency with its spread, "
                 "throughput, quality and each file's check."),
    click.option("--profile", is_flag=True, help="ort/openvino: also time each layer of the file (onnxruntime's profiler, "
                 "OpenVINO's performance counters) and print the slowest 15, with the precision each ran in."),
    click.option("--warmup", type=Warmup(), default=str(BenchConfig.warmup), show_default=True,
                 help="Untimed warm-up: a number of runs, or seconds such as 2s."),
    click.option("--ort-provider", type=click.Choice(["cpu", "cuda", "tensorrt"]), help="ONNX Runtime execution provider (default: --device)."),
    click.option("--channels-last", is_flag=True, help="torch: channels_last memory format."),
    click.option("--compile", "compile_", is_flag=True, help="torch: torch.compile the model."),
    click.option("--cuda-graphs", is_flag=True, help="torch: capture and replay a CUDA graph."),
    click.option("--no-data-transfers", is_flag=True, help="trt: time the engine alone, input kept on the GPU (trtexec's --noDataTransfers)."),
    click.option("--out", **OUT_OPTION, help="Where models given by name are exported."),
    click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write results as JSON."),
    click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Write results as CSV."),
    click.option("--md", "md_path", type=click.Path(dir_okay=False, path_type=Path), help="Write results as a Markdown table."),
    foreign_onnx_options,
    click.option("--server", help="Measure load on a Triton server instead: its HTTP address, e.g. http://127.0.0.1:8000."),
    click.option("--model", "server_model", help="With --server: the served model's name."),
    click.option("--concurrency", type=BatchList(high=1024), default=",".join(map(str, ServerBenchConfig.concurrency)), show_default=True,
                 help="With --server: numbers of concurrent clients to sweep."),
    click.option("--max-latency", type=FiniteFloatRange(min=0, min_open=True),
                 help="With --server: stop a sweep at the first level whose p99 passes this many ms."),
    click.option("--duration", type=FiniteFloatRange(0.1, 600), default=ServerBenchConfig.duration_s, show_default=True,
                 help="Seconds to time each batch size, instead of --runs (as benchmark_app -t); with --server: measured "
                 "seconds per level (after a 1 s warm-up)."),
    click.option("--instances", type=BatchList(high=64), help="With --server: also sweep these instance counts (reloads the model)."),
    click.option("--queue-delay", type=BatchList(low=0, high=1_000_000, off_value=NO_BATCHING),
                 help="With --server: also sweep these dynamic-batching queue delays in us; off: no dynamic batching."),
])


def _they(options: list[str], singular: str, plural: str) -> str:
    return f"{', '.join(options)} {singular if len(options) == 1 else plural}"


def given(*names: str) -> list[str]:
    """Of these parameters, the ones the user gave on the command line (or through the environment), as options."""
    context = click.get_current_context()
    sources = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    options = {param.name: param.opts[0] for param in context.command.params}
    return [options[name] for name in names if context.get_parameter_source(name) in sources]


LOCAL_BENCH_OPTIONS = ("engine", "device", "precision", "threads", "streams", "target", "presets", "data", "runs", "warmup",
                       "ort_provider", "channels_last", "compile_", "cuda_graphs", "no_data_transfers", "out", "csv_path",
                       "md_path", "input_size", "mean", "std", "data_limit", "profile")
SERVER_BENCH_OPTIONS = ("concurrency", "max_latency", "instances", "queue_delay")


def server_bench_request(models: tuple[str, ...], o: dict) -> tuple[str, str, ServerBenchConfig] | None:
    """``bench --server URL --model NAME``'s options as (url, model, config); None for a benchmark of MODELS. An option of
    the other kind of benchmark is refused, never ignored."""
    if not o["server"]:
        if o["server_model"] or not models:
            raise DeployKitError("give MODELS to benchmark, or --server URL --model NAME to measure load on a Triton server")
        if given(*SERVER_BENCH_OPTIONS):
            raise DeployKitError(f"{_they(given(*SERVER_BENCH_OPTIONS), 'measures', 'measure')} a Triton server: add --server URL "
                                 "--model NAME, or drop them")
        if o["engine"] == "auto" and given("precision"):
            raise DeployKitError("--engine auto runs the precision the export measured fastest: drop --precision, or name an engine")
        if given("runs") and given("duration"):
            raise DeployKitError("--runs and --duration both say how long to time each batch size: give one of them")
        if given("data_limit") and not o["data"]:
            raise DeployKitError("--data-limit applies to the images of --data: add --data FOLDER, or drop it")
        return None
    if models or not o["server_model"]:
        raise DeployKitError("--server measures one served model: give --model NAME and no MODELS")
    if given(*LOCAL_BENCH_OPTIONS):
        raise DeployKitError(f"{_they(given(*LOCAL_BENCH_OPTIONS), 'does', 'do')} not apply with --server (the server runs the "
                             "model as its repository says): drop them")
    batches = o["batches"] or (1,)
    if len(batches) > 1:
        raise DeployKitError("with --server, --batch is the batch of each request: give one number")
    config = ServerBenchConfig(concurrency=o["concurrency"], max_latency_ms=o["max_latency"], duration_s=o["duration"],
                               batch_size=batches[0], instances=o["instances"] or (), queue_delays_us=o["queue_delay"] or ())
    return o["server"], o["server_model"], config


ALL_FILES_OPTIONS = ("data", "data_limit", "batches", "threads", "json_path")  # what --all takes


def all_files_request(models: tuple[str, ...], o: dict) -> tuple[str, BenchConfig]:
    """``bench FOLDER --all``: the folder and the options it takes; any other option is refused, never ignored."""
    others = [name for name in dict.fromkeys((*LOCAL_BENCH_OPTIONS, *SERVER_BENCH_OPTIONS, "server", "server_model", "duration"))
              if name not in ALL_FILES_OPTIONS]
    if given(*others):
        raise DeployKitError(f"{_they(given(*others), 'does', 'do')} not apply with --all, which times every file on every "
                             "runtime in interleaved rounds: drop them")
    if len(models) != 1:
        raise DeployKitError("--all benches one export folder: give exactly one")
    return models[0], BenchConfig(batches=o["batches"] or (), threads=o["threads"], data=o["data"], data_limit=o["data_limit"])


def bench_config(o: dict) -> BenchConfig:
    """``deploykit bench``'s options, over the preset's (``--target``), over the defaults."""
    from deploykit.bench.presets import get_preset

    runs, seconds = o["warmup"]
    return BenchConfig.with_preset(
        get_preset(o["target"], o["presets"]) if o["target"] else None, engine=o["engine"], device=o["device"],
        precision=o["precision"], batches=o["batches"], threads=o["threads"], runs=o["runs"], warmup=runs, warmup_seconds=seconds,
        data=o["data"], out=o["out"], ort_provider=o["ort_provider"], channels_last=o["channels_last"], compile=o["compile_"],
        cuda_graphs=o["cuda_graphs"], no_data_transfers=o["no_data_transfers"], input_size=o["input_size"], mean=tuple(o["mean"]),
        std=tuple(o["std"]), streams=o["streams"], data_limit=o["data_limit"], profile=o["profile"], duration_s=o["duration"] if given("duration") else None)
