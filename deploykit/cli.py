"""The ``deploykit`` command line: each command parses its options, calls one recipe and renders its typed result.

Only light modules at the top: every command imports its recipe (and so torch, onnx, onnxruntime) itself,
so `deploykit --help` and `deploykit list` start at once. Options are declared in cli_options.py,
results are printed by cli_render.py.
"""

from __future__ import annotations

import errno
from pathlib import Path

import click

from deploykit import cli_render as render
from deploykit import cli_render_bench as render_bench
from deploykit.bench.presets import ENGINES, PRECISIONS
from deploykit.choices import MAX_WORKERS, PRUNE_METHODS
from deploykit.cli_options import (OUT_OPTION, bench_config, bench_options, export_options, export_request, foreign_onnx_options,
                                   all_files_request, server_bench_request, tolerance_options, training_config, training_options, triton_options)
from deploykit.cli_types import FiniteFloatRange, input_size_option
from deploykit.compress.configs import DistillConfig, PruneConfig
from deploykit.data import DEFAULT_CALIBRATION_DIR
from deploykit.errors import DeployKitError
from deploykit.export.engine_config import EngineConfig
from deploykit.io import atomic_write_json, check_writable_file
from deploykit.parity import Tolerances
from deploykit.progress import live, stage
from deploykit.serve.server import START_TIMEOUT_S, Ports
from deploykit.recipes.configs import CompareConfig, EvalConfig, PruneCheck, ResultFiles, TritonConfig


class UserError(click.ClickException):
    """A DeployKitError as click shows it: ``Error: <message>`` on stderr, exit code 2."""

    exit_code = 2


class DeployKitGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DeployKitError as exc:
            raise UserError(str(exc)) from exc
        except click.UsageError as exc:  # a bad option value, a missing argument: one line, not click's four
            command = exc.ctx.info_name if exc.ctx is not None and exc.ctx.parent is not None else None
            where = f"deploykit {command}" if command else "deploykit"
            raise UserError(f"{exc.format_message().rstrip('.')} (see '{where} --help')") from exc
        except KeyboardInterrupt as exc:
            _interrupted(exc)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # staged writes leave the previous artifacts intact
                raise UserError(f"the disk is full ({exc.filename or 'writing output'}); nothing was published: free space "
                                "or choose another --out") from exc
            raise


@click.group(cls=DeployKitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deploykit")
def cli() -> None:
    """deploykit: take a CNN classifier from PyTorch to a fast, verified deployment artifact."""


@cli.command("list")
@click.argument("pattern", default="*")
def list_command(pattern: str) -> None:
    """List registered models matching PATTERN (shell-style, e.g. 'resnet*')."""
    from deploykit.recipes.info import list_catalog

    render.catalog(list_catalog(pattern))


@cli.command("info")
@click.argument("name")
@input_size_option()
def info_command(name: str, input_size: int | None) -> None:
    """Show a model's spec and a per-stage summary: output shape, params, MACs."""
    from deploykit.recipes.info import model_info

    render.model_info(model_info(name, input_size))


@cli.command("export")
@export_options
def export_command(**options) -> None:
    """Export NAME to ONNX (and INT8), verify it, and write OUT/NAME/model.onnx + manifest.json.

    NAME is a registry name, NAME:CHECKPOINT, NAME:IMAGENET1K_V1 or a pruned folder; or an ONNX file of your own,
    taken as it is, whose FP16 (--fp16) and INT8 (--int8) files are made with the same checks, into OUT/FILE-STEM/. With
    --prune/--distill-from/--data the model is first pruned and distilled, each stage recorded in the manifest.
    With --int8 --qat, --data is the QAT images (and fine-tunes only after --prune or --distill-from).
    """
    from deploykit.recipes.compress import compress_and_export

    config, compression = export_request(options)
    with live(), stage(f"export {config.name or config.module}"):
        result = compress_and_export(config, compression)
    render.export_result(result)
    if result.chain is not None and result.chain.failures():
        raise SystemExit(1)


@cli.command("compare")
@click.argument("a")
@click.argument("b")
@input_size_option("Input size: N (square) or H W; default: from the model or manifest.")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_CALIBRATION_DIR,
              show_default="bundled photos", help="Folder of real images added to the random inputs.")
