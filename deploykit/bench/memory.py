"""Memory: the process's peak resident memory over one measured stretch (not since the process started), and whether an
export's activations will fit before anything is allocated."""

from __future__ import annotations

import copy
import math
import resource
from pathlib import Path

from deploykit.errors import DeployKitError

_CGROUP = Path("/sys/fs/cgroup")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def reset_peak_rss() -> None:
    """Start a new peak: Linux resets VmHWM to the current RSS when 5 is written to clear_refs."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        pass  # not Linux: peak_rss_mb() falls back to the whole process's peak


def peak_rss_mb() -> float:
    """Peak RSS in MB since the last reset_peak_rss() (Linux), else since the process started."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def available_memory_mb() -> float | None:
    """MemAvailable from /proc/meminfo, or what this process's cgroup (v2) still allows where that is less; None where
    neither can be read (not Linux)."""
    figures = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                figures.append(int(line.split()[1]) / 1024)
    except OSError:
        pass
    try:
        limit = _CGROUP.joinpath("memory.max").read_text().strip()
        if limit.isdigit():
            figures.append((int(limit) - int(_CGROUP.joinpath("memory.current").read_text())) / 2**20)
    except (OSError, ValueError):
        pass
    return min(figures) if figures else None


def check_input_memory(shape: tuple[int, ...], what: str) -> None:
    """Refuse a float32 input array of ``shape`` that would take more than a quarter of the memory left, before it is made."""
    needed_mb, free_mb = 4 * math.prod(shape) / 2**20, available_memory_mb()
    if free_mb is not None and needed_mb > 0.25 * free_mb:
        raise DeployKitError(
            f"{what} of shape {list(shape)} needs {needed_mb / 1024:.1f} GB as float32, and {free_mb / 1024:.1f} GB "
            "of memory is free (a quarter of it at most is used for inputs); use a smaller batch or input size"
        )


def check_memory(model, input_shape: tuple[int, ...]) -> None:
    """Refuse an input size whose activations will not fit in memory, before anything is allocated.

    The estimate adds up every module's output on the meta device (no real memory), times the copies
    export and parity keep (the exporter's traced graph, PyTorch and onnxruntime runs).
    """
    import torch

    total = 0

    def count(module, args, output):
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    meta = copy.deepcopy(model).to("meta")
    hooks = [m.register_forward_hook(count) for m in meta.modules()]
    try:
        with torch.no_grad():
            meta(torch.empty(input_shape, device="meta"))
    except Exception:  # a model the meta device cannot run: no estimate, the export itself will tell
        return
    finally:
        for hook in hooks:
            hook.remove()
    needed_mb, free_mb = 3 * total / 2**20, available_memory_mb()
    if free_mb is not None and needed_mb > 0.8 * free_mb:
        raise DeployKitError(
            f"input {input_shape[-2]}x{input_shape[-1]} needs about {needed_mb / 1024:.1f} GB of activations to "
            f"export and check, but {free_mb / 1024:.1f} GB is free; use a smaller --input-size"
        )
