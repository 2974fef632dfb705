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

This runs for every span of every request, so the common case (a request
whose batch is a plain :class:`~baseplate.metrics.Batch`) takes a short cut
that writes exactly what the batch's own API would: the full metric names of
a span are looked up once per span name in a bounded table rather than built
per span, each span observer keeps its own start time instead of a
:class:`~baseplate.metrics.Timer`, appends its timer line straight to the
batch's buffer and adds to its counter in place. Any other batch (a subclass,
or a stand-in in an application's tests) is driven through its public
``timer`` and ``counter`` methods, as the original did.
"""

from __future__ import annotations

import time
from typing import Any, TypeAlias

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
from baseplate.metrics import Batch, BatchCounter, BufferedTransport, Client, _metric_name
from bridge import semconv

#: Kinds of native span that call a dependency, named for it.
_DEPENDENCY_KINDS = frozenset((SpanKind.CLIENT, SpanKind.PRODUCER))
_NANOSECONDS_PER_SECOND = 1e9

#: What a timed and counted span records: the template of its timer line (see
#: :func:`timer_template`), and the full names (namespace included, ASCII
#: bytes) of its success counter and of its failure counter.
CountedNames: TypeAlias = tuple[bytes, bytes, bytes]
#: What a local span records: the template of its timer line, alone.
TimedNames: TypeAlias = tuple[bytes]

#: The most span names a name table holds. A table that is full is emptied
#: before it takes the next name: a service whose span names carry ids or
#: other unbounded values keeps at most this many, and one with a normal,
#: small set of names refills the table at once.
NAME_TABLE_SIZE = 4096
#: The most namespaces whose name tables are kept, emptied likewise when full.
NAMESPACE_TABLE_SIZE = 64


_TIMER_LINE_END = b":%g|ms"


def timer_template(timer_name: bytes) -> bytes:
    """The timer line of ``timer_name`` with its value left out: ``template % milliseconds``.

    Formatting the line from one template makes one bytes object instead of
    two, and a float's ``b"%g"`` text is exactly its ``f"{value:g}"`` text,
    which :class:`~baseplate.metrics.Timer` writes. A ``%`` in the name is
    doubled, so that it stands for itself.
    """
    return timer_name.replace(b"%", b"%%") + _TIMER_LINE_END


def _timer_name(template: bytes) -> bytes:
    """The timer name a template was made from."""
    return template[: -len(_TIMER_LINE_END)].replace(b"%%", b"%")


def _timer_line(template: bytes, milliseconds: float) -> bytes:
    """The timer line, for a duration that is not a float (a patched clock's, say).

    It is written as :class:`~baseplate.metrics.Timer` writes any number.
    """
    return _timer_name(template) + f":{milliseconds:g}|ms".encode()


def _counted_names(namespace: bytes, base_name: str) -> CountedNames:
    """The names of a timed and counted span, as :meth:`Batch.timer` and ``counter`` name them.

    Each is made from its whole text, not by appending ``.success`` to the
    timer's bytes, because the batch strips the dots at the ends of the whole
    name (the timer of ``"clients.x."`` is ``clients.x``, its counter
    ``clients.x..success``).

    :raises UnicodeEncodeError: if ``base_name`` is not ASCII, as making the
        timer would.
    """
    return (
        timer_template(_metric_name(namespace, base_name)),
        _metric_name(namespace, base_name + ".success"),
        _metric_name(namespace, base_name + ".failure"),
    )


def _remember(table: dict[Any, Any], key: Any, value: Any) -> Any:
    """Keep ``value`` under ``key`` in ``table``, emptying it first when full; return ``value``."""
    if len(table) >= NAME_TABLE_SIZE:
        table.clear()
    table[key] = value
    return value


class NameTables:
    """The full metric names of the spans of one namespace, by span name.

    Building the names of a span takes a few concatenations and lookups in
    the metric-name cache; services reuse a small set of span names, so they
    are built once here and found with one lookup by the name the span was
    given. Lookups are plain dict reads, safe across threads and greenlets;
    two requests that miss the same name at once both build it, with the same
    result.
    """

    __slots__ = ("clients", "local", "namespace", "server")

    def __init__(self, namespace: bytes) -> None:
        #: The namespace every name starts with, as the batch holds it.
        self.namespace = namespace
        #: Names of server spans, by span name.
        self.server: dict[str, CountedNames] = {}
        #: Names of client spans (``clients.<name>``), by span name.
        self.clients: dict[str, CountedNames] = {}
        #: Timer templates of local spans, by ``"<component name>.<span name>"``.
        self.local: dict[str, TimedNames] = {}

    def server_names(self, name: str) -> CountedNames:
        """The names for a server span called ``name``, built on a miss."""
        names: CountedNames | None = self.server.get(name)
        if names is None:
            names = _remember(self.server, name, _counted_names(self.namespace, "server." + name))
        return names

    def client_names(self, name: str) -> CountedNames:
        """The names for a client span called ``name``, built on a miss."""
        names: CountedNames | None = self.clients.get(name)
        if names is None:
            names = _remember(self.clients, name, _counted_names(self.namespace, "clients." + name))
        return names

    def local_names(self, component: str, name: str) -> TimedNames:
        """The names for a local span ``name`` of ``component``, built on a miss.

        They are kept under ``"<component>.<name>"``, the text they are made
        from, whatever the types of the two parts.
        """
        key = f"{component}.{name}"
        names: TimedNames | None = self.local.get(key)
        if names is None:
            names = _remember(self.local, key, (timer_template(_metric_name(self.namespace, key)),))
        return names


_name_tables: dict[bytes, NameTables] = {}


def name_tables(namespace: bytes) -> NameTables:
    """The name tables of ``namespace``, made on first use."""
    tables = _name_tables.get(namespace)
    if tables is None:
        if len(_name_tables) >= NAMESPACE_TABLE_SIZE:
            _name_tables.clear()
        tables = _name_tables[namespace] = NameTables(namespace)
    return tables


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
        """Give the request its batch and observe its server span.

        :raises UnicodeEncodeError: if the span's name is not ASCII (the
            request's ``context.metrics`` is set all the same).
        """
        batch = self.client.batch()
        context.metrics = batch
        # "is True": stand-ins for spans in applications' tests (mocks) answer anything.
        if server_span.native is True:
            server_span.register(MetricsNativeServerSpanObserver(batch, server_span))
        elif type(batch) is Batch and type(batch.transport) is BufferedTransport:
            tables = _name_tables.get(batch.namespace) or name_tables(batch.namespace)
            names = tables.server.get(server_span.name)
            if names is None:
                names = tables.server_names(server_span.name)
            server_span.register(MetricsServerSpanObserver(batch, names, tables))
        else:
            server_span.register(BatchApiServerSpanObserver(batch, "server." + server_span.name))


# -- A plain Batch, written to directly -----------------------------------------------
#
# Each method below does what the batch's API would, inline: a timer line is
# ``<name>:<milliseconds>|ms`` appended to ``batch.transport.buffer`` (b"%g"
# formats a float exactly as f"{value:g}"), and a counter is the batch's
# BatchCounter for the name, made (and so placed among the counters) when
# first asked for, its total at sample rate 1.0 added to in place. The batch's
# transport is read at each write because flushing replaces its buffer.


def _timer_error(template: bytes, what: str) -> RuntimeError:
    """The error :class:`~baseplate.metrics.Timer` raises, for the failure log."""
    return RuntimeError(f"timer {_timer_name(template).decode()!r} was {what}")


class _DirectTimedSpanObserver(SpanObserver):
    """Times a span, keeping its start time; ``names[0]`` is its timer line's template.

    Starting twice is an error that keeps the first start, and finishing
    unstarted sends nothing, as with a :class:`~baseplate.metrics.Timer`.
    """

    __slots__ = ("batch", "names", "start")

    def __init__(self, batch: Batch, names: tuple[bytes, ...]) -> None:
        self.batch = batch
        self.names = names
        self.start: float | None = None

    def on_start(self) -> None:
        if self.start is not None:
            raise _timer_error(self.names[0], "already started")
        self.start = time.time()

    def on_finish(self, exc_info: ExcInfo | None) -> None:
        start = self.start
        template = self.names[0]
        if start is None:
            raise _timer_error(template, "stopped before it was started")
        milliseconds = (time.time() - start) * 1000.0
        self.batch.transport.buffer.append(
            template % milliseconds
            if type(milliseconds) is float
            else _timer_line(template, milliseconds)
        )


class _DirectCountedSpanObserver(_DirectTimedSpanObserver):
    """Times a span and counts ``<name>.success`` or ``<name>.failure``."""

    __slots__ = ()
    names: CountedNames

    def __init__(self, batch: Batch, names: CountedNames) -> None:
        self.batch = batch
        self.names = names
        self.start = None

    def on_finish(self, exc_info: ExcInfo | None) -> None:
        start = self.start
        names = self.names
        if start is None:
            raise _timer_error(names[0], "stopped before it was started")
        milliseconds = (time.time() - start) * 1000.0
        batch = self.batch
        batch.transport.buffer.append(
            names[0] % milliseconds
            if type(milliseconds) is float
            else _timer_line(names[0], milliseconds)
        )
        name = names[2] if exc_info is not None and exc_info[0] is not None else names[1]
        counters = batch.counters
        counter = counters.get(name)
        if counter is None:
            counters[name] = counter = BatchCounter(batch.transport, name)
            counter.packets[1.0] = 1
        else:
            packets = counter.packets
            packets[1.0] = packets.get(1.0, 0) + 1


class MetricsServerSpanObserver(_DirectCountedSpanObserver, ServerSpanObserver):
    """Times the request and counts its outcome; flushes the batch at the end."""

    __slots__ = ("clients", "tables")

    def __init__(self, batch: Batch, names: CountedNames, tables: NameTables) -> None:
        self.batch = batch
        self.names = names
        self.start = None
        self.tables = tables
        self.clients = tables.clients

    def on_child_span_created(self, span: Span) -> None:
        if span.native is True:
            if getattr(span.otel_span, "kind", None) in _DEPENDENCY_KINDS:
                span.register(MetricsNativeClientSpanObserver(self.batch, span))
            else:
                native_names = self.tables.client_names(semconv.safe_component(span.name))
                span.register(MetricsClientSpanObserver(self.batch, native_names))
            return
        component = span.component_name
        if component is None:
            names = self.clients.get(span.name)
            if names is None:
                names = self.tables.client_names(span.name)
            # Span.register's own append, without the call: this runs for every child.
            span.observers.append(MetricsClientSpanObserver(self.batch, names))
        else:
            local_names = self.tables.local_names(component, span.name)
            span.register(MetricsLocalSpanObserver(self.batch, local_names))

    def on_finish(self, exc_info: ExcInfo | None) -> None:
        _DirectCountedSpanObserver.on_finish(self, exc_info)
        self.batch.flush()


class MetricsClientSpanObserver(_DirectCountedSpanObserver):
    """Times a call to another service and counts its outcome and errors."""

    __slots__ = ()

    def on_log(self, name: str, payload: Any) -> None:
        if name == "error.object":
            self.batch.counter(f"errors.{type(payload).__name__}").increment()


class MetricsLocalSpanObserver(_DirectTimedSpanObserver):
    """Times a local span as ``<component>.<name>``."""

    __slots__ = ()


# -- Any batch, through its API ---------------------------------------------------------
#
# These take the finished metric name from whoever makes them, so that making
# one (once per span) is a single __init__ call.


class _BatchApiTimedSpanObserver(SpanObserver):
    """Times a span into the request's batch as ``timer_name``."""

    __slots__ = ("batch", "timer")

    def __init__(self, batch: Batch, timer_name: str) -> None:
        self.batch = batch
        self.timer = batch.timer(timer_name)

    def on_start(self) -> None:
        self.timer.start()

    def on_finish(self, exc_info: ExcInfo | None) -> None:
        self.timer.stop()


class _BatchApiCountedSpanObserver(_BatchApiTimedSpanObserver):
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


class BatchApiServerSpanObserver(_BatchApiCountedSpanObserver, ServerSpanObserver):
    """Times the request and counts its outcome, through the batch's API; flushes it at the end."""

    __slots__ = ()

    def on_child_span_created(self, span: Span) -> None:
        if span.native is True:
            span.register(_native_child_observer(self.batch, span))
        elif span.component_name is None:
            span.register(BatchApiClientSpanObserver(self.batch, "clients." + span.name))
        else:
            span.register(
                _BatchApiTimedSpanObserver(self.batch, f"{span.component_name}.{span.name}")
            )

    def on_finish(self, exc_info: ExcInfo | None) -> None:
        _BatchApiCountedSpanObserver.on_finish(self, exc_info)
        self.batch.flush()


class MetricsNativeServerSpanObserver(BatchApiServerSpanObserver):
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


class _ErrorCountingObserver(SpanObserver):
    """Counts each ``error.object`` log of a call as ``errors.<class of the error>``."""

    __slots__ = ()
    batch: Batch

    def on_log(self, name: str, payload: Any) -> None:
        if name == "error.object":
            self.batch.counter(f"errors.{type(payload).__name__}").increment()


class BatchApiClientSpanObserver(_ErrorCountingObserver, _BatchApiCountedSpanObserver):
    """Times a call to another service and counts its outcome and errors, through the API."""

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
    return BatchApiClientSpanObserver(batch, "clients." + semconv.safe_component(span.name))