@click.option("--no-images", is_flag=True, help="Compare on fixed-seed random inputs only.")
@click.option("--per-layer", is_flag=True, help="Also compare every layer's output and name the first that diverges.")
@click.option("--layer-tolerance", type=FiniteFloatRange(min=0), default=CompareConfig.layer_tolerance, show_default=True,
              help="Per-layer limit: max abs error over the layer's max abs activation.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the report as JSON.")
@tolerance_options
def compare_command(a: str, b: str, input_size: int | None, images: Path, no_images: bool, per_layer: bool,
                    layer_tolerance: float, json_path: Path | None, rel_error: float, min_cosine: float, min_top1: float) -> None:
    """Compare outputs of A and B (a model name, NAME:CHECKPOINT, NAME:TAG, an .onnx file or an export folder).

    Exits with code 1 when parity fails.
    """
    from deploykit.recipes.compare import compare

    check_writable_file(json_path)
    config = CompareConfig(input_size=input_size, images=None if no_images else images, per_layer=per_layer,
                           layer_tolerance=layer_tolerance, tolerances=Tolerances(rel_error, min_cosine, min_top1))
    result = compare(a, b, config)
    render.comparison(a, b, result, layer_tolerance)
    if json_path:
        atomic_write_json(json_path, result.as_dict())
    if not result.passed:
        raise SystemExit(1)


@cli.command("bench")
@bench_options
def bench_command(models: tuple[str, ...], json_path: Path | None, csv_path: Path | None, md_path: Path | None, **options) -> None:
    """Measure latency (p50/p90/p99), throughput, memory and accuracy of MODELS on one backend.

    MODELS are model references: NAME, NAME:CHECKPOINT, NAME:TAG, export folders, or any ONNX classifier file.
    With --server URL --model NAME instead: throughput and latency of a Triton server under concurrent clients.
    """
    from deploykit.runtime.availability import require_backend

    if options.pop("all_files"):
        from deploykit.recipes.bench_all import bench_all

        render_bench.all_files(bench_all(*all_files_request(models, options), json_path))
        return
    server = server_bench_request(models, options)
    if server:
        from deploykit.recipes.serve import measure_server

        render.load_run(measure_server(*server, json_path))
        return
    config, files = bench_config(options), ResultFiles(json_path, csv_path, md_path)
    files.check_writable()
    require_backend(config.engine, config.device, config.ort_provider)  # one line within a second, before anything heavy

    from deploykit.recipes.bench_results import run_benchmarks

    render_bench.bench_run(run_benchmarks(list(models), config, files))


@cli.command("eval")
@click.argument("model")
@click.option("--data", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Labelled folder: one subfolder per class (ImageNet synsets n01440764..., class indices, or names); or "
              "'digits' (scikit-learn's digits, their test split).")
@click.option("--engine", type=click.Choice([e for e in ENGINES if e != "auto"]), default=EvalConfig.engine, show_default=True,
              help="Backend to evaluate on.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=EvalConfig.precision, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 1024), default=EvalConfig.batch_size, show_default=True)
@click.option("--workers", type=click.IntRange(0, MAX_WORKERS), default=EvalConfig.workers, show_default=True,
              help="DataLoader worker processes.")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate on this many images, spread over the folder (default: all).")
@click.option("--held-out", is_flag=True, help="Only the last tenth of each class folder: the photos train and distill hold "
              "out of --data when given no --val.")
@click.option("--out", **OUT_OPTION, help="Where models given by name are exported.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the result as JSON.")
@foreign_onnx_options
def eval_command(model, data, engine, precision, batch_size, workers, limit, held_out, out, json_path, input_size, mean, std) -> None:
    """Top-1/top-5 of MODEL (any model reference, or any ONNX classifier) on a labelled folder, streamed."""
    from deploykit.runtime.availability import require_backend

    check_writable_file(json_path)
    require_backend(engine)  # before anything heavy is imported or run

    from deploykit.recipes.eval import evaluate

    config = EvalConfig(data=data, engine=engine, precision=precision, batch_size=batch_size, workers=workers, limit=limit,
                        held_out=held_out, input_size=input_size, mean=tuple(mean), std=tuple(std), out=out)
    with live():
        result = evaluate(model, config)
    render.evaluation(result, data)
    if json_path:
        atomic_write_json(json_path, result.as_dict())


@cli.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("deploykit-report"), show_default=True,
              help="Folder for report.md and pareto.png.")
