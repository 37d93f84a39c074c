"""The one exception type for mistakes a user can fix (bad name, bad file, bad option)."""


class DeployKitError(Exception):
    """A user error: the CLI prints its message as one line and exits with code 2."""
