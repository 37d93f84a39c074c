"""Training checkpoints: written atomically by rank 0 after every epoch, and read back (by rank 0, sent to every rank)
when the same run is started again; the student's final weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from deploykit.compress.configs import DistillConfig
from deploykit.errors import DeployKitError, first_line
from deploykit.io import atomic_save_torch
from deploykit.models.pruned import pruned_state


def save_checkpoint(path: Path, student, optimizer, schedule, scaler, epoch: int, history: list, config: DistillConfig, source: dict) -> None:
    atomic_save_torch(
        path,
        {
            "student": student.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch,
            "history": history,
            "config": asdict(config),
            "source": source,
        },
    )


@dataclass(frozen=True)
class ResumePoint:
    """What an interrupted run saved after its last epoch: each part's state, and the epochs it recorded."""

    student: dict
    optimizer: dict
    schedule: dict
    scaler: dict
    history: list[dict]

    def restore(self, student, optimizer, schedule, scaler) -> None:
        student.load_state_dict(self.student)
        optimizer.load_state_dict(self.optimizer)
        schedule.load_state_dict(self.schedule)
        scaler.load_state_dict(self.scaler)


def resume_state(path: Path, config: DistillConfig, source: dict, rank: int, world: int) -> ResumePoint | None:
    """The checkpoint of this same run, read by rank 0 and sent to every rank (no shared disk needed); None to start."""
    state: dict | None = None
    error = None
    if rank == 0 and path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            same_run = state["config"] == asdict(config) and state["source"] == source
        except Exception as exc:  # truncated by a kill or a full disk: torch raises many types
            error = f"{path} is damaged ({first_line(exc)}); use --no-resume to start over"
        else:
            if not same_run:
                error = f"{path} was written by a different run (other options or student); use another --out, or --no-resume to start over"
    if world > 1:
        shared = [state, error]
        torch.distributed.broadcast_object_list(shared, src=0)
        state, error = shared
    if error:
        raise DeployKitError(error)
    return None if state is None else ResumePoint(state["student"], state["optimizer"], state["schedule"], state["scaler"], state["history"])


def save_student(path: Path, student: nn.Module, source: dict) -> None:
    """The weights as they are now, on the CPU: deploykit's pruned format for a pruned student (its widths kept), a plain
    state_dict otherwise."""
    if source.get("pruned"):
        state = pruned_state(student, source)
        state["state_dict"] = {key: tensor.cpu() for key, tensor in state["state_dict"].items()}
    else:
        state = {key: tensor.cpu() for key, tensor in student.state_dict().items()}
    atomic_save_torch(path, state)
