"""The metrics observer: request timings and success counters, sent to statsd.

For a server span named ``S`` it records the timer ``server.S`` and the counter
``server.S.success`` or ``server.S.failure``; for a client span ``C`` directly
under it, ``clients.C`` and ``clients.C.success|failure`` (plus
``errors.<class>`` for each ``error.object`` log); for a local span ``N`` of
component ``K``, the timer ``K.N``. Everything the request records, the
application's own metrics included, goes in one batch flushed when the server
span finishes.
"""

from __future__ import annotations

from typing import Any

from baseplate.core import BaseplateObserver, ServerSpan, ServerSpanObserver, Span, SpanObserver
from baseplate.core._observers import ExcInfo
from baseplate.metrics import Batch, Client


class MetricsBaseplateObserver(BaseplateObserver):
    """Metrics collecting observer.

    It tracks the time taken to serve each request and batches all metrics
    generated during a request into as few packets as possible. The batch is
    available to the application as ``context.metrics``.

    :param client: The client where metrics will be sent.
    """

    def __init__(self, client: Client) -> None:
        self.client = client

    def on_server_span_created(self, context: Any, server_span: ServerSpan) -> None:
        """Give the request its batch and observe its server span."""
        batch = self.client.batch()
        context.metrics = batch
        server_span.register(MetricsServerSpanObserver(batch, "server." + server_span.name))


# The per-span observers below take the finished metric name from whoever
# makes them, so that making one (once per span) is a single __init__ call.


class _TimedSpanObserver(SpanObserver):
    """Times a span into the request's batch as ``timer_name``."""

    __slots__ = ("batch", "timer")

    def __init__(self, batch: Batch, timer_name: str) -> None:
        self.batch = batch
        self.timer = batch.timer(timer_name)

    def on_start(self) -> None:
        self.timer.start()

    def on_finish(self, exc_info: ExcInfo | None) -> None:
        self.timer.stop()


class _CountedSpanObserver(_TimedSpanObserver):
    """Times a span as ``base_name`` and counts ``<base_name>.success`` or ``.failure``."""

    __slots__ = ("base_name",)

    def __init__(self, batch: Batch, base_name: str) -> None:
        # Set directly rather than through super(): one of these is made per span.
        self.batch = batch
        self.timer = batch.timer(base_name)
        self.base_name = base_name

    def on_finish(self, exc_info: ExcInfo | None) -> None:
        self.timer.stop()
        failed = exc_info is not None and exc_info[0] is not None
        self.batch.counter(self.base_name + (".failure" if failed else ".success")).increment()


class MetricsServerSpanObserver(_CountedSpanObserver, ServerSpanObserver):
    """Times the request and counts its outcome; flushes the batch at the end."""

    __slots__ = ()

    def on_child_span_created(self, span: Span) -> None:
        if span.component_name is None:
            span.register(MetricsClientSpanObserver(self.batch, "clients." + span.name))
        else:
            span.register(
                MetricsLocalSpanObserver(self.batch, f"{span.component_name}.{span.name}")
            )

    def on_finish(self, exc_info: ExcInfo | None) -> None:
        _CountedSpanObserver.on_finish(self, exc_info)
        self.batch.flush()


class MetricsLocalSpanObserver(_TimedSpanObserver):
    """Times a local span as ``<component>.<name>``."""

    __slots__ = ()


class MetricsClientSpanObserver(_CountedSpanObserver):
    """Times a call to another service and counts its outcome and errors."""

    __slots__ = ()

    def on_log(self, name: str, payload: Any) -> None:
        if name == "error.object":
            self.batch.counter(f"errors.{type(payload).__name__}").increment()
