"""`deploykit report`: merge benchmark JSON files into one Markdown table and an accuracy-vs-latency plot."""

from __future__ import annotations

import json
from pathlib import Path

from deploykit.errors import DeployKitError

COLUMNS = [("model", "model"), ("engine", "engine"), ("device", "device"), ("precision", "precision"),
           ("variant", "variant"), ("batch", "batch"),
           ("p50_ms", "p50 ms"), ("p90_ms", "p90 ms"), ("p99_ms", "p99 ms"), ("throughput", "img/s"),
           ("agreement_top1", "FP32 agreement"), ("accuracy_top1", "top-1"), ("peak_rss_mb", "peak RSS MB")]


def load_results(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        try:
            payload = json.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise DeployKitError(f"result file {path} does not exist") from exc
        except json.JSONDecodeError as exc:
            raise DeployKitError(f"{path} is not a deploykit benchmark JSON file ({exc.msg})") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
            raise DeployKitError(f"{path} is not a deploykit benchmark JSON file (no 'results' list)")
        rows += [{**row, "source": str(path)} for row in payload["results"]]
    if not rows:
        raise DeployKitError("the result files hold no results")
    return rows


def quality(row: dict) -> tuple[float, str]:
    """Accuracy when measured, else agreement with the FP32 reference."""
    if row.get("accuracy_top1") is not None:
        return row["accuracy_top1"], "top-1 accuracy"
    return row["agreement_top1"], "top-1 agreement with FP32"


def pareto_front(rows: list[dict]) -> list[dict]:
    """Rows that no other row of the same model beats on both latency (lower) and quality (higher)."""
    front = []
    for row in rows:
        dominated = any(
            other["model"] == row["model"]
            and other["p50_ms"] <= row["p50_ms"] and quality(other)[0] >= quality(row)[0]
            and (other["p50_ms"] < row["p50_ms"] or quality(other)[0] > quality(row)[0])
            for other in rows
        )
        if not dominated:
            front.append(row)
    return sorted(front, key=lambda r: r["p50_ms"])


def to_markdown(rows: list[dict]) -> str:
    front = {id(r) for r in pareto_front(rows)}
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " | Pareto |", "|" + "---|" * (len(COLUMNS) + 1)]
    for row in sorted(rows, key=lambda r: (r["model"], r["p50_ms"])):
        cells = [_cell(row.get(key)) for key, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + f" | {'*' if id(row) in front else ''} |")
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def plot(rows: list[dict], path: Path) -> None:
    """Quality vs p50 latency, one point per result, the Pareto front drawn as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for row in rows:
        axes.scatter(row["p50_ms"], quality(row)[0], s=30)
        variant = f" {row['variant']}" if row.get("variant", "default") != "default" else ""
        axes.annotate(f"{row['model']} {row['engine']} {row['precision']}{variant} b{row['batch']}", (row["p50_ms"], quality(row)[0]),
                      fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(rows)
    for model in sorted({r["model"] for r in front}):
        points = [r for r in front if r["model"] == model]
        axes.step([r["p50_ms"] for r in points], [quality(r)[0] for r in points], where="post", color="crimson", alpha=0.6)
    axes.scatter([r["p50_ms"] for r in front], [quality(r)[0] for r in front], s=140, facecolors="none", edgecolors="crimson",
                 label="Pareto front (per model)")
    axes.set_xscale("log")
    axes.set_xlabel("p50 latency per batch (ms, log scale)")
    axes.set_ylabel(quality(rows[0])[1] if len({quality(r)[1] for r in rows}) == 1 else "top-1 (accuracy, else FP32 agreement)")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
