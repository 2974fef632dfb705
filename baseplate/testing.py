"""Helpers for testing applications' instrumentation.

* :class:`RecordingObserver` records every observer event of every span, in
  order, to assert what an application's code reports.
* :func:`recorded_spans` gives a fresh tracer provider whose finished,
  sampled spans collect in an in-memory exporter.
* :class:`StatsdCapture` is a real datagram socket standing in for statsd.
* :func:`reset_state` starts the process's telemetry state over, as in a
  new process.

.. versionadded:: 0.31
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from baseplate._state import state as _baseplate_state
from baseplate.core import BaseplateObserver, ExcInfo, ServerSpan, ServerSpanObserver, Span
from bridge import provider


class RecordingObserver(BaseplateObserver):
    """Records the events of every server span and all their descendants.

    Each event is a tuple ``(span name, event, *arguments)``, e.g.
    ``("get_thing", "on_set_tag", "http.method", "GET")``; the server span's
    creation is ``(name, "on_server_span_created")``.
    """

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_server_span_created(self, context: Any, server_span: ServerSpan) -> None:
        self.events.append((server_span.name, "on_server_span_created"))
        server_span.register(_RecordingSpanObserver(self.events, server_span))

    def events_named(self, event: str) -> list[tuple[Any, ...]]:
        """The recorded events of one kind."""
        return [recorded for recorded in self.events if recorded[1] == event]


class _RecordingSpanObserver(ServerSpanObserver):
    def __init__(self, events: list[tuple[Any, ...]], span: Span) -> None:
        self.events = events
        self.span = span

    def on_start(self) -> None:
        self.events.append((self.span.name, "on_start"))

    def on_set_tag(self, key: str, value: Any) -> None:
        self.events.append((self.span.name, "on_set_tag", key, value))

    def on_log(self, name: str, payload: Any) -> None:
        self.events.append((self.span.name, "on_log", name, payload))

    def on_finish(self, exc_info: ExcInfo | None) -> None:
        self.events.append((self.span.name, "on_finish", exc_info))

    def on_child_span_created(self, span: Span) -> None:
        self.events.append((self.span.name, "on_child_span_created", span.name))
        span.register(_RecordingSpanObserver(self.events, span))


@contextmanager
def recorded_spans() -> Iterator[InMemorySpanExporter]:
    """Collect finished, sampled spans in memory, on a fresh tracer provider.

    The process's provider is replaced on entry and again on exit, so spans
    of one test never leak into another.
    """
    provider.reset_state()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        provider.reset_state()


def reset_state() -> None:
    """Start the process's telemetry state over, as a new process has it: for tests.

    The tracer provider is shut down and forgotten, and the next span
    installs a new one (:func:`bridge.provider.reset_state`). The failures
    counted so far (observers that raised, metrics a transport refused) are
    forgotten, so the next of each kind is logged as the first again. The
    logging observer's log record factory stays installed.
    """
    provider.reset_state()
    _baseplate_state.forget_failures()


class StatsdCapture:
    """A real datagram socket standing in for statsd.

    :param family: ``socket.AF_INET`` (the default) or ``socket.AF_UNIX``.
    :param address: Where to listen; by default an ephemeral port on
        127.0.0.1 (a path for ``AF_UNIX``).
    """

    def __init__(
        self,
        family: socket.AddressFamily = socket.AF_INET,
        address: str | tuple[str, int] = ("127.0.0.1", 0),
    ) -> None:
        self.socket = socket.socket(family, socket.SOCK_DGRAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.socket.bind(address)
        self.socket.setblocking(False)
        self.address = self.socket.getsockname()

    @property
    def endpoint(self) -> str:
        """The address as ``metrics.endpoint`` takes it."""
        if isinstance(self.address, str):
            return self.address
        host, port = self.address
        return f"{host}:{port}"

    def received(self) -> list[bytes]:
        """Every datagram received so far, oldest first (and forget them).

        Datagrams sent over loopback are queued before ``send`` returns, so
        this needs no waiting.
        """
        datagrams = []
        while True:
            try:
                datagrams.append(self.socket.recv(1 << 17))
            except BlockingIOError:
                return datagrams

    def close(self) -> None:
        """Close the socket."""
        self.socket.close()
