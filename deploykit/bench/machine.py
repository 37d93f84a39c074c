"""Facts about the machine a benchmark ran on, recorded next to every result."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import os
import platform
import shlex
import sys
from datetime import datetime, UTC
from pathlib import Path

from deploykit.manifest import package_versions


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU's feature flags (/proc/cpuinfo; empty where there is none)."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def has_vnni() -> bool:
    """Whether this CPU has VNNI int8 dot products (AVX512-VNNI or AVX-VNNI)."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni"})


def cpu_kind() -> str:
    """This CPU as an INT8 target: "vnni" where int8 dot products are exact in onnxruntime's kernels (VNNI, and CPUs that
    are not x86), "avx2" where its u8s8 kernels add pairs of products in saturating 16-bit lanes."""
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
    return "vnni" if has_vnni() or not x86 else "avx2"


@dataclass(frozen=True)
class MachineInfo:
    """The machine a figure was measured on, as result files record it."""

    cpu: str
    cores: int | None
    cpu_flags: list[str]
    torch_threads: int
    platform: str
    versions: dict[str, str]
    command: str
    date: str
    gpu: str | None = None

    def as_dict(self) -> dict:
        record = asdict(self)
        if record["gpu"] is None:
            del record["gpu"]
        return record


def machine_info() -> MachineInfo:
    """CPU, core count, OS, package versions, the command line and the time."""
    import torch

    return MachineInfo(
        cpu_model(),
        os.cpu_count(),
        sorted(cpu_flags() & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}),
        torch.get_num_threads(),
        platform.platform(),
        package_versions(),
        shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        datetime.now(UTC).isoformat(timespec="seconds"),
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    )
