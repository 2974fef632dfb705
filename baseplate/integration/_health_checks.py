"""Server spans for health checks: the application sees them, tracing and metrics do not.

Liveness probes come every few seconds from every instance of a service's
orchestrator; traced and timed like requests, they would outnumber real
traffic in the trace store and flatten the server metrics. So by default
the integrations give a health check a server span of its own kind: a new,
unsampled trace (nothing exports it, and downstream calls it makes carry
the decision), announced to every observer except the tracing and metrics
ones. Context attributes, the logging observer's trace id and error
reporting work as in any request; ``context.metrics`` is not set.
"""

from __future__ import annotations

from typing import Any

from baseplate.core import Baseplate, BaseplateObserver, ServerSpan
from baseplate.core._trace_info import TraceInfo

#: The method of ``BaseplateService`` that ``baseplate-healthcheck thrift`` calls.
THRIFT_HEALTH_CHECK_METHOD = "is_healthy"

#: The key of the Pyramid registry holding the names of the health check routes.
PYRAMID_HEALTH_ROUTES_KEY = "baseplate.health_check_routes"


def _telemetry_observer_types() -> tuple[type[BaseplateObserver], ...]:
    # Imported here: only health checks need them, and an application that
    # neither traces nor sends metrics need not load them at all.
    from baseplate.diagnostics.metrics import MetricsBaseplateObserver
    from baseplate.diagnostics.tracing import TraceBaseplateObserver

    return (MetricsBaseplateObserver, TraceBaseplateObserver)


def make_health_check_span(baseplate: Baseplate, context: Any, name: str) -> ServerSpan:
    """Make the server span of a health check and set it as ``context.trace``.

    The span is unsampled, and the tracing and metrics observers do not
    hear of it; the other observers do, as of any server span.
    """
    trace_info = TraceInfo.new()
    server_span = ServerSpan(
        trace_info.trace_id, None, trace_info.span_id, False, None, name, context
    )
    context.trace = server_span
    telemetry = _telemetry_observer_types()
    for observer in baseplate.observers:
        if not isinstance(observer, telemetry):
            observer.on_server_span_created(context, server_span)
    return server_span