def report_command(results: tuple[Path, ...], out: Path) -> None:
    """Merge benchmark JSON files into a Markdown table and an accuracy-vs-latency plot (Pareto front marked)."""
    from deploykit.recipes.report import make_report

    render.report(make_report(list(results), out))


@cli.command("triton")
@click.argument("repo", type=click.Path(file_okay=False, path_type=Path))
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@triton_options
def triton_command(repo, folders, backend, device, instances, no_dynamic_batching, bench_results) -> None:
    """Write export FOLDERS into the Triton model repository REPO: a model per verified file (config.pbtxt + 1/model.onnx)."""
    from deploykit.recipes.triton import write_triton_repository

    config = TritonConfig(repo, backend, device, instances, not no_dynamic_batching, tuple(bench_results))
    render.triton_repository(write_triton_repository(list(folders), config))


@cli.command("serve")
@click.argument("repo", type=click.Path(file_okay=False, path_type=Path))
@click.option("--http-port", type=click.IntRange(1, 65535), default=Ports.http, show_default=True)
@click.option("--grpc-port", type=click.IntRange(1, 65535), default=Ports.grpc, show_default=True)
@click.option("--start-timeout", type=FiniteFloatRange(1, 3600), default=START_TIMEOUT_S, show_default=True,
              help="Seconds to wait for every model to load.")
def serve_command(repo: Path, http_port: int, grpc_port: int, start_timeout: float) -> None:
    """Serve the Triton repository REPO on 127.0.0.1 with the tritonserver nvidia-pytriton bundles (CPU, Python backend) until Ctrl-C."""
    from deploykit.recipes.serve import serve_until_stopped

    serve_until_stopped(repo, Ports(http_port, grpc_port), start_timeout, render.serving)
    render.stopped()


@cli.command("build-engine")
@click.argument("onnx_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "engine_path", type=click.Path(dir_okay=False, path_type=Path), help="Engine file (default: beside the ONNX).")
@click.option("--fp16", is_flag=True, help="Allow FP16 kernels (TensorRT 10).")
@click.option("--min-batch", type=click.IntRange(min=1), default=EngineConfig.min_batch, show_default=True)
@click.option("--opt-batch", type=click.IntRange(min=1), default=EngineConfig.opt_batch, show_default=True)
@click.option("--max-batch", type=click.IntRange(min=1), default=EngineConfig.max_batch, show_default=True)
@click.option("--workspace-gb", type=click.FloatRange(min=0.1), default=EngineConfig.workspace_gb, show_default=True)
@click.option("--timing-cache", type=click.Path(dir_okay=False, path_type=Path), help="Timing cache to reuse and update.")
def build_engine_command(onnx_path, engine_path, fp16, min_batch, opt_batch, max_batch, workspace_gb, timing_cache) -> None:
    """Build a TensorRT engine from an ONNX file (Q/DQ INT8 files build INT8 engines)."""
    from deploykit.recipes.engine import build_engine_file

    config = EngineConfig(fp16, min_batch, opt_batch, max_batch, workspace_gb, timing_cache)
    render.engine(build_engine_file(onnx_path, engine_path, config))


@cli.command("prune")
@click.argument("name")
@click.option("--weights", help="Published weights (IMAGENET1K_V1, DEFAULT, ...) or a checkpoint to prune (default: seeded random init).")
@click.option("--ratio", type=float, help="Fraction of channels to remove in each coupled group, in (0, 1).")
@click.option("--target-macs", type=float, help="Prune until the model has at most this many GMACs.")
@click.option("--method", type=click.Choice(PRUNE_METHODS), default=PruneConfig.method, show_default=True, help="Channel importance.")
@click.option("--global", "global_pruning", is_flag=True, help="Rank channels across layers instead of per layer.")
@click.option("--round-to", type=click.IntRange(min=1), help="Keep channel counts multiples of this (e.g. 8 for tensor cores).")
@click.option("--data", help="Photos to judge the pruned model on (and rank channels by, for taylor): class subfolders give top-1 "
              "before and after, a flat folder top-1 agreement (default: the bundled held-out photos, agreement).")
@click.option("--held-out", is_flag=True, help="Judge on the last tenth of each class folder of --data only: the photos train "
              "held out of it.")
@click.option("--max-drop", type=FiniteFloatRange(min=0), default=PruneCheck.max_drop, show_default=True,
              help="Top-1 points (or percent of disagreement) beyond which the loss is called out.")
@click.option("--batch", "timing_batch", type=click.IntRange(1, 1024), default=PruneCheck.batch, show_default=True,
              help="The larger batch timed beside batch 1.")
@click.option("--no-timing", is_flag=True, help="Skip timing both models on onnxruntime and OpenVINO.")
@input_size_option()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("deploykit-out/pruned"), show_default=True)
def prune_command(name, weights, ratio, target_macs, method, global_pruning, round_to, data, held_out, max_drop, timing_batch,
                  no_timing, input_size, out) -> None:
    """Prune NAME's channels for real, export it with parity, and judge it against the unpruned model where it runs."""
    from deploykit.recipes.prune import prune_and_export

    config = PruneConfig(ratio=ratio, target_macs=target_macs * 1e9 if target_macs else None, method=method,
                         global_pruning=global_pruning, round_to=round_to)
    check = PruneCheck(data, timing_batch, max_drop, not no_timing, held_out)
    with live(), stage(f"pruning {name}"):
        report, result = prune_and_export(name, weights, config, out, input_size, check)
    render.pruning(report, result)


