"""`deploykit report`: merge benchmark JSON files into one Markdown table and a plot: accuracy against latency,
throughput against batch size (with parallel streams where they were measured), and, for ``bench --server`` results,
throughput against p99 latency as client concurrency rises."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from deploykit.errors import DeployKitError
from deploykit.io import atomic_write_bytes, ensure_writable_dir, make_temporary_file

# p50/p90/p99 are per batch (as measured); "p50 ms/image" is what the Pareto front ranks by.
COLUMNS = [
    ("model", "model"),
    ("engine", "engine"),
    ("device", "device"),
    ("precision", "precision"),
    ("threads", "threads"),
    ("batch", "batch"),
    ("streams", "streams"),
    ("p50_ms", "p50 ms/batch"),
    ("p50_ms_per_image", "p50 ms/image"),
    ("p90_ms", "p90 ms/batch"),
    ("p99_ms", "p99 ms/batch"),
    ("throughput", "img/s"),
    ("agreement_top1", "FP32 agreement"),
    ("accuracy_top1", "top-1"),
    ("peak_rss_mb", "peak RSS MB"),
    ("configuration", "server configuration"),
    ("concurrency", "clients"),
]
PERCENT_COLUMNS = {"agreement_top1", "accuracy_top1"}


MAX_RESULT_BYTES = 50 * 2**20


def load_results(paths: list[Path]) -> list[dict]:
    """The rows of benchmark JSON files, each checked for the fields and ranges a report reads (one line naming the first
    that is wrong)."""
    rows = []
    for path in paths:
        try:
            if Path(path).stat().st_size > MAX_RESULT_BYTES:
                raise DeployKitError(f"{path} is larger than {MAX_RESULT_BYTES >> 20} MB: not a deploykit benchmark JSON file")
            payload = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise DeployKitError(f"result file {path} does not exist") from exc
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise DeployKitError(f"{path} is not a deploykit benchmark JSON file ({type(exc).__name__}: {exc})") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
            raise DeployKitError(f"{path} is not a deploykit benchmark JSON file (no 'results' list)")
        for index, row in enumerate(payload["results"]):
            _check_row(row, f"{path}: result {index + 1}")
            rows.append({**row, "source": str(path)})
    if not rows:
        raise DeployKitError("the result files hold no results")
    return rows


def _check_row(row: object, where: str) -> None:
    if not isinstance(row, dict):
        raise DeployKitError(f"{where} is a {type(row).__name__}, not an object")
    for key in ("model", "engine", "precision"):
        if not isinstance(row.get(key), str):
            raise DeployKitError(f"{where}: {key} must be a string, got {row.get(key)!r}")
    batch = row.get("batch")
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= 65536:
        raise DeployKitError(f"{where}: batch must be an integer from 1 to 65536, got {batch!r}")
    for key in ("p50_ms", "p90_ms", "p99_ms", "throughput"):
        value = row.get(key)
        if not _number(value) or not (value > 0 if key == "p50_ms" else value >= 0):
            raise DeployKitError(f"{where}: {key} must be a finite positive number, got {value!r}")
    for key in ("agreement_top1", "accuracy_top1"):
        value = row.get(key)
        if value is not None and (not _number(value) or not 0 <= value <= 1):
            raise DeployKitError(f"{where}: {key} must be a fraction from 0 to 1 (or absent), got {value!r}")
    threads = row.get("threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise DeployKitError(f"{where}: threads must be a positive integer, got {threads!r}")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def quality(row: dict) -> tuple[float | None, str]:
    """Accuracy when measured, else agreement with the FP32 reference; None for neither (an ONNX file deploykit did not
    make, benched without labelled data)."""
    if row.get("accuracy_top1") is not None:
        return row["accuracy_top1"], "top-1 accuracy"
    return row.get("agreement_top1"), "top-1 agreement with FP32"


def pareto_front(rows: list[dict]) -> list[dict]:
    """Rows that no other row of the same model beats on both latency per image (lower) and quality (higher); rows with
    no quality figure are on no front."""
    rows = [row for row in rows if quality(row)[0] is not None]
    front = []
    for row in rows:
        dominated = any(
            other["model"] == row["model"]
            and _per_image_ms(other) <= _per_image_ms(row)
            and quality(other)[0] >= quality(row)[0]
            and (_per_image_ms(other) < _per_image_ms(row) or quality(other)[0] > quality(row)[0])
            for other in rows
        )
        if not dominated:
            front.append(row)
    return sorted(front, key=_per_image_ms)


def to_markdown(rows: list[dict]) -> str:
    front = {id(r) for r in pareto_front(rows)}
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " | Pareto |", "|" + "---|" * (len(COLUMNS) + 1)]
    for row in sorted(rows, key=lambda r: (r["model"], r["p50_ms"])):
        values = {**row, "p50_ms_per_image": _per_image_ms(row), "streams": row.get("streams", 1)}
        cells = [_cell(values.get(key), key in PERCENT_COLUMNS) for key, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + f" | {'*' if id(row) in front else ''} |")
    return "\n".join(lines) + "\n"


def _cell(value, percent: bool = False) -> str:
    if value is None:
        return "-"
    if percent:
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def write_report(rows: list[dict], out: Path) -> tuple[Path, Path]:
    """report.md and pareto.png in ``out``, both or neither: the plot is drawn into a temporary file, then the table is
    written atomically, then the plot is moved into place."""
    markdown, picture = out / "report.md", out / "pareto.png"
    ensure_writable_dir(out)
    drawn = make_temporary_file(out, ".pareto.png.")
    try:
        plot(rows, drawn)
        atomic_write_bytes(markdown, to_markdown(rows).encode())
        os.replace(drawn, picture)
    finally:
        drawn.unlink(missing_ok=True)
    return markdown, picture


def plot(rows: list[dict], path: Path, title: str | None = None) -> None:
    """Draw the plot (``draw``) into a PNG file."""
    import matplotlib.pyplot as plt

    figure = draw(rows, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, format="png")
    plt.close(figure)


def draw(rows: list[dict], title: str | None = None):
    """Above, quality vs p50 latency per image: one series per batch size, each point labelled, the Pareto front per
    model. Below, throughput against batch size, one line per configuration; and for ``bench --server`` rows, throughput
    against p99 (alone where they are all there is). The matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    served = [row for row in rows if row.get("concurrency") is not None]  # bench --server: load on a Triton model
    rows = [row for row in rows if row.get("concurrency") is None]
    if not rows:  # server results alone: their panel alone
        figure, load = plt.subplots(1, 1, figsize=(11, 6))
        _draw_load(load, served)
        figure.tight_layout()
        return figure
    lines = _throughput_lines(rows)
    several_batches = any(len(points) > 1 for points in lines.values())  # a panel of single dots says nothing
    count = 1 + several_batches + bool(served)
    figure, panels = plt.subplots(count, 1, figsize=(11, 5 * count), height_ratios=(3, 2, 2)[:count], squeeze=False)
    panels = list(panels[:, 0])
    axes = panels.pop(0)
    if several_batches:
        _draw_throughput(panels.pop(0), lines)
    if served:
        _draw_load(panels.pop(0), served)
    rows = [row for row in rows if quality(row)[0] is not None]  # a point needs a quality figure
    markers = "osD^vP*X"
    for index, batch in enumerate(sorted({row["batch"] for row in rows})):
        series = [row for row in rows if row["batch"] == batch]
        axes.scatter([_per_image_ms(r) for r in series], [quality(r)[0] for r in series], s=40, marker=markers[index % len(markers)], label=f"batch {batch}", zorder=3)
    _label_points(axes, rows)
    front = pareto_front(rows)
    for model in sorted({r["model"] for r in front}):
        points = sorted((r for r in front if r["model"] == model), key=_per_image_ms)
        axes.step([_per_image_ms(r) for r in points], [quality(r)[0] for r in points], where="post", color="crimson", alpha=0.5, zorder=2)
    axes.scatter([_per_image_ms(r) for r in front], [quality(r)[0] for r in front], s=160, facecolors="none", edgecolors="crimson", label="Pareto front (per model)", zorder=4)
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0), numticks=40))
    axes.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.margins(y=0.15)
    axes.set_xlabel("p50 latency per image (ms, log scale)")
    kinds = {quality(r)[1] for r in rows}
    axes.set_ylabel(kinds.pop() if len(kinds) == 1 else "top-1 (accuracy, else FP32 agreement)")
    axes.set_title(title or f"quality against latency per image, {len(rows)} results ({', '.join(sorted({r['model'] for r in rows}))})")
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3, which="both")
    figure.tight_layout()
    return figure


