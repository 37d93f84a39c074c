"""Running the real CLI in-process, as the tests that drive commands do."""

from click.testing import CliRunner

from deploykit.cli import cli


def run_cli(*args):
    """(click's result, its output on one line) for ``deploykit ARGS...``; arguments may be paths or numbers."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result, " ".join(result.output.split())
