"""Attacks on deploykit's newer surfaces, run as a user runs them: the venv's `deploykit` by absolute path, the venv not
activated (PATH without it, no VIRTUAL_ENV), from a folder that is not the project.

Each attack is a command, what a user should get, and what it got: an exit code and its last line of output. Most are
bad input, which must end in one `Error:` line with exit 2, nothing half-written; a few are good input that must work.
Everything runs on 127.0.0.1 and every command has a time limit. Writes results/attacks.{json,md}.

    python benchmarks/attacks.py [--cifar ../shared/cifar10/train]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
DEPLOYKIT = Path(sys.executable).parent / "deploykit"
ONE_ERROR_LINE = r"^Error: "


@dataclass
class Attack:
    surface: str
    command: str  # as a user would type it, with {work} for the scratch folder
    expected: str  # what a user should get, in words
    exit_code: int = 2
    pattern: str = ONE_ERROR_LINE  # must match the last line of output
    one_line: bool = True  # the output is that line alone (bad input)
    timeout: float = 300.0


@dataclass
class Outcome:
    surface: str
    command: str
    expected: str
    exit_code: int
    last_line: str
    lines: int
    held: bool
    seconds: float


def user_env(work: Path) -> dict[str, str]:
    """The environment of a service or a cron job: no venv on PATH, no VIRTUAL_ENV, no PYTHONPATH."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", "TMPDIR": str(work / "tmp")}
    return env


