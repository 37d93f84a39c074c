"""Distributed training set-up under ``torchrun``: rank, world and device, one GPU per process, and BatchNorm statistics
shared from rank 0; the CPU's (single-process) answers otherwise."""

from __future__ import annotations

import os

import torch
from torch import nn


def sync_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's BatchNorm statistics: DDP syncs gradients, but each rank's last
    forward pass updated its running statistics on its own shard."""
    for buffer in model.buffers():
        torch.distributed.broadcast(buffer, src=0)


def init_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device): from torchrun's environment, initialising the process group; (0, 1, ...) otherwise.

    Each process takes the GPU of its LOCAL_RANK when there are GPUs, the CPU otherwise.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world == 1:
        return 0, 1, device
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    return torch.distributed.get_rank(), world, device


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last on CUDA (tensor cores want NHWC), the default layout on the CPU."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format
