"""The advice that comes with a missing optional dependency.

Client modules import their library at the top; when it is missing they
raise the error built here, one line naming who needs which library and
the extra that installs it, so a user knows the fix from the message alone.
"""

from __future__ import annotations


def missing_extra(user: str, library: str, extra: str) -> ImportError:
    """The error for ``user`` failing to import ``library``, which ``baseplate[extra]`` installs."""
    return ImportError(
        f"{user} needs {library}: install baseplate[{extra}] (pip install 'baseplate[{extra}]')"
    )