def _throughput_lines(rows: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """(batch, images per second) per configuration: model, engine, device, precision, threads and streams."""
    lines: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        if row.get("throughput") is not None:
            lines.setdefault(_configuration(row), []).append((row["batch"], row["throughput"]))
    return lines


def _draw_throughput(axes, lines: dict[str, list[tuple[int, float]]]) -> None:
    """Images per second against batch size: one line per configuration."""
    import matplotlib.ticker

    for name, points in sorted(lines.items()):
        points.sort()
        axes.plot([b for b, _ in points], [t for _, t in points], marker="o", label=name)
    axes.set_xscale("log", base=2)
    axes.set_xticks(sorted({b for points in lines.values() for b, _ in points}))
    axes.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.set_xlabel("batch size (log scale)")
    axes.set_ylabel("throughput (images/s)")
    axes.set_title("throughput against batch size (streams: requests run in parallel)")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    axes.grid(alpha=0.3, which="both")


def _draw_load(axes, rows: list[dict]) -> None:
    """Throughput against p99 latency as client concurrency rises: one curve per model and server configuration."""
    curves: dict[str, list[dict]] = {}
    for row in rows:
        curves.setdefault(f"{row['model']}, {row.get('configuration', 'as served')}", []).append(row)
    for name, points in sorted(curves.items()):
        points.sort(key=lambda r: r["concurrency"])
        axes.plot([r["p99_ms"] for r in points], [r["throughput"] for r in points], marker="o", label=name)
        for point in points:
            axes.annotate(str(point["concurrency"]), (point["p99_ms"], point["throughput"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes.set_xlabel("p99 latency (ms)")
    axes.set_ylabel("throughput (images/s)")
    axes.set_title("Triton under load: throughput against p99 (points labelled with the number of concurrent clients)")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    axes.grid(alpha=0.3)


def _configuration(row: dict) -> str:
    """Model, engine, device, precision, variant (torch options such as channels_last), threads and streams."""
    variant = f" {row['variant']}" if row.get("variant", "default") != "default" else ""
    threads = f" {row['threads']}t" if row.get("threads") else ""
    streams = f" {row['streams']}s" if row.get("streams", 1) > 1 else ""
    return f"{row['model']} {row['engine']}-{row.get('device', 'cpu')} {row['precision']}{variant}{threads}{streams}"


def label(row: dict) -> str:
    """What sets a result apart from the others of one report: its configuration and batch."""
    return f"{_configuration(row)} b{row['batch']}"


def unique_labels(rows: list[dict]) -> list[str]:
    """``label`` of each row; where two are the same, the result file each came from, then its place in that file."""
    labels = [label(row) for row in rows]
    if len(set(labels)) < len(labels):
        labels = [f"{text} [{Path(row['source']).name}]" if labels.count(text) > 1 and row.get("source") else text for text, row in zip(labels, rows)]
    repeated = {text for text in labels if labels.count(text) > 1}
    seen: dict[str, int] = {}
    for index, text in enumerate(labels):
        if text in repeated:
            seen[text] = seen.get(text, 0) + 1
            labels[index] = f"{text} #{seen[text]}"
    return labels


def _per_image_ms(row: dict) -> float:
    return row["p50_ms"] / row["batch"]


def _label_points(axes, rows: list[dict]) -> None:
    """A number beside each point and a key of numbered labels beside the plot, so that no two labels overlap.

    Points fall into grid cells as wide as a label; a number takes the lowest slot that no point of its own or a
    neighbouring cell holds: near-linear in the number of points."""
    taken: dict[tuple[int, int], set[int]] = {}
    key = []
    ordered = sorted(rows, key=lambda r: (r["model"], r["engine"], r["precision"], r.get("threads") or 0, r["batch"]))
    names = dict(zip(map(id, ordered), unique_labels(ordered)))
    qualities = [quality(r)[0] for r in rows]
    y_span = (max(qualities) - min(qualities)) or 1.0 if qualities else 1.0
    for number, row in enumerate(ordered, start=1):
        x, y = _per_image_ms(row), quality(row)[0]
        cell = (math.floor(math.log10(x) / 0.04), math.floor(y / (0.02 * y_span)))
        near = set().union(*(taken.get((cell[0] + dx, cell[1] + dy), set()) for dx in (-1, 0, 1) for dy in (-1, 0, 1)))
        slot = next(s for s in range(len(near) + 1) if s not in near)
        taken.setdefault(cell, set()).add(slot)
        axes.annotate(str(number), (x, y), fontsize=7, xytext=(3, 3 + 8 * slot), textcoords="offset points")
        key.append(f"{number:>2} {names[id(row)]}")
    axes.text(1.02, 1.0, "\n".join(key), transform=axes.transAxes, fontsize=7, va="top", family="monospace")
