"""Graceful stop for connection-oriented gevent servers.

A connection is *idle* while its handler waits for the next request, and
*busy* while a request is being read, handled and answered. ServerStoppingError
gracefully means: close the listener, close idle connections at once, let
busy ones finish their current request (and then close) for up to the stop
timeout, and kill whatever is still running after that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
import gevent.pool


class ServerStoppingError(Exception):
    """Raised in a handler that waits, or starts to wait, for a request while the server stops."""


class ConnectionTracker:
    """Knows which connection greenlets are idle, so that stopping can close them."""

    def __init__(self) -> None:
        self.stopping = False
        self._idle: set[Any] = set()
        self._idle_block = _IdleBlock(self)

    def idle(self) -> _IdleBlock:
        """Mark the current greenlet idle while the block waits for a request.

        Raises :class:`ServerStoppingError` instead of waiting when the server is stopping.
        """
        return self._idle_block

    def close_idle(self) -> None:
        """Refuse further waiting and kill the greenlets waiting now."""
        self.stopping = True
        for greenlet in list(self._idle):
            greenlet.kill(ServerStoppingError, block=False)


class _IdleBlock:
    """The ``with`` block of :meth:`ConnectionTracker.idle`.

    One per tracker, used by every connection: it keeps no state of its own
    (the greenlet is the current one on entry and on exit), so a request
    costs no object and no generator, as a ``contextlib`` block would.
    """

    __slots__ = ("_tracker",)

    def __init__(self, tracker: ConnectionTracker) -> None:
        self._tracker = tracker

    def __enter__(self) -> None:
        tracker = self._tracker
        if tracker.stopping:
            raise ServerStoppingError
        tracker._idle.add(gevent.getcurrent())

    def __exit__(self, *exc_info: object) -> None:
        self._tracker._idle.discard(gevent.getcurrent())


def make_pool(max_concurrency: int | None) -> gevent.pool.Pool:
    """A pool of connection handlers, bounded by ``max_concurrency`` if given.

    A server always uses a pool (an unbounded one by default) so that stopping
    can wait for its handlers.
    """
    return gevent.pool.Pool(max_concurrency)


class GracefulStop:
    """Mixin for the gevent servers: ``stop()`` as the module describes.

    The server must set ``tracker``, ``handler_pool`` (from :func:`make_pool`)
    and ``graceful_stop_timeout``.
    """

    tracker: ConnectionTracker
    handler_pool: gevent.pool.Pool
    graceful_stop_timeout: float
    close: Callable[[], None]

    def stop(self, timeout: float | None = None) -> None:
        """Stop, waiting at most ``timeout`` seconds (default: the configured one)."""
        self.close()
        self.tracker.close_idle()
        self.handler_pool.join(timeout=self.graceful_stop_timeout if timeout is None else timeout)
        self.handler_pool.kill(block=True, timeout=1)