def run(command: str, work: Path, timeout: float) -> tuple[int, str, float]:
    argv = command.format(work=work, dk=DEPLOYKIT).split(" ")
    started = time.monotonic()
    try:
        done = subprocess.run(argv, cwd=work / "elsewhere", env=user_env(work), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        code, output = done.returncode, (done.stdout + done.stderr)
    except subprocess.TimeoutExpired as exc:
        code, output = -1, f"timed out after {timeout} s; {exc.output or ''}"
    return code, output, time.monotonic() - started


def judge(attack: Attack, work: Path) -> Outcome:
    code, output, seconds = run(attack.command, work, attack.timeout)
    lines = [line for line in output.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    held = code == attack.exit_code and re.search(attack.pattern, last) is not None and "Traceback" not in output
    if attack.one_line:
        held = held and len(lines) == 1
    return Outcome(
        attack.surface, attack.command.replace(str(DEPLOYKIT), "deploykit"), attack.expected, code, last.replace(str(work), "$WORK")[:240], len(lines), held, round(seconds, 1)
    )


class FakeTriton(BaseHTTPRequestHandler):
    """An HTTP server on 127.0.0.1 that answers every Triton route with a 404 or with what ``replies`` holds."""

    replies: dict[str, tuple[int, bytes]] = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        status, body = self.replies.get(self.path, (404, b'{"error": "not found"}'))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


def fake_triton() -> tuple[ThreadingHTTPServer, int]:
    FakeTriton.replies = {
        "/v2/health/ready": (200, b""),
        "/v2/models/weird/ready": (200, b""),
        "/v2/models/weird/config": (200, b'{"name": "weird", "input": [], "output": []}'),
        "/v2/models/weird": (200, b'{"name": "weird", "inputs": [], "outputs": []}'),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeTriton)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def set_up(work: Path, cifar: Path | None) -> None:
    """Exports, a repository and photo folders the attacks aim at."""
    (work / "elsewhere").mkdir()
    (work / "tmp").mkdir()
    steps = [
        "{dk} export cifar_resnet20 --input-size 32 --dynamic-batch --no-timing --out {work}/out",
        "{dk} export cifar_resnet20 --input-size 32 --no-timing --out {work}/fixed",
        "{dk} export cifar_resnet20 --input-size 32 --dynamic-batch --int8 --out {work}/timed",
        "{dk} triton {work}/repo {work}/out/cifar_resnet20 --device cpu",
    ]
    for step in steps:
        code, output, _ = run(step, work, 600)
        if code != 0:
            raise SystemExit(f"set-up failed: {step}\n{output}")
    (work / "empty").mkdir()
    (work / "a-file").write_text("not a folder\n")
    (work / "garbage.json").write_text("{not json")
    (work / "flat").mkdir()
    (work / "one-class" / "cat").mkdir(parents=True)
    (work / "bad-class" / "cat").mkdir(parents=True)
    (work / "bad-class" / "dog").mkdir(parents=True)
    if cifar is not None:
        for folder in sorted(p for p in cifar.iterdir() if p.is_dir()):
            photos = sorted(folder.iterdir())[:12]
            (work / "cifar" / folder.name).mkdir(parents=True)
            (work / "other" / f"x{folder.name}").mkdir(parents=True)
            for photo in photos:
                (work / "cifar" / folder.name / photo.name).symlink_to(photo)
                (work / "other" / f"x{folder.name}" / photo.name).symlink_to(photo)
            (work / "flat" / f"{folder.name}-{photos[0].name}").symlink_to(photos[0])
            (work / "one-class" / "cat" / f"{folder.name}-{photos[0].name}").symlink_to(photos[0])
        shutil.copy(photos[0], work / "bad-class" / "cat" / photos[0].name)
        (work / "bad-class" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    # a corrupt copy of the repository, and an export whose manifest claims runtimes it never timed
    shutil.copytree(work / "repo", work / "repo-corrupt")
    (next((work / "repo-corrupt").glob("*/1/model.onnx"))).write_bytes(b"garbage")
    shutil.copytree(work / "out" / "cifar_resnet20", work / "lying" / "cifar_resnet20")
    manifest = json.loads((work / "lying" / "cifar_resnet20" / "manifest.json").read_text())
    manifest["runtimes"] = {"rounds": 3, "batch": 1, "combinations": [{"runtime": "ort", "precision": "fp32", "file": "model.onnx", "p50_ms": float("nan"), "passed": True}]}
    (work / "lying" / "cifar_resnet20" / "manifest.json").write_text(json.dumps(manifest))
    (work / "bad-ckpt").mkdir()
    (work / "bad-ckpt" / "checkpoint.pth").write_bytes(b"not a checkpoint")


def attacks(fake_port: int, cifar: bool) -> list[Attack]:
    dk, out, fixed, repo = "{dk}", "{work}/out/cifar_resnet20", "{work}/fixed/cifar_resnet20", "{work}/repo"
    free = "http://127.0.0.1:9"  # discard: nothing listens on loopback there
    fake = f"http://127.0.0.1:{fake_port}"
    listed = [
        # triton
        Attack("triton", f"{dk} triton {{work}}/repo2 {{work}}/missing", "one line: the export folder does not exist"),
        Attack("triton", f"{dk} triton {{work}}/repo2 {{work}}/empty", "one line: not an export folder"),
        Attack("triton", f"{dk} triton {{work}}/a-file {out}", "one line: the repository is a file"),
        Attack("triton", f"{dk} triton /proc/deploykit-repo {out}", "one line: cannot write the repository"),
        Attack("triton", f"{dk} triton {{work}}/repo2 {out} --instances 0", "one line: instances out of range"),
        Attack("triton", f"{dk} triton {{work}}/repo2 {fixed}", "one line: a fixed batch, with the export that fixes it"),
        Attack("triton", f"{dk} triton {{work}}/repo2 {out} --bench-results {{work}}/missing.json", "one line: no such file"),
        Attack("triton", f"{dk} triton {{work}}/repo2 {out} --bench-results {{work}}/garbage.json", "one line: not bench JSON"),
        Attack("triton", f"{dk} triton {{work}}/repo2 {out} --backend tensorflow", "one line: invalid choice"),
        Attack("triton", f"{dk} triton {{work}}/repo3 {out} --device cpu", "writes the repository", 0, r"deploykit serve", False),
        Attack("triton", f"{dk} triton {{work}}/repo3 {out} --device cpu", "republishes in place", 0, r"deploykit serve", False),
        Attack("triton", f"{dk} triton {{work}}/repo2", "one line: no export folder given", 2, r"^Error: |Missing argument"),
        # serve (the real tritonserver where it starts)
        Attack("serve", f"{dk} serve {{work}}/missing", "one line: no such repository"),
        Attack("serve", f"{dk} serve {{work}}/a-file", "one line: not a folder"),
        Attack("serve", f"{dk} serve {{work}}/empty", "one line: no model in the repository"),
        Attack("serve", f"{dk} serve {repo} --http-port 0", "one line: port out of range"),
        Attack("serve", f"{dk} serve {repo} --http-port 70000", "one line: port out of range"),
        Attack("serve", f"{dk} serve {repo} --http-port 18931 --grpc-port 18931", "one line: the same port twice"),
        Attack("serve", f"{dk} serve {repo} --start-timeout 0", "one line: timeout out of range"),
        Attack("serve", f"{dk} serve {repo} --start-timeout nan", "one line: NaN refused"),
        Attack("serve", f"{dk} serve {{work}}/repo-corrupt --http-port 18932 --grpc-port 18933", "one line naming the model that failed"),
        # bench --server
        Attack("bench --server", f"{dk} bench --server {free} --model cifar_resnet20", "one line: nothing answers there"),
        Attack("bench --server", f"{dk} bench --server {fake}", "one line: --model is needed"),
        Attack("bench --server", f"{dk} bench --server {fake} --model nope", "one line: the server has no such model"),
        Attack("bench --server", f"{dk} bench --server {fake} --model weird", "one line: the config has no input"),
        Attack("bench --server", f"{dk} bench --server ftp://127.0.0.1:8000 --model m", "one line: not an http address"),
        Attack("bench --server", f"{dk} bench --server http://127.0.0.1:8000/v2 --model m", "one line: an address, not a path"),
        Attack("bench --server", f"{dk} bench --server {fake} --model weird --concurrency 0", "one line: concurrency below 1"),
        Attack("bench --server", f"{dk} bench --server {fake} --model weird --duration -1", "one line: duration out of range"),
        Attack("bench --server", f"{dk} bench --server {fake} --model weird --duration nan", "one line: NaN refused"),
        Attack("bench --server", f"{dk} bench --server {fake} --model weird --engine ort", "one line: a local option refused"),
        Attack("bench --server", f"{dk} bench {out} --concurrency 4", "one line: a server option without --server"),
        Attack("bench --server", f"{dk} bench --server {fake} --model weird --max-latency -5", "one line: out of range"),
        # --engine auto
        Attack("--engine auto", f"{dk} bench {out} --engine auto --precision int8", "one line: --precision cannot apply"),
        Attack("--engine auto", f"{dk} bench {{work}}/lying/cifar_resnet20 --engine auto", "one line naming the bad field"),
        Attack("--engine auto", f"{dk} bench {out} --engine auto --runs 3", "one line: the export timed nothing, and how to time it"),
        Attack("--engine auto", f"{dk} bench {{work}}/timed/cifar_resnet20 --engine auto --runs 3", "runs the export's fastest file", 0, r".", False),
        Attack("--engine auto", f"{dk} bench {{work}}/missing --engine auto", "one line: no such model or folder"),
        Attack("--engine auto", f"{dk} bench cifar_resnet20 --engine auto", "one line: auto needs an export folder"),
        # --streams
        Attack("--streams", f"{dk} bench {out} --engine ort --streams 0", "one line: streams below 1"),
        Attack("--streams", f"{dk} bench {out} --engine ort --streams -1", "one line: streams below 1"),
        Attack("--streams", f"{dk} bench {out} --engine torch --streams 2", "one line: streams are for ort/openvino"),
        Attack("--streams", f"{dk} bench {out} --engine ort --streams 100000", "one line: streams bounded"),
        Attack("--streams", f"{dk} bench {out} --engine openvino --streams 2 --runs 5", "times 2 streams", 0, r".", False),
        Attack("--streams", f"{dk} bench {out} --engine ort --streams 2 --runs 5", "times 2 streams", 0, r".", False),
        # the openvino layout and the CPU target
        Attack("int8 layout", f"{dk} export cifar_resnet20 --int8-layout openvino --out {{work}}/x1", "one line: add --int8"),
        Attack("int8 layout", f"{dk} export cifar_resnet20 --int8 --int8-layout avx9 --out {{work}}/x2", "one line: invalid choice"),
        Attack(
            "int8 layout", f"{dk} export cifar_resnet20 --int8 --int8-layout openvino --calib {{work}}/missing --out {{work}}/x3", "one line: no calibration folder, before the export"
        ),
        Attack("int8 layout", f"{dk} export cifar_resnet20 --int8 --int8-layout openvino --cpu vnni --out {{work}}/x4", "one line: --cpu is for the cpu layout"),
        Attack("int8 layout", f"{dk} export cifar_resnet20 --cpu avx2 --out {{work}}/x5", "one line: --cpu needs --int8"),
        Attack("int8 layout", f"{dk} export cifar_resnet20 --weight-rounding gptq --out {{work}}/x6", "one line: needs --int8"),
        Attack("int8 layout", f"{dk} export cifar_resnet20 --int8 --calib-size 0 --out {{work}}/x7", "one line: out of range"),
        Attack("int8 layout", f"{dk} export cifar_resnet20 --int8 --calib {{work}}/empty --out {{work}}/x8", "one line: no images in the calibration folder"),
    ]
    if cifar:
        data, flat = "{work}/cifar", "{work}/flat"
        listed += [
            Attack("train", f"{dk} train cifar_resnet20 --data {{work}}/missing --out {{work}}/t1", "one line: the folder does not exist"),
            Attack("train", f"{dk} train cifar_resnet20 --data {{work}}/one-class --out {{work}}/t2", "one line: one class is not a task"),
            Attack("train", f"{dk} train cifar_resnet20 --data {data} --epochs 0 --out {{work}}/t3", "one line: epochs below 1"),
            Attack("train", f"{dk} train cifar_resnet20 --data {data} --lr nan --out {{work}}/t4", "one line: NaN refused"),
            Attack("train", f"{dk} train cifar_resnet20 --data {data} --lr -1 --out {{work}}/t5", "one line: out of range"),
            Attack("train", f"{dk} train cifar_resnet20 --data {data} --batch-size 0 --out {{work}}/t6", "one line: out of range"),
            Attack("train", f"{dk} train cifar_resnet20 --data {data} --limit 0 --out {{work}}/t7", "one line: out of range"),
            Attack("train", f"{dk} train cifar_resnet20 --data {data} --input-size 0 --out {{work}}/t8", "one line: size out of range"),
            Attack("train", f"{dk} train cifar_resnet20 --data {data} --val {{work}}/missing --out {{work}}/t9", "one line: no val folder"),
            Attack("train", f"{dk} train cifar_resnet20 --data {data} --val {{work}}/other --out {{work}}/t10", "one line: the val classes are not the data's"),
            Attack("train", f"{dk} train cifar_resnet20 --data {data} --epochs 1 --warmup-epochs 2 --out {{work}}/t11", "one line: warm-up longer than training"),
            Attack("train", f"{dk} train cifar_resnet20 --data {data} --out {{work}}/a-file", "one line: the output is a file"),
            Attack("train", f"{dk} train cifar_resnet20 --data {data} --resume --out {{work}}/bad-ckpt --epochs 1", "one line: the checkpoint is unreadable"),
            Attack("train", f"{dk} train cifar_resnet20 --data {{work}}/bad-class --epochs 1 --out {{work}}/t12", "one line naming the broken photo"),
            Attack("train", f"{dk} train cifar_resnet20 --data {data} --label-smoothing 1 --out {{work}}/t13", "one line: out of range"),
            Attack("train", f"{dk} train cifar_resnet2O --data {data} --out {{work}}/t14", "one line with a close match", 2, r"^Error: .*cifar_resnet20"),
            Attack("train", f"{dk} train cifar_resnet20 --data {data} --epochs 1 --input-size 32 --out {{work}}/trained", "trains one epoch on 120 photos", 0, r".", False, 900),
            Attack("distill", f"{dk} distill --teacher {{work}}/missing --student cifar_resnet20 --data {data} --out {{work}}/d1", "one line: no teacher"),
            Attack("distill", f"{dk} distill --teacher {{work}}/trained --student cifar_resnet20 --data {data} --temperature 0 --out {{work}}/d2", "one line: temperature out of range"),
            Attack("distill", f"{dk} distill --teacher {{work}}/trained --student cifar_resnet20 --data {data} --alpha 2 --out {{work}}/d3", "one line: alpha out of range"),
            Attack("distill", f"{dk} distill --teacher {{work}}/trained --student resnet99 --data {data} --out {{work}}/d4", "one line: unknown student with close matches"),
            Attack("distill", f"{dk} distill --teacher {{work}}/trained --student cifar_resnet20 --data {data} --temperature inf --out {{work}}/d5", "one line: inf refused"),
            Attack(
                "distill",
                f"{dk} distill --teacher {{work}}/trained --student cifar_resnet20 --data {{work}}/other --epochs 1 --out {{work}}/d6",
                "one line: the folders are not the teacher's classes",
            ),
            Attack(
                "distill",
                f"{dk} distill --teacher {{work}}/trained --student cifar_resnet20 --data {flat} --epochs 1 --input-size 32 --out {{work}}/d7",
                "label-free distillation on a flat folder",
                0,
                r".",
                False,
                900,
            ),
            Attack("prune", f"{dk} prune cifar_resnet20 --ratio 1.5 --out {{work}}/p1", "one line: ratio out of range"),
            Attack("prune", f"{dk} prune cifar_resnet20 --ratio 0 --out {{work}}/p2", "one line: ratio out of range"),
            Attack("prune", f"{dk} prune cifar_resnet20 --ratio nan --out {{work}}/p3", "one line: NaN refused"),
            Attack("prune", f"{dk} prune cifar_resnet20 --target-macs -5 --out {{work}}/p4", "one line: out of range"),
            Attack("prune", f"{dk} prune cifar_resnet20 --target-macs 1e12 --input-size 32 --out {{work}}/p5", "one line: nothing to prune, no folder"),
            Attack("prune", f"{dk} prune cifar_resnet20 --ratio 0.3 --target-macs 1e6 --out {{work}}/p6", "one line: one or the other"),
            Attack("prune", f"{dk} prune cifar_resnet20 --ratio 0.3 --data {flat} --held-out --out {{work}}/p7", "one line: --held-out needs class folders"),
            Attack("prune", f"{dk} prune cifar_resnet20 --ratio 0.3 --data {{work}}/missing --out {{work}}/p8", "one line: no data"),
            Attack("prune", f"{dk} prune cifar_resnet20 --ratio 0.3 --round-to 0 --out {{work}}/p9", "one line: out of range"),
            Attack("prune", f"{dk} prune cifar_resnet20 --ratio 0.3 --max-drop nan --out {{work}}/p10", "one line: NaN refused"),
            Attack(
                "prune",
                f"{dk} prune {{work}}/trained --ratio 0.3 --data {data} --held-out --no-timing --input-size 32 --out {{work}}/pruned",
                "prunes the trained folder and judges it on held-out photos",
                0,
                r".",
                False,
                900,
            ),
        ]
    return listed


def markdown(outcomes: list[Outcome], meta: dict) -> str:
    held = sum(o.held for o in outcomes)
    lines = [
        f"# Attacks on the newer surfaces: {held} of {len(outcomes)} held",
        "",
        f"Run {meta['when']} on {meta['cpu']}; command: `{meta['command']}`. `deploykit` is the venv's by absolute path, not activated, run from another folder.",
        "",
        "| # | surface | command | expected | exit | last line | held |",
        "|---|---|---|---|---|---|---|",
    ]
    for index, o in enumerate(outcomes, 1):
        last = o.last_line.replace("|", "\\|")
        lines.append(f"| {index} | {o.surface} | `{o.command}` | {o.expected} | {o.exit_code} | {last} | {'yes' if o.held else '**no**'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "cifar10" / "train")
    parser.add_argument("--only", help="run the attacks whose command contains this text")
    args = parser.parse_args()
    from deploykit.bench.machine import machine_info

    cifar = args.cifar if args.cifar.is_dir() else None
    server, port = fake_triton()
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="deploykit-attacks-") as scratch:
        work = Path(scratch)
        set_up(work, cifar)
        for attack in attacks(port, cifar is not None):
            if args.only and args.only not in attack.command:
                continue
            outcome = judge(attack, work)
            outcomes.append(outcome)
            print(f"{'held' if outcome.held else 'FAILED':6} {outcome.exit_code:3} {outcome.seconds:6.1f}s  {outcome.command[:90]}\n       {outcome.last_line[:160]}", flush=True)
        leftovers = sorted(p.name for p in (work / "tmp").iterdir())
    server.shutdown()
    info = machine_info().as_dict()
    meta = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": info.get("cpu", "?"), "command": "python benchmarks/attacks.py", "leftover_temp_files": leftovers}
    if not args.only:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "attacks.json").write_text(json.dumps({"meta": meta, "machine": info, "attacks": [asdict(o) for o in outcomes]}, indent=2) + "\n")
        (RESULTS / "attacks.md").write_text(markdown(outcomes, meta) + f"\nLeft in the temp folder: {leftovers or 'nothing'}\n")
    print(f"{sum(o.held for o in outcomes)} of {len(outcomes)} held; left in the temp folder: {leftovers or 'nothing'}")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
