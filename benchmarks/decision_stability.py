"""Does export name the same runtime five times in a row? `deploykit export MODEL --weights W --int8` run N times
into one folder, as a user runs it (the venv's deploykit, by absolute path); each run's timings (p50 and the
rounds' range per combination) and its decision (the fastest beyond noise, or a tie and how it was settled) are
read from the manifest it published.

    python benchmarks/decision_stability.py --weights mobilenet_v2-b0353104.pth [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deploykit.bench.machine import machine_info
from deploykit.bench.runtimes import RuntimeTimings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    deploykit = Path(sys.executable).parent / "deploykit"
    runs = []
    with tempfile.TemporaryDirectory() as work:
        for index in range(args.runs):
            started = time.perf_counter()
            out = Path(work) / "out"
            command = [str(deploykit), "export", args.model, "--weights", str(args.weights.resolve()), "--int8", "--out", str(out)]
            done = subprocess.run(command, capture_output=True, text=True, cwd=work)  # from another folder, as a user would
            if done.returncode != 0:
                raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
            manifest = json.loads((out / args.model / "manifest.json").read_text())
            timings = RuntimeTimings.from_dict(manifest["runtimes"])
            decision = timings.decision
            runs.append(
                {
                    "run": index + 1,
                    "seconds": round(time.perf_counter() - started, 1),
                    "chosen": decision.chosen.name + f" ({decision.chosen.file})",
                    "tie": decision.tie,
                    "tied": [c.name for c in decision.tied],
                    "said": decision.describe(),
                    "combinations": {c.name: {"p50_ms": c.p50_ms, "rounds_ms": list(c.rounds_ms)} for c in timings.combinations},
                }
            )
            print(json.dumps(runs[-1]), flush=True)
    chosen = {run["chosen"] for run in runs}
    winners = {run["chosen"] for run in runs if not run["tie"]}  # the test: one winner named, else "tie"
    consistent = len(winners) <= 1 and all(not run["tie"] or not winners or any(w.startswith(name) for name in run["tied"] for w in winners) for run in runs)
    result = {
        "command": "python benchmarks/decision_stability.py " + " ".join(sys.argv[1:]),
        "machine": machine_info().as_dict(),
        "model": args.model,
        "weights": args.weights.name,
        "same_choice_every_run": len(chosen) == 1,
        "same_winner_or_a_tie_with_it": consistent,
        "runs": runs,
    }
    (args.out / "decision_stability.json").write_text(json.dumps(result, indent=1))
    names = list(runs[0]["combinations"])
    lines = [
        "# The runtime export chooses, five exports in a row",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, flags {', '.join(result['machine']['cpu_flags'])}; "
        f"each run `deploykit export {args.model} --weights {args.weights.name} --int8` into one folder, timed in its own "
        "process in 7 interleaved rounds; p50 ms [range of the rounds' p50s].",
        "",
        "| run | " + " | ".join(names) + " | decision |",
        "|---" * (len(names) + 2) + "|",
    ]
    for run in runs:
        cells = [f"{run['combinations'][n]['p50_ms']:.2f} [{min(run['combinations'][n]['rounds_ms']):.2f}-{max(run['combinations'][n]['rounds_ms']):.2f}]" for n in names]
        lines.append(f"| {run['run']} | " + " | ".join(cells) + f" | {'tie: ' + ', '.join(run['tied']) + '; chose ' if run['tie'] else ''}{run['chosen']} |")
    lines += [
        "",
        f"Every run named the same winner, or a tie that includes it: **{'yes' if consistent else 'no'}** (winners named: {', '.join(sorted(winners)) or 'none'}).",
        f"Same combination run by `bench --engine auto` after every export: **{'yes' if len(chosen) == 1 else 'no'}** "
        f"({', '.join(sorted(chosen))}): a tie is settled by accuracy loss, then the simpler runtime (onnxruntime).",
    ]
    (args.out / "decision_stability.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
