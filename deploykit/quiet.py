"""Silence third-party chatter (exporter and quantizer prints, warnings, log lines) around one call."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet(*loggers: str) -> Iterator[None]:
    """Swallow stdout, stderr and warnings, and raise the named loggers to ERROR, for the block.

    The root logger is left alone: with no handler of its own, its records reach the swallowed stderr.
    """
    named = [logging.getLogger(name) for name in loggers]
    levels = [logger.level for logger in named]
    for logger in named:
        logger.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(named, levels):
            logger.setLevel(level)
