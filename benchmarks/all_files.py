"""`bench FOLDER --all` and `bench --profile` on the real MobileNet-v2, as a user runs them (the venv's deploykit by
absolute path, from another folder): export it with INT8, FP16 and a dynamic batch, then time and check every file on
every runtime here, with top-1 on the labelled photos, and time each layer of the INT8 file on onnxruntime and
OpenVINO. Writes results/all_files.md (each command and what it printed) and the JSON files beside it.

    python benchmarks/all_files.py --weights mobilenet_v2-b0353104.pth [--labelled ../shared/imagenet-sample]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from deploykit.bench.machine import machine_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--labelled", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "imagenet-sample")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    deploykit = Path(sys.executable).parent / "deploykit"
    out = args.out.resolve()
    sections = []
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "exports" / "mobilenet_v2"
        commands = [
            ["export", "mobilenet_v2", "--weights", str(args.weights.resolve()), "--int8", "--fp16", "--dynamic-batch", "--out", str(folder.parent)],
            ["bench", str(folder), "--all", "--data", str(args.labelled.resolve()), "--json", str(out / "all_files.json")],
            ["bench", str(folder), "--engine", "ort", "--precision", "int8", "--profile", "--runs", "20", "--json", str(out / "profile_ort_int8.json")],
            ["bench", str(folder), "--engine", "openvino", "--precision", "int8", "--profile", "--runs", "20", "--json", str(out / "profile_openvino_int8.json")],
        ]
        for command in commands:
            done = subprocess.run([str(deploykit), *command], capture_output=True, text=True, cwd=work, env={**os.environ, "COLUMNS": "200"})
            shown = " ".join(["deploykit", *command]).replace(work, "$WORK").replace(str(out), "benchmarks/results")
            sections.append(f"## `{shown}`\n\nexit code {done.returncode}\n\n```\n{done.stdout.strip()}\n```\n")
            print(shown, done.returncode, flush=True)
            if done.returncode != 0:
                sections.append(f"```\n{done.stderr.strip()[-3000:]}\n```\n")
                break
    machine = machine_info().as_dict()
    head = [
        "# bench --all and bench --profile on the real MobileNet-v2",
        "",
        f"Command: `python benchmarks/all_files.py {' '.join(sys.argv[1:])}`",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, flags {', '.join(machine['cpu_flags'])}; versions {json.dumps(machine['versions'])}; {machine['date']}.",
        "",
    ]
    (out / "all_files.md").write_text("\n".join(head) + "\n" + "\n".join(sections))


if __name__ == "__main__":
    main()
