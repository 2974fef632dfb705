"""What Baseplate keeps for the whole process, in one object.

The failures the span facade, the metrics batches and the edge context's
token keys have counted, and the
log record factory the logging observer installed, are attributes of
:data:`state` rather than module globals, so one class shows everything
Baseplate remembers between requests; :func:`baseplate.testing.reset_state`
starts it over. (The bridge's own state, the tracer provider included, is
:data:`bridge.provider.state`.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bridge.failures import FailureLog


class _BaseplateState:
    """Baseplate's process-wide state, as a new process has it."""

    __slots__ = (
        "edge_key_failures",
        "log_record_factory",
        "metrics_flush_failures",
        "observer_failures",
    )

    #: Span observers that raised, by observer class and method: the first
    #: failure of each is logged with its traceback, the rest at debug level.
    observer_failures: FailureLog
    #: Batches of metrics the wrapped transport refused when flushed.
    metrics_flush_failures: FailureLog
    #: Keys of the edge context's token secret that cannot be loaded: one
    #: warning per key problem, not one per request.
    edge_key_failures: FailureLog
    #: The log record factory the logging observer installed, once it has.
    log_record_factory: Callable[..., logging.LogRecord] | None

    def __init__(self) -> None:
        self.log_record_factory = None
        self.forget_failures()

    def forget_failures(self) -> None:
        """Count failures from zero: the next one of each kind is logged as the first."""
        self.observer_failures = FailureLog(logging.getLogger("baseplate.core"))
        self.metrics_flush_failures = FailureLog(logging.getLogger("baseplate.metrics"))
        self.edge_key_failures = FailureLog(logging.getLogger("baseplate.core._edge"))


state = _BaseplateState()
