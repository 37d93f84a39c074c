"""Option types the commands share: how ``--input-size``, the tolerances, ``--warmup`` and ``--batch`` lists are read."""

from __future__ import annotations

import math

import click

from deploykit.choices import MAX_INPUT_SIZE

MAX_WARMUP_SECONDS = 600


class InputSizeOption(click.Option):
    """``--input-size N`` (square) or ``--input-size H W``: the option takes the number after it, and a second one when
    one follows. Checked into one square size, since deploykit's models take square inputs."""

    def add_to_parser(self, parser, ctx) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            option = parser._long_opt.get(name) or parser._short_opt.get(name)
            if option is not None:
                read_first = option.process

                def read_one_or_two(value, state, read_first=read_first) -> None:
                    if state.rargs and state.rargs[0].isdigit():
                        value = f"{value} {state.rargs.pop(0)}"
                    read_first(value, state)

                option.process = read_one_or_two


class InputSize(click.ParamType):
    name = "N|H W"

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        parts = str(value).replace("x", " ").split()
        if not 1 <= len(parts) <= 2 or not all(part.isdigit() for part in parts):
            self.fail(f"takes one number (square) or two (height width), such as 224 or 224 224; got {value!r}", param, ctx)
        height, width = (int(parts[0]), int(parts[-1]))
        if height != width:
            self.fail(f"deploykit handles square inputs only, got {height}x{width}; give one number, such as {height}", param, ctx)
        if not 1 <= height <= MAX_INPUT_SIZE:
            self.fail(f"{height} is not in the range 1..{MAX_INPUT_SIZE}", param, ctx)
        return height


def input_size_option(help_text: str = "Input size: one number for square (224) or height and width (224 224); default: the model's own."):
    return click.option("--input-size", cls=InputSizeOption, type=InputSize(), help=help_text)


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange, refusing NaN and inf: a tolerance of NaN would turn every check into a pass."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class Warmup(click.ParamType):
    """``--warmup 10`` (runs) or ``--warmup 2s`` (seconds): a (runs, seconds) pair, one of them set."""

    name = "N|Ns"

    def convert(self, value, param, ctx) -> tuple[int, float | None]:
        if isinstance(value, tuple):
            return value
        text = str(value)
        try:
            if text.endswith("s"):
                seconds = float(text[:-1])
                if 0 < seconds <= MAX_WARMUP_SECONDS:  # NaN and inf fail this too
                    return 0, seconds
            elif 0 <= int(text) <= 100_000:
                return int(text), None
        except ValueError:
            pass
        self.fail(f"--warmup takes a number of runs (0 to 100000, e.g. 10) or seconds (up to {MAX_WARMUP_SECONDS}s, e.g. 2s), got {text!r}", param, ctx)


class BatchList(click.ParamType):
    """``--batch 1,8,32``: a tuple of positive integers; ``off_value`` stands for the word ``off`` where allowed."""

    name = "N[,N...]"

    def __init__(self, low: int = 1, high: int = 1 << 20, off_value: int | None = None) -> None:
        self.low, self.high, self.off_value = low, high, off_value

    def convert(self, value, param, ctx) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            values = tuple(self.off_value if part == "off" and self.off_value is not None else int(part) for part in str(value).split(","))
        except ValueError:
            values = ()
        if not values or any(v != self.off_value and not self.low <= v <= self.high for v in values):
            option = param.opts[0] if param is not None else "--batch"
            self.fail(
                f"{option} takes comma-separated integers from {self.low} to {self.high}{' (or off)' if self.off_value is not None else ''}, such as {self.low},8,32, got {value!r}",
                param,
                ctx,
            )
        return values
