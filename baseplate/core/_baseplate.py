"""The Baseplate object: the root of an application's instrumentation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanContext

from baseplate.core._observers import BaseplateObserver
from baseplate.core._spans import ServerSpan
from baseplate.core._trace_info import TraceInfo
from bridge import provider
from bridge.ids import random_id

if TYPE_CHECKING:
    from baseplate.context import ContextFactory
    from baseplate.diagnostics.tracing import TracingClient
    from baseplate.metrics import Client


class Baseplate:
    """The core of the Baseplate diagnostics framework.

    This class coordinates monitoring and tracing of service calls made to
    and from this service. See :mod:`baseplate.integration.pyramid` and
    :mod:`baseplate.integration.thrift` for how to integrate it with the
    application framework you are using.
    """

    def __init__(self) -> None:
        self.observers: list[BaseplateObserver] = []

    def register(self, observer: BaseplateObserver) -> None:
        """Register an observer."""
        self.observers.append(observer)

    def configure_logging(self) -> None:
        """Add request context to the logging system."""
        from baseplate.diagnostics.logging import LoggingBaseplateObserver

        self.register(LoggingBaseplateObserver())

    def configure_metrics(self, metrics_client: Client) -> None:
        """Send timing metrics to the given client.

        This also adds a :class:`baseplate.metrics.Batch` object to the
        ``metrics`` attribute on the context object where you can add your
        own application-specific metrics. The batch is automatically flushed
        at the end of the request.
        """
        from baseplate.diagnostics.metrics import MetricsBaseplateObserver

        self.register(MetricsBaseplateObserver(metrics_client))

    def configure_tracing(self, tracing_client: TracingClient, *args: Any, **kwargs: Any) -> None:
        """Collect and send span information for request tracing.

        :param tracing_client: A
            :class:`baseplate.diagnostics.tracing.TracingClient`.

        Unless the application chose its propagators (``OTEL_PROPAGATORS``,
        or its own global propagator), this also makes OpenTelemetry's global
        propagator write both Baseplate's ``X-Trace`` headers and W3C
        ``traceparent`` (and pass baggage through), so calls made by
        OpenTelemetry-instrumented clients continue the trace in Baseplate
        and OpenTelemetry services alike (see
        :func:`bridge.propagation.use_baseplate_and_w3c_propagation`).

        .. versionchanged:: 0.31
           Sets the default propagator.
        """
        from baseplate.diagnostics.tracing import TraceBaseplateObserver
        from bridge.propagation import use_baseplate_and_w3c_propagation

        use_baseplate_and_w3c_propagation()

        self.register(TraceBaseplateObserver(tracing_client, *args, **kwargs))

    def configure_error_reporting(self, client: Any) -> None:
        """Send reports for unexpected exceptions to the given client.

        This also adds the client to the ``sentry`` attribute on the context
        object, where you can send your own application-specific events.
        """
        from baseplate.diagnostics.sentry import (
            SentryBaseplateObserver,
        )

        self.register(SentryBaseplateObserver(client))

    def add_to_context(self, name: str, context_factory: ContextFactory) -> None:
        """Add an attribute to each request's context object.

        On each request, the factory will be asked to create an appropriate
        object to attach to the context object.

        :param name: The attribute on the context object to attach the
            created object to. This may also be used for metric/tracing
            purposes so it should be descriptive.
        :param context_factory: A factory.
        """
        from baseplate.context import ContextObserver

        self.register(ContextObserver(name, context_factory))

    def make_server_span(
        self,
        context: Any,
        name: str,
        trace_info: TraceInfo | None = None,
        *,
        remote_parent: SpanContext | None = None,
    ) -> ServerSpan:
        """Return a server span representing the request we are handling.

        In a server, a server span represents the time spent on a single
        incoming request. Any calls made to downstream services will be new
        child spans of the server span, and the server span will in turn be
        the child span of whatever upstream request it is part of, if any.
        The span is also set as ``context.trace``.

        :param context: The context object for this request.
        :param name: A name to identify the type of this request, e.g. a
            route or RPC method name.
        :param trace_info: The trace context of this request as passed in
            from upstream. If None, a new trace context will be generated.
            A ``trace_info`` that names a parent (``parent_id`` not None)
            carries the span id the caller chose for this call: the server
            span takes it, as Zipkin's *shared* span.
        :param remote_parent: The caller's span, when the caller follows
            OpenTelemetry's model (a W3C ``traceparent``): the server span is
            its child, with a span id of its own (``trace_info.span_id``),
            and keeps the caller's full trace id (up to 128 bits) and trace
            state in the OpenTelemetry export. ``trace_info`` then carries
            the low 64 bits of the trace id, which is what Baseplate headers
            sent downstream carry.

        .. versionchanged:: 0.31
           ``remote_parent`` is new.
        """
        if trace_info is None:
            # What TraceInfo.new() holds, without making one: one random id
            # is both trace and span id.
            new_id = random_id()
            server_span = ServerSpan(new_id, None, new_id, None, None, name, context)
        else:
            server_span = ServerSpan(
                trace_info.trace_id,
                trace_info.parent_id,
                trace_info.span_id,
                trace_info.sampled,
                trace_info.flags,
                name,
                context,
            )
        if remote_parent is not None:
            server_span._remote_parent = remote_parent
        elif trace_info is not None and trace_info.parent_id is not None:
            server_span._shared = True
        self.announce_server_span(context, server_span)
        return server_span

    def announce_server_span(self, context: Any, server_span: ServerSpan) -> None:
        """Make ``server_span`` the context's ``trace`` and tell every observer of it.

        What :meth:`make_server_span` does with the span it makes; for
        integrations that make their own kind of server span.

        .. versionadded:: 0.31
        """
        context.trace = server_span
        for observer in self.observers:
            observer.on_server_span_created(context, server_span)

    def observe_native_root_spans(self) -> None:
        """Report requests whose root span another library started to this Baseplate.

        For an application served through an OpenTelemetry instrumentor
        (Flask, FastAPI, ...) or a worker that opens its own root spans: each
        span of kind SERVER or CONSUMER that is the local root of its trace
        (no parent, or a remote one) and was not started by Baseplate becomes
        a request of this Baseplate. Its observers hear of it as of any
        server span (a :class:`~baseplate.core.NativeServerSpan` on a
        :class:`~baseplate.core.NativeRequestContext`): the metrics observer
        times ``server.<name>`` (the span's name, made statsd-safe), Sentry
        reports its errors, the logging observer tags its records, tracing
        exports it, and its children reach them as child spans.

        One Baseplate per process receives native root spans: the last one
        to call this.

        .. versionadded:: 0.31
        """
        from baseplate.core._native_roots import NativeRootAdopter
        from bridge.processor import set_root_span_adopter

        provider.get_tracer_provider()  # the bridge's processor offers the spans
        set_root_span_adopter(NativeRootAdopter(self))
