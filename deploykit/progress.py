"""Stage-by-stage progress for long commands: one live display the CLI owns, that library code reports into.

Library code marks its long steps with ``stage("calibrating 64 images", total=64)``; when no display
is live (a script using deploykit as a library) the stages cost nothing and print nothing.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

_progress = None


@contextlib.contextmanager
def live() -> Iterator[None]:
    """Show each stage, with a bar where it has a total, on the current stdout for the block."""
    global _progress
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if _progress is not None:  # nested commands (a recipe calling a recipe) share the outer display
        yield
        return
    # Bound to the stdout of now, so that the quiet() redirects of third-party chatter do not swallow the bars.
    console = Console(file=sys.stdout, stderr=False)
    _progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TimeElapsedColumn(), console=console, transient=True)
    try:
        with _progress:
            yield
    finally:
        _progress = None


@contextlib.contextmanager
def stage(description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A named step of a long command; yields ``advance(n)`` for steps with a ``total``."""
    if _progress is None:
        yield lambda n=1: None
        return
    task = _progress.add_task(description, total=total)
    try:
        yield lambda n=1: _progress.advance(task, n)
    finally:
        _progress.remove_task(task)
