"""Several exporters in one process, each taking only the spans that belong to it.

A process has one tracer provider, but it may hold several independent
sources of spans, each with its own destination and root sample rate: every
test of an application's suite builds its own instrumented service, and an
in-process client and server may be traced by two. Adding each destination's
processor to the provider would send every span to every destination.

Instead each destination is an :class:`ExportRoute`, and the provider gets one
:class:`RoutingSpanProcessor` that hands each ended span to the route it
belongs to:

* a caller that creates spans itself names the route in the
  :class:`~bridge.creation.SpanRequest` of each span, puts it in the context
  that makes the span current under :data:`ROUTE_KEY`, and ends the span with
  :func:`end_span`;
* a span created by another library through the OpenTelemetry API follows
  the route named in its parent's context; where the context names none, the
  route of its parent span (itself created by another library, and routed
  when it started, or later with :meth:`RoutingSpanProcessor.route_open_span`),
  and otherwise :attr:`RoutingSpanProcessor.default` (work outside any routed
  span).

Processors added to the provider directly still see every span.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Final

from opentelemetry import trace
from opentelemetry.context import Context, create_key, get_current
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from bridge import creation
from bridge.processor import span_key

logger = logging.getLogger(__name__)

#: The context key naming the route of the spans started in that context;
#: its value may be None: such spans go nowhere.
ROUTE_KEY: Final = create_key("bridge-export-route")


class ExportRoute:
    """A destination for spans, and how the traces it starts are sampled.

    :param processor: Receives the ended spans of the route (``on_end``
        only: batching and exporting processors do nothing at start); None
        drops them.
    :param root_ratio: The share of new traces started on this route that
        are sampled, or None for the sampler's own ratio.
    :param marks_shared_spans: Whether the route's exporter reports Zipkin's
        ``shared`` flag, so that spans sharing their caller's span id should
        carry :data:`bridge.zipkin_records.SHARED_ATTRIBUTE`.
    :param records_unsampled: Whether the route's processor reads unsampled
        spans too (tail sampling decides on them when their trace ends), so
        that they must be recorded (see :mod:`bridge.recording`).
    """

    __slots__ = ("marks_shared_spans", "processor", "records_unsampled", "root_ratio")

    def __init__(
        self,
        processor: SpanProcessor | None = None,
        root_ratio: float | None = None,
        marks_shared_spans: bool = False,
        records_unsampled: bool = False,
    ):
        if root_ratio is not None and not 0.0 <= root_ratio <= 1.0:
            raise ValueError(f"root sampling ratio must be between 0 and 1, not {root_ratio!r}")
        self.processor = processor
        self.root_ratio = root_ratio
        self.marks_shared_spans = marks_shared_spans
        self.records_unsampled = records_unsampled

    def __repr__(self) -> str:
        return f"ExportRoute(processor={self.processor!r}, root_ratio={self.root_ratio})"


class _Unset:
    """No route was named for the span being ended."""


_UNSET: Final = _Unset()
_ending: ContextVar[ExportRoute | _Unset] = ContextVar("bridge_ending_route", default=_UNSET)


def end_span(span: trace.Span, route: ExportRoute) -> None:
    """End ``span`` (started under an owned request), sending it down ``route``."""
    token = _ending.set(route)
    try:
        span.end()
    finally:
        _ending.reset(token)


class RoutingSpanProcessor(SpanProcessor):
    """Hands each ended span to the processor of its route.

    Spans started under an owned :class:`~bridge.creation.SpanRequest` are
    routed when they end, by :func:`end_span`; an owned span ended otherwise
    goes nowhere. The routes of other spans are read from their parent's
    context when they start and kept by span id until they end.
    """

    def __init__(self) -> None:
        #: Where spans started outside any routed context go (None: nowhere).
        self.default: ExportRoute | None = None
        self._routes: list[ExportRoute] = []
        self._open: dict[tuple[int, int], ExportRoute] = {}

    def add_route(self, route: ExportRoute) -> None:
        """Own ``route`` (flush and shut it down with the provider) and make it the default."""
        if route not in self._routes:
            self._routes.append(route)
        self.default = route

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Remember the route of a span another library started."""
        request = creation.pending()
        if request is not None and request.owned:
            return
        context = get_current() if parent_context is None else parent_context
        named = context.get(ROUTE_KEY, _UNSET)
        route: object = named
        if isinstance(named, _Unset):
            parent = span.parent
            route = self._open.get(span_key(parent)) if parent is not None else None
            if route is None:
                route = self.default
        if isinstance(route, ExportRoute):
            # setdefault: route_open_span may have routed it already.
            self._open.setdefault(span_key(span.get_span_context()), route)

    def route_open_span(self, span: Span, route: ExportRoute) -> None:
        """Send ``span`` (started by another library, still open) down ``route``.

        Its children started afterwards follow it there.
        """
        self._open[span_key(span.get_span_context())] = route

    def on_end(self, span: ReadableSpan) -> None:
        """Pass the span to its route's processor."""
        route = _ending.get()
        if isinstance(route, _Unset):
            if not self._open or span.context is None:
                return
            found = self._open.pop(span_key(span.context), None)
            if found is None:
                return
            route = found
        processor = route.processor
        if processor is None:
            return
        try:
            processor.on_end(span)
        except Exception:
            logger.exception("span processor %r failed on span %r", processor, span.name)

    def shutdown(self) -> None:
        """Shut down the processor of every route, as the provider does its own."""
        for route in self._routes:
            if route.processor is not None:
                route.processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the processor of every route."""
        flushed = True
        for route in self._routes:
            if route.processor is not None:
                flushed = route.processor.force_flush(timeout_millis) and flushed
        return flushed
