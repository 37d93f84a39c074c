"""``deploykit report``: benchmark result files merged into one Markdown table and one accuracy-vs-latency plot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploykit.bench.report import load_results, write_report


@dataclass(frozen=True)
class ReportResult:
    markdown: Path
    picture: Path
    results: int


def make_report(paths: list[Path], out: Path) -> ReportResult:
    """Read every result file (validated), then write ``out/report.md`` and ``out/pareto.png``, both or neither."""
    rows = load_results(paths)
    markdown, picture = write_report(rows, out)
    return ReportResult(markdown, picture, len(rows))