@cli.command("distill")
@click.option("--teacher", required=True, help="The trained teacher: a folder written by train, NAME:CHECKPOINT or NAME:IMAGENET1K_V1.")
@click.option("--student", required=True, help="NAME, NAME:CHECKPOINT or a folder written by `deploykit prune` or train.")
@click.option("--temperature", type=FiniteFloatRange(min=0, min_open=True), default=DistillConfig.temperature, show_default=True)
@click.option("--alpha", type=FiniteFloatRange(0, 1), default=DistillConfig.alpha, show_default=True,
              help="Weight of the soft (teacher) loss; unlabelled photos use the soft loss alone.")
@training_options
def distill_command(teacher, student, **options) -> None:
    """Distil a teacher into a student (Hinton KD) and write a folder that is a model reference. Under torchrun, DDP."""
    from deploykit.recipes.train import run_distill

    with live():
        render.training(run_distill(student, teacher, options["data"], training_config(options, teacher=True), options["out"],
                                    options["input_size"], options["resume"], render.epoch, options["workers"], options["val"],
                                    options["new_head"], options["limit"]))


@cli.command("train")
@click.argument("model")
@training_options
def train_command(model, **options) -> None:
    """Train or fine-tune MODEL on labelled data: a pretrained model gets a new classifier for the folder's classes."""
    from deploykit.recipes.train import run_distill

    with live():
        render.training(run_distill(model, None, options["data"], training_config(options, teacher=False), options["out"],
                                    options["input_size"], options["resume"], render.epoch, options["workers"], options["val"],
                                    options["new_head"], options["limit"]))


def main() -> None:
    from deploykit.processes import received_stop, stop_on_signals

    stop_on_signals()
    try:
        cli(prog_name="deploykit")
    except KeyboardInterrupt as exc:  # Ctrl-C during start-up, before a command runs
        _interrupted(exc)
    except SystemExit as exc:  # a stop that landed in a finalizer was swallowed there: the command still ends as stopped
        if not exc.code and (stop := received_stop()) is not None:
            _interrupted(stop)
        raise


def _interrupted(exc: KeyboardInterrupt) -> None:
    """Ctrl-C, SIGTERM or SIGHUP: one line and exit code 128 + the signal, as shells expect; staged output is never
    published half-written, and every child process has been stopped."""
    from deploykit.processes import Stopped

    signum = exc.signum if isinstance(exc, Stopped) else 2
    how = "interrupted" if signum == 2 else f"stopped by {exc}"
    click.echo(f"Error: {how}; nothing half-written was published", err=True)
    raise SystemExit(128 + signum)
