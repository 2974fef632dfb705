"""The metrics observer: request timings and success counters, sent to statsd.

For a server span named ``S`` it records the timer ``server.S`` and the counter
``server.S.success`` or ``server.S.failure``; for a client span ``C`` directly
under it, ``clients.C`` and ``clients.C.success|failure`` (plus
``errors.<class>`` for each ``error.object`` log); for a local span ``N`` of
component ``K``, the timer ``K.N``. Everything the request records, the
application's own metrics included, goes in one batch flushed when the server
span finishes.

Spans that OpenTelemetry-instrumented libraries start directly under the
server span are named from their semantic-convention attributes instead, by
:func:`bridge.semconv.client_metric_name` (an HTTP call ``clients.127_0_0_1.GET``,
a Redis command ``clients.redis.127_0_0_1.SET``), when they end: that is when
instrumentations have set their attributes.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.trace import SpanKind

from baseplate.core import (
    BaseplateObserver,
    ExcInfo,
    ServerSpan,
    ServerSpanObserver,
    Span,
    SpanObserver,
)
from baseplate.metrics import Batch, Client
from bridge import semconv

#: Kinds of native span that call a dependency, named for it.
_DEPENDENCY_KINDS = frozenset((SpanKind.CLIENT, SpanKind.PRODUCER))
_NANOSECONDS_PER_SECOND = 1e9


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
        # "is True": stand-ins for spans in applications' tests (mocks) answer anything.
        if server_span.native is True:
            server_span.register(MetricsNativeServerSpanObserver(batch, server_span))
        else:
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
        if span.native is True:
            span.register(_native_child_observer(self.batch, span))
        elif span.component_name is None:
            span.register(MetricsClientSpanObserver(self.batch, "clients." + span.name))
        else:
            span.register(
                MetricsLocalSpanObserver(self.batch, f"{span.component_name}.{span.name}")
            )

    def on_finish(self, exc_info: ExcInfo | None) -> None:
        _CountedSpanObserver.on_finish(self, exc_info)
        self.batch.flush()


class MetricsNativeServerSpanObserver(MetricsServerSpanObserver):
    """Times a request whose root span another library started, named when it ends.

    Instrumentations often name the span for its route only once routing is
    done ("GET", then "GET /hello/<name>"), so the timer is named from the
    span's final name, made statsd-safe (``server.GET_hello_name``), and
    given the duration the span itself recorded.
    """

    __slots__ = ("span",)

    def __init__(self, batch: Batch, span: Span) -> None:
        self.batch = batch
        self.span = span

    def on_start(self) -> None:
        """The span keeps its own times."""

    def on_finish(self, exc_info: ExcInfo | None) -> None:
        otel_span = self.span.otel_span
        if isinstance(otel_span, SdkSpan):
            name = "server." + semconv.safe_component(otel_span.name)
            start, end = otel_span.start_time, otel_span.end_time
            if start is not None and end is not None:
                self.batch.timer(name).send((end - start) / _NANOSECONDS_PER_SECOND)
            failed = exc_info is not None and exc_info[0] is not None
            self.batch.counter(name + (".failure" if failed else ".success")).increment()
        self.batch.flush()


class MetricsLocalSpanObserver(_TimedSpanObserver):
    """Times a local span as ``<component>.<name>``."""

    __slots__ = ()


class _ErrorCountingObserver(SpanObserver):
    """Counts each ``error.object`` log of a call as ``errors.<class of the error>``."""

    __slots__ = ()
    batch: Batch

    def on_log(self, name: str, payload: Any) -> None:
        if name == "error.object":
            self.batch.counter(f"errors.{type(payload).__name__}").increment()


class MetricsClientSpanObserver(_ErrorCountingObserver, _CountedSpanObserver):
    """Times a call to another service and counts its outcome and errors."""

    __slots__ = ()


class MetricsNativeClientSpanObserver(_ErrorCountingObserver):
    """Times and counts a native call to a dependency, named when the call ends.

    Instrumentations set most of the attributes that name the dependency only
    as the span ends (Redis sets its host then), so the name is decided in
    :meth:`on_finish`, from the span's final attributes, and the duration is
    the one the span itself recorded.
    """

    __slots__ = ("batch", "span")

    def __init__(self, batch: Batch, span: Span) -> None:
        self.batch = batch
        self.span = span

    def on_finish(self, exc_info: ExcInfo | None) -> None:
        otel_span = self.span.otel_span
        if not isinstance(otel_span, SdkSpan):
            # Not an SDK span: nothing recorded its attributes or its times.
            return
        name = "clients." + semconv.client_metric_name(otel_span.attributes, otel_span.name)
        start, end = otel_span.start_time, otel_span.end_time
        if start is not None and end is not None:
            self.batch.timer(name).send((end - start) / _NANOSECONDS_PER_SECOND)
        failed = exc_info is not None and exc_info[0] is not None
        self.batch.counter(name + (".failure" if failed else ".success")).increment()


def _native_child_observer(batch: Batch, span: Span) -> SpanObserver:
    """The observer for a span another library started under the server span."""
    if getattr(span.otel_span, "kind", None) in _DEPENDENCY_KINDS:
        return MetricsNativeClientSpanObserver(batch, span)
    return MetricsClientSpanObserver(batch, "clients." + semconv.safe_component(span.name))
