"""The one exception type for mistakes a user can fix (bad name, bad file, bad option)."""


class DeployKitError(Exception):
    """A user error: the CLI prints its message as one line and exits with code 2."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
