"""What Sentry's reporters share in the process, in one object with a public reset."""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING

from bridge.failures import FailureLog

if TYPE_CHECKING:
    from baseplate.diagnostics.sentry._client import SentryClient

#: Every module of the package logs here: the name the docs show in log lines.
logger = logging.getLogger("baseplate.diagnostics.sentry")


class _SentryState:
    """The reporters' process-wide state, as a new process has it after :meth:`reset`."""

    #: Failures of reporting calls, processors and sends: each kind logged once.
    failures: FailureLog
    #: The reporters made by make_client, closed when the process's telemetry is shut down.
    open_clients: weakref.WeakSet[SentryClient]

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.failures = FailureLog(logger)
        self.open_clients = weakref.WeakSet()


state = _SentryState()


def reset_state() -> None:
    """Forget the failures counted so far and the reporters to close at shutdown.

    For tests: afterwards the next failure of each kind is logged at warning
    level again, as in a new process. Reporters made before stay usable but
    are no longer closed when the process's telemetry is shut down: close
    those yourself.

    .. versionadded:: 0.31
    """
    state.reset()
