"""Failures of the services telemetry goes to, reported without flooding the log.

A trace collector, Zipkin or Sentry that is down fails every export, and the
libraries that talk to them log every failure, often with a traceback and
once per retry. That buries the application's own log lines and says
nothing new after the first. The policy, in one place: the first failure of
each kind is logged at warning level, as one line without a traceback; the
ones after it at debug level, with how many there have been. Everything is
counted. Exceptions that are not the network's are bugs: callers let them
propagate, or report them with their traceback.

:func:`holding_records` is how a caller keeps a library's own messages about
a call out of the log: it holds what the named loggers log in the current
thread (or greenlet) during the call, so the caller can report the failure
once in its own words and pass the library's lines on at debug level.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Hashable, Iterator
from typing import Any

#: Where the library lines held by :func:`holding_records` go, at debug level.
held_logger = logging.getLogger(__name__)

_holding: contextvars.ContextVar[list[logging.LogRecord] | None] = contextvars.ContextVar(
    "bridge_failures_holding", default=None
)
_filtered: set[str] = set()
_filtered_lock = threading.Lock()


class FailureLog:
    """Logs the first failure of each kind at warning level, the rest at debug level.

    A kind is any hashable value naming what failed and how: a string, or a
    tuple such as ``(observer class, method name)``.

    :param logger: Where the lines go.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._counts: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def report(self, kind: Hashable, message: str, *, exc_info: Any = None) -> int:
        """Log ``message`` for a failure of ``kind``; returns how many of that kind so far.

        ``exc_info`` is for bugs: the first one is logged at error level with
        its traceback, since a bug must not pass unnoticed.
        """
        with self._lock:
            count = self._counts.get(kind, 0) + 1
            self._counts[kind] = count
        if count > 1:
            self.logger.debug("%s (%d times so far)", message, count)
        elif exc_info is not None:
            self.logger.error("%s", message, exc_info=exc_info)
        else:
            self.logger.warning("%s", message)
        return count

    def count(self, kind: Hashable) -> int:
        """How many failures of ``kind`` were reported."""
        with self._lock:
            return self._counts.get(kind, 0)

    @property
    def total(self) -> int:
        """How many failures of every kind were reported."""
        with self._lock:
            return sum(self._counts.values())


def _hold(record: logging.LogRecord) -> bool:
    """The filter on the held loggers: keep warnings and errors back while a caller holds them."""
    held = _holding.get()
    if held is None or record.levelno < logging.WARNING:
        return True
    held.append(record)
    return False


def _filter_loggers(names: tuple[str, ...]) -> None:
    with _filtered_lock:
        for name in names:
            if name not in _filtered:
                logging.getLogger(name).addFilter(_hold)
                _filtered.add(name)


@contextlib.contextmanager
def holding_records(*logger_names: str) -> Iterator[list[logging.LogRecord]]:
    """Hold back the warnings and errors ``logger_names`` log in this thread or greenlet.

    Yields the list the records are collected in. Records of lower levels,
    and those other threads log meanwhile, go out as usual. Only records
    logged to these loggers themselves are held, not those of their
    children.
    """
    _filter_loggers(logger_names)
    held: list[logging.LogRecord] = []
    token = _holding.set(held)
    try:
        yield held
    finally:
        _holding.reset(token)


def pass_on_at_debug(records: list[logging.LogRecord]) -> None:
    """Log held records at debug level: the library's own account, for whoever wants it."""
    for record in records:
        held_logger.debug("%s: %s", record.name, record.getMessage())


def worst(records: list[logging.LogRecord]) -> logging.LogRecord | None:
    """The most severe of ``records`` (the last of equals), or None if there are none."""
    found: logging.LogRecord | None = None
    for record in records:
        if found is None or record.levelno >= found.levelno:
            found = record
    return found


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line, cut at ``limit`` characters: what a warning quotes of an error."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
