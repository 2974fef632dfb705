"""Connection pools watched per request: leaked connections and pool gauges.

A connection checked out of a pool during a request and still out when the
request ends is lost to the pool until something notices; enough of them
and every request waits for a connection that never comes back. The
original Baseplate's users met this after timeouts that skipped a return.

A :class:`PoolWatch` is told of each checkout and return by the pool it
watches (the instrumented clients do it from the one place their pool lends
and takes back connections). A checkout made while a request's client call
runs (see :meth:`PoolWatch.calls_of`) is charged to that request, with the
frame that made it. When the request's server span finishes, connections it
still holds are leaks: each code path is logged once at warning level with
the request's trace id and the stack of the checkout, and every leak is
counted as ``clients.<name>.pool.leaked``. The pool's size and its
connections in use are sent as the gauges ``clients.<name>.pool.size`` and
``clients.<name>.pool.in_use`` in the request's metrics batch.

Recording a checkout costs a dictionary entry. Only a connection still out
when the client call that took it returns has its caller's stack kept (the
code and line of the :data:`STACK_DEPTH` innermost frames, the call's
caller first), and no stack is formatted unless a leak is found.

.. versionadded:: 0.31
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import traceback
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

from baseplate.core import ExcInfo, ServerSpan, ServerSpanObserver, Span

logger = logging.getLogger(__name__)

#: How many frames of a checkout's stack are kept, innermost first.
STACK_DEPTH = 10

#: Where a connection was checked out: (code, line) of each frame, innermost first.
Checkout = tuple[tuple[CodeType, int], ...]


class _Call:
    """A client call running now: whose request it is, and what it has taken so far."""

    __slots__ = ("lent", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        #: (watch, connection id) of each checkout made during the call.
        self.lent: list[tuple[PoolWatch, int]] = []


#: The client call running now, if any.
_calling: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "baseplate_pool_call", default=None
)


class PoolWatch:
    """Watches one pool: who holds which connection, and how full it is.

    :param size: Returns the pool's capacity (its maximum connections), or
        None for a pool without one: then no size gauge is sent.
    :param in_use: Returns how many of its connections are lent out now.
    """

    def __init__(self, size: Callable[[], int | None], in_use: Callable[[], int]) -> None:
        self.size = size
        self.in_use = in_use
        #: Connections lent out during requests: id -> (span, where); where is
        #: empty until the call that took the connection returns without it.
        self._lent: dict[int, tuple[Span, Checkout]] = {}
        self._lock = threading.Lock()
        self._reported: set[Checkout] = set()

    # -- told by the pool -------------------------------------------------------

    def checked_out(self, connection: object) -> None:
        """The pool lent ``connection``; charge it to the request calling now, if any."""
        call = _calling.get()
        if call is None:
            return  # outside a request's call: nobody to charge it to
        key = id(connection)
        with self._lock:
            self._lent[key] = (call.span, ())
        call.lent.append((self, key))

    def checked_in(self, connection: object) -> None:
        """The pool took ``connection`` back."""
        if self._lent:
            with self._lock:
                self._lent.pop(id(connection), None)

    # -- used by the clients ----------------------------------------------------

    def calls_of(self, span: Span) -> _Charging:
        """Charge the checkouts made inside this ``with`` block to ``span``'s request.

        ``span`` is the request's server span or one of its local spans. A
        connection taken in the block and still out at its end gets the
        stack of the block's caller, for the leak report.
        """
        return _Charging(span)

    def _note_where(self, key: int, where: Checkout) -> None:
        with self._lock:
            entry = self._lent.get(key)
            if entry is not None and not entry[1]:
                self._lent[key] = (entry[0], where)

    def watch_request(self, name: str, span: Span) -> None:
        """Check the request of ``span`` for leaks and send the gauges when it ends.

        ``name`` is the context attribute the client is on; ``span`` is the
        span a context factory is making a client for. Only server spans are
        watched: a local span's client belongs to the same request.
        """
        if isinstance(span, ServerSpan):
            span.register(_RequestEnd(self, name, span))

    # -- at the end of a request --------------------------------------------------

    def _leaks_of(self, server_span: ServerSpan) -> list[Checkout]:
        with self._lock:
            leaked = [
                key for key, (span, _) in self._lent.items() if _of_request(span, server_span)
            ]
            return [self._lent.pop(key)[1] for key in leaked]

    def _report(self, name: str, server_span: ServerSpan, where: Checkout) -> None:
        with self._lock:
            first = where not in self._reported
            self._reported.add(where)
        if first:
            logger.warning(
                "a connection of %s was checked out during request %s (trace %d) and never "
                "returned; checked out at:\n%s",
                name,
                server_span.name,
                server_span.trace_id,
                _format(where),
            )

    def _request_ended(self, name: str, server_span: ServerSpan) -> None:
        leaks = self._leaks_of(server_span)
        for where in leaks:
            self._report(name, server_span, where)
        batch: Any = getattr(server_span.context, "metrics", None)
        if batch is None:
            return
        if leaks:
            batch.counter(f"clients.{name}.pool.leaked").increment(len(leaks))
        size = self.size()
        if size is not None:
            batch.gauge(f"clients.{name}.pool.size").replace(size)
        batch.gauge(f"clients.{name}.pool.in_use").replace(self.in_use())
        # The metrics observer may have flushed the batch already: send these too.
        batch.flush()


def _of_request(span: Span, server_span: ServerSpan) -> bool:
    """Whether ``span`` is the request's server span or one of its local spans.

    A local span of the request shares its trace id; the server spans of
    other requests in the same trace are other requests.
    """
    if span is server_span:
        return True
    return span.trace_id == server_span.trace_id and not isinstance(span, ServerSpan)


class _Charging:
    """The ``with`` block of :meth:`PoolWatch.calls_of` (a class: it runs on every call)."""

    __slots__ = ("call", "token")

    def __init__(self, span: Span) -> None:
        self.call = _Call(span)

    def __enter__(self) -> None:
        self.token = _calling.set(self.call)

    def __exit__(self, *exc_info: object) -> None:
        _calling.reset(self.token)
        if self.call.lent:
            where: Checkout | None = None
            for watch, key in self.call.lent:
                if key in watch._lent:
                    where = where or _caller_stack()
                    watch._note_where(key, where)


def _caller_stack() -> Checkout:
    """Where the client call was made from: the client's method, then its callers."""
    frame: FrameType | None = sys._getframe(2)
    found: list[tuple[CodeType, int]] = []
    while frame is not None and len(found) < STACK_DEPTH:
        found.append((frame.f_code, frame.f_lineno))
        frame = frame.f_back
    return tuple(found)


def _format(where: Checkout) -> str:
    """The stack as a traceback prints it, outermost first."""
    summary = traceback.StackSummary.from_list(
        [(code.co_filename, line, code.co_name, None) for code, line in reversed(where)]
    )
    return "".join(summary.format())


class _RequestEnd(ServerSpanObserver):
    """Runs the watch's end-of-request checks when the server span finishes."""

    __slots__ = ("name", "server_span", "watch")

    def __init__(self, watch: PoolWatch, name: str, server_span: ServerSpan) -> None:
        self.watch = watch
        self.name = name
        self.server_span = server_span

    def on_finish(self, exc_info: ExcInfo | None) -> None:
        self.watch._request_ended(self.name, self.server_span)
