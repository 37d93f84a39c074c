"""The ``deploykit`` command line: parses options, calls the library, prints the result."""

from __future__ import annotations

import click
import torch
from rich.console import Console
from rich.table import Table

from deploykit.errors import DeployKitError
from deploykit.models import get_model, get_spec, list_models
from deploykit.profile import profile_model

console = Console()


class UserError(click.ClickException):
    """A DeployKitError as click shows it: ``Error: <message>`` on stderr, exit code 2."""

    exit_code = 2


class DeployKitGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DeployKitError as exc:
            raise UserError(str(exc)) from exc


@click.group(cls=DeployKitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deploykit")
def cli() -> None:
    """deploykit: take a CNN classifier from PyTorch to a fast, verified deployment artifact."""


def _meta_model(name: str, **kwargs):
    """Build a registry model on the meta device: shapes only, no memory, no initialisation cost."""
    with torch.device("meta"):
        return get_model(name, **kwargs)


@cli.command("list")
@click.argument("pattern", default="*")
def list_command(pattern: str) -> None:
    """List registered models matching PATTERN (shell-style, e.g. 'resnet*')."""
    names = list_models(pattern)
    if not names:
        raise DeployKitError(f"no model matches {pattern!r}; run `deploykit list` to see every model")
    table = Table(title=f"{len(names)} models", title_justify="left")
    for column, justify in [("name", "left"), ("family", "left"), ("params (eval)", "right"), ("GMACs", "right"), ("input", "right")]:
        table.add_column(column, justify=justify)
    with console.status("counting parameters and MACs..."):
        for name in names:
            spec = get_spec(name)
            profile = profile_model(_meta_model(name), (1, *spec.input_shape))
            table.add_row(name, spec.family, f"{profile.inference_params:,}", f"{profile.macs / 1e9:.2f}", f"{spec.input_size}x{spec.input_size}")
    console.print(table)


@cli.command("info")
@click.argument("name")
@click.option("--input-size", type=click.IntRange(min=1), help="Square input resolution (default: the model's own).")
def info_command(name: str, input_size: int | None) -> None:
    """Show a model's spec and a per-stage summary: output shape, params, MACs."""
    spec = get_spec(name)
    size = input_size or spec.input_size
    if size < spec.min_input_size:
        raise DeployKitError(f"{spec.name} needs inputs of at least {spec.min_input_size}x{spec.min_input_size}, got {size}")
    profile = profile_model(_meta_model(spec.name), (1, 3, size, size))
    console.print(f"[bold]{spec.name}[/bold] ({spec.family}): {spec.paper}")
    console.print(f"input 3x{size}x{size}, {spec.num_classes} classes, mean {spec.mean}, std {spec.std}")
    training_only = profile.params - profile.inference_params
    aux_note = f" (+{training_only:,} in training-only auxiliary heads)" if training_only else ""
    console.print(f"params {profile.inference_params:,}{aux_note}, MACs {profile.macs / 1e9:.3f} G, FLOPs {profile.flops / 1e9:.3f} G")
    if spec.reference:
        ref = spec.reference
        top1 = f", top-1 {ref.top1:.2f}%" if ref.top1 is not None else ""
        console.print(f"reference ({ref.source}): params {ref.params:,}, GMACs {ref.gmacs:.2f}{top1}")
    if spec.torchvision_compatible:
        console.print("state_dict matches torchvision's: its checkpoints load with strict=True")
    table = Table(title="stages", title_justify="left")
    for column, justify in [("stage", "left"), ("output", "left"), ("params", "right"), ("MMACs", "right")]:
        table.add_column(column, justify=justify)
    for stage in profile.stages:
        shape = "x".join(str(d) for d in stage.output_shape[1:]) if stage.output_shape else "-"
        table.add_row(stage.name, shape, f"{stage.params:,}", f"{stage.macs / 1e6:.1f}")
    console.print(table)


def main() -> None:
    cli(prog_name="deploykit")
