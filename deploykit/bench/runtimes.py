"""Which CPU runtime runs an export fastest: every file it wrote, on onnxruntime and OpenVINO (and OpenVINO's bf16
where the CPU has it), timed in interleaved rounds of one run, so that the ratios hold on a busy machine.

Only a combination whose file passed its check may be chosen: FP32 passed parity, INT8 its accuracy gate,
FP16 its parity, and OpenVINO's bf16 the FP16 tolerances against FP32 on the parity inputs. A combination is
named fastest only when every other is slower beyond noise: the rounds are paired (each round times every
combination), and the lower sign-test bound of the median per-round ratio must exceed 1 + ``TIE_MARGIN``.
Otherwise it is a tie, settled by the smaller accuracy loss, then the simpler runtime. ``bench --engine auto``
reads the decision from the manifest.

Export times them in a process of its own (``python -m deploykit.bench.runtimes SPEC``): a runtime
that crashes there costs the timing, not the export, and PyTorch's threads stay out of the figures.
"""

from __future__ import annotations

from functools import partial
import json
import math
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import ClassVar
from pathlib import Path

import numpy as np

from deploykit.bench.latency import LatencyStats, measure_latency
from deploykit.bench.machine import cpu_flags
from deploykit.errors import DeployKitError, first_line
from deploykit.processes import dying_with_this_process, owned_temp_dir, remove_abandoned
from deploykit.choices import RUNTIME_NAMES
from deploykit.runtime import CPU_RUNTIMES, Runner, cpu_runner
from deploykit.runtime.availability import openvino_installed, openvino_problem

ROUNDS = 7
RUNS_PER_ROUND = 10
TIE_MARGIN = 0.05  # a winner is at least 5% faster, with confidence, than every other combination
CONFIDENCE = 0.9  # one-sided, of that bound
LOSS_ORDER = ("fp32", "fp16", "bf16", "int8")  # smaller accuracy loss first: how a tie is settled, then the runtime
ROUND_SECONDS = 1.0  # a combination's timed runs in one round stop after this, once MIN_RUNS are timed
MIN_RUNS = 3
# The runtime timed just before keeps its worker threads spinning for a while after its last call: on 2 cores that
# took OpenVINO INT8 MobileNet-v2 from 0.91 to 1.51 ms. A pause of 0.05 s before each combination gave the figures it
# has timed alone, in two runs of two (0.02 s did not, in one of them).
SETTLE_S = 0.05
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
PROCESS_TIMEOUT_S = 900
TIMED_PRECISIONS = ("fp32", "int8", "fp16", "bf16")
TIMING_PREFIX = "deploykit-timing-"


@dataclass(frozen=True)
class Combination:
    """One file on one runtime at one precision, its check's verdict and its batch latency (median of the rounds' p50)."""

    file: str
    runtime: str  # a key of CPU_RUNTIMES
    precision: str  # fp32, int8, fp16 or bf16 (OpenVINO's precision hint on the FP32 file)
    passed: bool
    p50_ms: float
    rounds_ms: tuple[float, ...] = ()  # each round's p50, in round order (absent in manifests before 0.9)

    @property
    def name(self) -> str:
        return f"{RUNTIME_NAMES[self.runtime]} {self.precision.upper()}"

    def spread(self) -> str:
        """p50 and the range of the rounds' p50s."""
        if not self.rounds_ms:
            return f"{self.p50_ms:.2f} ms"
        return f"{self.p50_ms:.2f} ms [rounds {min(self.rounds_ms):.2f}-{max(self.rounds_ms):.2f}]"

    @classmethod
    def from_rounds(cls, key: tuple[str, str, str], passed: bool, rounds: list[LatencyStats]) -> Combination:
        """(file, runtime, precision) timed in ``rounds``: the median of the rounds' p50, and each round's."""
        p50s = [stats.p50_ms for stats in rounds]
        return cls(*key, passed, round(float(np.median(p50s)), 3), tuple(round(v, 3) for v in p50s))

    def describe(self) -> str:
        return f"{self.name} ({self.file}, {self.spread()})"

    def paired(self, other: Combination) -> str:
        """This against ``other`` round by round, as the decisions read it: "1.39x its time, slower in 6 of 7 rounds"."""
        if not self.rounds_ms or len(self.rounds_ms) != len(other.rounds_ms):
            return f"{self.p50_ms / other.p50_ms:.2f}x its p50"
        ratios = [mine / theirs for mine, theirs in zip(self.rounds_ms, other.rounds_ms)]
        return f"{float(np.median(ratios)):.2f}x its time, slower in {sum(r > 1 for r in ratios)} of {len(ratios)} paired rounds"

    def slower_beyond_noise(self, other: Combination, margin: float = TIE_MARGIN) -> bool:
        """Whether this is slower than ``other`` by over ``margin`` with ``CONFIDENCE``: the sign-test lower bound of
        the median of the paired rounds' ratios. Without paired rounds (an older manifest), the medians alone."""
        if not self.rounds_ms or len(self.rounds_ms) != len(other.rounds_ms):
            return self.p50_ms > other.p50_ms * (1 + margin)
        ratios = sorted(mine / theirs for mine, theirs in zip(self.rounds_ms, other.rounds_ms))
        # the (j+1)-th smallest ratio is below the median with probability 1 - P(Binomial(n, 1/2) <= j)
        bounds = [j for j in range(len(ratios)) if _binomial_tail(len(ratios), j) <= 1 - CONFIDENCE]
        return bool(bounds) and ratios[bounds[-1]] > 1 + margin


