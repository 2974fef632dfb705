"""The release reported with each event by default: the application's git commit."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from baseplate.diagnostics.sentry._state import logger

#: Seconds ``git rev-parse`` may take: it reads a few files, but a slow disk
#: or a loaded machine must not hold up the application's start for long.
GIT_TIMEOUT = 2.0


def git_revision(module_name: str) -> str | None:
    """The commit checked out in the git repository ``module_name`` lives in.

    Asks ``git rev-parse HEAD`` in the module's directory, as git finds the
    repository above it (worktrees included). None when the module has no
    file, git is not installed or the directory is not in a repository.
    """
    try:
        module = sys.modules.get(module_name)
        origin = getattr(module, "__file__", None)
        if origin is None:
            spec = importlib.util.find_spec(module_name)
            origin = spec.origin if spec is not None else None
        if origin is None:
            return None
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(origin).resolve().parent,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, ValueError, ImportError, subprocess.TimeoutExpired):
        logger.debug("could not ask git for the revision of %s", module_name, exc_info=True)
        return None
    if result.returncode != 0:
        logger.debug("no git revision for %s: %s", module_name, result.stderr.strip())
        return None
    return result.stdout.strip()
