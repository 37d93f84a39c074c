"""Peak memory and throughput of `deploykit train` on image folders of 2,000 and 20,000 images.

Training streams from the folder (DataLoader workers, DistributedSampler), so peak memory must not
grow with the dataset: the 20,000-image run's peak over the 2,000-image run's must stay under 1.2.
Each run is the real CLI in its own process; the memory figure is the peak, sampled every 50 ms, of
the proportional set size (PSS: shared pages split between the processes that map them) summed over
the process and its DataLoader workers, so forked workers are not counted twice. Images are
generated 32x32 PNGs in 10 class folders; the model is cifar_resnet20 at 32x32, one epoch.

    python benchmarks/train_memory.py [--sizes 2000 20000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from deploykit.bench.machine import machine_info

RESULTS = Path(__file__).with_name("results")


def make_folder(folder: Path, count: int, classes: int = 10, size: int = 32) -> None:
    rng = np.random.default_rng(count)
    for label in range(classes):
        (folder / f"class{label:02d}").mkdir(parents=True)
    for i in range(count):
        label = i % classes
        pixels = np.clip(rng.normal(25 * label, 40, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"class{label:02d}" / f"{i:06d}.png")


def tree_pss_kib(pid: int) -> int:
    """PSS of ``pid`` and all its descendants, in KiB (0 for processes that ended meanwhile)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            total += next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total


def run(folder: Path, out: Path, workers: int) -> dict:
    command = [sys.executable, "-m", "deploykit", "train", "cifar_resnet20", "--data", str(folder), "--epochs", "1", "--input-size", "32", "--workers", str(workers), "--out", str(out)]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_pss_kib(proc.pid))
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    epoch = json.loads((out / "history.json").read_text())["history"][0]
    return {
        "peak_pss_mib": round(peak / 1024, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "epoch_s": epoch["seconds"],
        "images_per_second": epoch["images_per_second"],
        "command": " ".join(command[1:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="deploykit-train-memory-") as work:
        for count in args.sizes:
            folder = Path(work) / f"images-{count}"
            make_folder(folder, count)
            rows[count] = {"images": count, **run(folder, Path(work) / f"out-{count}", args.workers)}
            print(json.dumps(rows[count]), flush=True)
    smallest, largest = rows[min(rows)], rows[max(rows)]
    ratio = largest["peak_pss_mib"] / smallest["peak_pss_mib"]
    result = {
        "machine": machine_info().as_dict(),
        "command": "python benchmarks/train_memory.py " + " ".join(sys.argv[1:]),
        "runs": list(rows.values()),
        "peak_ratio": round(ratio, 3),
        "target": "peak ratio < 1.2",
        "met": ratio < 1.2,
    }
    (RESULTS / "train_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# `deploykit train` memory against dataset size",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {result['machine'].get('cpu')}, {result['machine'].get('cores')} cores; torch {result['machine']['versions'].get('torch')}",
        "",
        "| images | peak PSS (MiB, process + workers) | epoch (s) | images/s | wall (s) |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['images']:,} | {r['peak_pss_mib']} | {r['epoch_s']} | {r['images_per_second']} | {r['wall_s']} |" for r in rows.values()]
    lines += ["", f"Peak ratio {max(rows):,} / {min(rows):,} images: **{ratio:.3f}** (target < 1.2: {'met' if result['met'] else 'not met'})."]
    (RESULTS / "train_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
