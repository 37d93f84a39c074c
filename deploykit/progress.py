"""Stage-by-stage progress for long commands: one live display the CLI owns, that library code reports into.

Library code marks its long steps with ``stage("calibrating", total=64, unit="images")`` and prints a
stage's result the moment it is known with ``report("parity vs PyTorch: PASS ...")``. When no display is
live (a script using deploykit as a library) stages and reports cost nothing and print nothing. On a
terminal the stages show as spinners (open-ended) or bars with counts and the time left; elsewhere
(a pipe, a log file) only the reported lines are written.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import IO, Protocol


class Advance(Protocol):
    def __call__(self, n: int = 1, status: str | None = None) -> None:
        """Count ``n`` more units done; ``status`` (e.g. the running loss) replaces the text after the description."""


_progress = None


@contextlib.contextmanager
def live(stream: IO[str] | None = None) -> Iterator[None]:
    """Show each stage on ``stream`` (default: the current stdout) for the block, and let ``report`` print there."""
    global _progress
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if _progress is not None:  # nested commands (a recipe calling a recipe) share the outer display
        yield
        return
    stream = stream or sys.stdout
    # Bound to the stream of now, so that the quiet() redirects of third-party chatter do not swallow the bars.
    # markup=False: paths, hints and folder names are printed as they are ('deploykit[openvino]', repo[v2]).
    console = Console(file=stream, stderr=False, markup=False) if stream.isatty() else Console(file=stream, stderr=False, width=160, markup=False)
    _progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.fields[status]}"),
        *_counted_columns(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not stream.isatty(),
    )
    try:
        with _progress:
            yield
    finally:
        _progress = None


def _counted_columns() -> list:
    """A bar, done/total and the time left, shown only for stages that have a total (never a full bar over "0/?")."""
    from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
    from rich.text import Text

    def counted_only(column_type):
        class Counted(column_type):
            def render(self, task):
                return super().render(task) if task.total is not None else Text("")

        return Counted()

    return [counted_only(BarColumn), counted_only(MofNCompleteColumn), counted_only(TimeRemainingColumn)]


@contextlib.contextmanager
def stage(description: str, total: int | None = None, unit: str = "") -> Iterator[Advance]:
    """A named step of a long command; yields ``advance(n, status)`` for steps with a ``total`` of ``unit``s."""
    if _progress is None:
        yield lambda n=1, status=None: None
        return
    label = f"{description} ({unit})" if unit else description
    task = _progress.add_task(label, total=total, status="")

    def advance(n: int = 1, status: str | None = None) -> None:
        _progress.update(task, advance=n, **({"status": status} if status is not None else {}))

    try:
        yield advance
    finally:
        _progress.remove_task(task)


def report(line: str, style: str | None = None) -> None:
    """Print a result line now, above the live stages (nothing when no display is live)."""
    if _progress is not None:
        _progress.console.print(line, style=style, highlight=False, soft_wrap=True)
