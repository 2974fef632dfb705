"""Console entry points for the commands whose implementation has not landed yet.

Each command exits with status 2 and says so, so scripts that depend on them
fail loudly instead of doing nothing.
"""

import sys

_NOT_IMPLEMENTED_EXIT_CODE = 2


def _not_implemented(command: str) -> None:
    print(f"{command}: not implemented yet", file=sys.stderr)
    sys.exit(_NOT_IMPLEMENTED_EXIT_CODE)


def serve() -> None:
    """Run ``baseplate-serve``."""
    _not_implemented("baseplate-serve")


def script() -> None:
    """Run ``baseplate-script``."""
    _not_implemented("baseplate-script")


def tshell() -> None:
    """Run ``baseplate-tshell``."""
    _not_implemented("baseplate-tshell")


def healthcheck() -> None:
    """Run ``baseplate-healthcheck``."""
    _not_implemented("baseplate-healthcheck")