def _binomial_tail(n: int, k: int) -> float:
    """P(Binomial(n, 1/2) <= k)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


@dataclass(frozen=True)
class Decision:
    """The combination ``bench --engine auto`` runs: the fastest beyond noise, or the best of those tied with it."""

    chosen: Combination
    tied: tuple[Combination, ...]  # every passed combination not slower beyond noise than the fastest, fastest first

    @property
    def tie(self) -> bool:
        return len(self.tied) > 1

    def describe(self) -> str:
        if not self.tie:
            return f"{self.chosen.describe()}, faster than every other beyond noise"
        return f"tie within noise of {', '.join(c.name for c in self.tied)}; chose {self.chosen.describe()}: the smallest accuracy loss, then the simpler runtime"


@dataclass(frozen=True)
class RuntimeTimings:
    """Every combination timed in one run, and what was not timed and why (the manifest's ``runtimes`` section)."""

    KEY: ClassVar[str] = "runtimes"

    batch: int
    rounds: int
    combinations: tuple[Combination, ...]
    not_timed: tuple[str, ...] = ()

    @property
    def decision(self) -> Decision | None:
        """The combination to run, of those that passed their check (module docstring); None when none did."""
        passed = sorted((c for c in self.combinations if c.passed), key=lambda c: c.p50_ms)
        if not passed:
            return None
        tied = tuple(c for c in passed if c is passed[0] or not c.slower_beyond_noise(passed[0]))
        chosen = min(tied, key=lambda c: (LOSS_ORDER.index(c.precision), list(CPU_RUNTIMES).index(c.runtime), c.p50_ms))
        return Decision(chosen, tied)

    def find(self, runtime: str, precision: str) -> Combination | None:
        return next((c for c in self.combinations if c.runtime == runtime and c.precision == precision), None)

    def slower_than_fp32(self, file: str, runtime: str) -> tuple[Combination, Combination] | None:
        """(``file`` on ``runtime``, the FP32 file there) where ``file`` ran slower beyond noise; None otherwise."""
        mine = next((c for c in self.combinations if (c.file, c.runtime) == (file, runtime) and c.precision != "bf16"), None)
        fp32 = self.find(runtime, "fp32")
        return (mine, fp32) if mine and fp32 and mine is not fp32 and mine.slower_beyond_noise(fp32, margin=0.0) else None

    def speedups(self, precision: str) -> dict[str, float]:
        """Per runtime: its FP32 latency over its ``precision`` latency (like with like)."""
        pairs = {runtime: (self.find(runtime, "fp32"), self.find(runtime, precision)) for runtime in CPU_RUNTIMES}
        return {runtime: fp32.p50_ms / other.p50_ms for runtime, (fp32, other) in pairs.items() if fp32 and other}

    def as_dict(self) -> dict:
        decision = self.decision
        return {
            "batch": self.batch,
            "rounds": self.rounds,
            "combinations": [asdict(c) for c in self.combinations],
            "chosen": asdict(decision.chosen) if decision else None,
            "tie": decision.tie if decision else False,
            "not_timed": list(self.not_timed),
        }

    @classmethod
    def from_dict(cls, data: object, where: str = "runtimes") -> RuntimeTimings:
        """Read back ``as_dict``'s record, every field checked: one line naming the first that is wrong."""

        def bad(field: str, value: object, wanted: str) -> DeployKitError:
            name = f"{where}.{field}" if field else where
            return DeployKitError(f"{name} is {value!r}, not {wanted}; it was edited or damaged: export the folder again")

        if not isinstance(data, dict):
            raise bad("", data, "a record")
        for key in ("batch", "rounds"):
            if type(data.get(key)) is not int or data[key] < 1:
                raise bad(key, data.get(key), "a positive whole number")
        records, not_timed = data.get("combinations"), data.get("not_timed", [])
        if not isinstance(records, list):
            raise bad("combinations", records, "a list")
        if not isinstance(not_timed, list) or not all(isinstance(line, str) for line in not_timed):
            raise bad("not_timed", not_timed, "a list of lines")
        combinations = []
        for index, record in enumerate(records):
            field = f"combinations[{index}]"
            if not isinstance(record, dict) or not set(Combination.__dataclass_fields__) - {"rounds_ms"} <= set(record) <= set(Combination.__dataclass_fields__):
                raise bad(field, record, f"a record of {', '.join(Combination.__dataclass_fields__)}")
            rounds_ms = record.get("rounds_ms", [])
            checks = {
                "file": (isinstance(record["file"], str) and bool(record["file"]), "a file name"),
                "runtime": (record["runtime"] in CPU_RUNTIMES, f"one of {', '.join(CPU_RUNTIMES)}"),
                "precision": (record["precision"] in TIMED_PRECISIONS, f"one of {', '.join(TIMED_PRECISIONS)}"),
                "passed": (isinstance(record["passed"], bool), "true or false"),
                "p50_ms": (type(record["p50_ms"]) in (int, float) and math.isfinite(record["p50_ms"]) and record["p50_ms"] > 0, "a positive number of milliseconds"),
                "rounds_ms": (
                    isinstance(rounds_ms, (list, tuple)) and all(type(v) in (int, float) and math.isfinite(v) and v > 0 for v in rounds_ms),
                    "a list of positive milliseconds",
                ),
            }
            for key, (ok, wanted) in checks.items():
                if not ok:
                    raise bad(f"{field}.{key}", record.get(key), wanted)
            combinations.append(Combination(**{**record, "rounds_ms": tuple(rounds_ms)}))
        return cls(data["batch"], data["rounds"], tuple(combinations), tuple(not_timed))


def time_runtimes(folder: Path, files: dict[str, tuple[str, bool]], shape: tuple[int, ...], bf16_passes=None) -> RuntimeTimings:
    """Time ``files`` (name in ``folder`` -> (precision, passed its check)) on every CPU runtime here, interleaved.

    ``bf16_passes(runner)`` judges OpenVINO's bf16 run of the FP32 file (loaded runner -> passed); without it, or
    on a CPU with neither AMX nor AVX-512 BF16, bf16 is not timed.
    """
    runners, not_timed = file_runners(folder, {name: precision for name, (precision, _) in files.items()}, bf16_passes is not None)
    passed = {key: files[key[0]][1] for key in runners}
    try:
        for key, runner in runners.items():
            runner.load()
            if key[2] == "bf16":
                passed[key] = bool(bf16_passes(runner))
        rounds = interleaved_rounds(runners, shape)
    finally:
        for runner in runners.values():
            runner.close()
    combinations = tuple(Combination.from_rounds(key, passed[key], rounds[key]) for key in runners)
    return RuntimeTimings(shape[0], ROUNDS, combinations, tuple(not_timed))


def file_runners(folder: Path, files: dict[str, str], bf16: bool, threads: int | None = None) -> tuple[dict, list[str]]:
    """A runner (not loaded) per file (name -> precision) per CPU runtime here, keyed (file, runtime, precision), and
    with ``bf16`` OpenVINO's bf16 on the FP32 file where the CPU has AMX or AVX-512 BF16; and what is not timed, why."""
    runtimes, not_timed = ["ort"], []
    if openvino_installed():
        runtimes.append("openvino")
    else:
        not_timed.append(f"OpenVINO, often the fastest on Intel CPUs: {openvino_problem()}")
    runners = {(name, runtime, precision): cpu_runner(folder / name, runtime, threads=threads) for name, precision in files.items() for runtime in runtimes}
    if "openvino" in runtimes and not cpu_flags() & set(BF16_FLAGS):
        not_timed.append("bf16: this CPU has neither AMX nor AVX-512 BF16")
    elif "openvino" in runtimes and bf16:
        key = (next(name for name, precision in files.items() if precision == "fp32"), "openvino", "bf16")
        runners[key] = cpu_runner(folder / key[0], "openvino", precision="bf16", threads=threads)
    return runners, not_timed


def interleaved_rounds(runners: dict[tuple[str, str, str], Runner], shape: tuple[int, ...], rounds: int = ROUNDS) -> dict[tuple[str, str, str], list[LatencyStats]]:
    """Each loaded runner timed on one random input of ``shape`` in ``rounds`` rounds; every round times every runner
    (at most ``ROUND_SECONDS`` each, after ``SETTLE_S`` idle), starting one further along, so that no runner always
    follows another. Per runner's key: one LatencyStats per round."""
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    measured: dict = {key: [] for key in runners}
    order = list(runners.items())
    for round_index in range(rounds):
        for key, runner in order[round_index % len(order) :] + order[: round_index % len(order)]:
            time.sleep(SETTLE_S)
            measured[key].append(measure_latency(partial(runner.infer, x), batch=shape[0], warmup=2, runs=RUNS_PER_ROUND, max_seconds=ROUND_SECONDS, min_runs=MIN_RUNS))
    return measured


def bf16_possible() -> bool:
    """Whether OpenVINO's bf16 can be timed here: OpenVINO installed and a CPU with AMX or AVX-512 BF16."""
    return openvino_installed() and bool(cpu_flags() & set(BF16_FLAGS))


def time_runtimes_apart(folder: Path, files: dict[str, tuple[str, bool]], shape: tuple[int, ...], reference: tuple[np.ndarray, np.ndarray] | None = None) -> RuntimeTimings:
    """``time_runtimes`` in a process of its own that dies with this one; ``reference`` (inputs, FP32 logits) judges bf16 by
    FP16's tolerances. A process that fails, crashes or writes no readable result leaves nothing timed, and says why."""
    remove_abandoned(TIMING_PREFIX)
    with owned_temp_dir(TIMING_PREFIX) as work:
        spec = {"folder": str(folder), "files": files, "shape": list(shape), "reference": None, "result": str(work / "result.json")}
        if reference is not None:
            spec["reference"] = str(work / "reference.npz")
            np.savez(spec["reference"], inputs=reference[0], logits=reference[1])
        (work / "spec.json").write_text(json.dumps(spec))
        try:
            command = dying_with_this_process([sys.executable, "-m", "deploykit.bench.runtimes", str(work / "spec.json")])
            done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=PROCESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return _nothing_timed(shape, f"the timing took over {PROCESS_TIMEOUT_S} s and was stopped")
        if done.returncode != 0:
            ending = f"signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}"
            last = (done.stderr.strip().splitlines() or [""])[-1][:200]
            return _nothing_timed(shape, f"the timing process ended with {ending}, so nothing was timed: {last}")
        try:
            return RuntimeTimings.from_dict(json.loads((work / "result.json").read_text()))
        except (OSError, ValueError, DeployKitError) as exc:
            return _nothing_timed(shape, f"the timing process wrote no readable result ({first_line(exc)}), so nothing was timed")


def _nothing_timed(shape: tuple[int, ...], why: str) -> RuntimeTimings:
    return RuntimeTimings(shape[0], ROUNDS, (), (why,))


def _main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    files = {name: (precision, passed) for name, (precision, passed) in spec["files"].items()}
    bf16_passes = _bf16_judge(Path(spec["reference"])) if spec["reference"] else None
    timings = time_runtimes(Path(spec["folder"]), files, tuple(spec["shape"]), bf16_passes)
    Path(spec["result"]).write_text(json.dumps(timings.as_dict()))


def _bf16_judge(reference_path: Path):
    """A judge of OpenVINO's bf16 run: FP16's tolerances against the FP32 logits saved with their inputs."""
    from deploykit.parity import FP16_TOLERANCES, compare_logits, run_all

    with np.load(reference_path) as reference:
        inputs, logits = reference["inputs"], reference["logits"]
    return lambda runner: compare_logits(logits, run_all(runner, inputs), FP16_TOLERANCES).passed


if __name__ == "__main__":
    _main(sys.argv[1])
