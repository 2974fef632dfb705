"""Requests whose root span another library started, reported to a Baseplate.

An application served through an OpenTelemetry instrumentor (Flask, FastAPI,
...) or a worker that opens its own root spans has no Baseplate integration
in its request path. When its :class:`~baseplate.core.Baseplate` is asked to
(:meth:`~baseplate.core.Baseplate.observe_native_root_spans`), the bridge's
span processor hands each such root span (kind SERVER or CONSUMER, local
root of its trace) to a :class:`NativeRootAdopter`, which gives it a
:class:`~baseplate.core.NativeServerSpan` and a context object and announces
both to the Baseplate's observers, exactly as an integration does for its
own requests. The span's children, native or not, reach the observers as
child spans, and its end as the end of the request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import Span as SdkSpan

from baseplate.core._spans import NativeServerSpan
from bridge import provider

if TYPE_CHECKING:
    from baseplate.core._baseplate import Baseplate


class NativeRequestContext:
    """The context object of a request whose root span another library started.

    Observers attach to it what they attach to an integration's context
    (``trace``, ``metrics``, ``sentry``, context factories' attributes).

    .. versionadded:: 0.31
    """

    trace: NativeServerSpan

    def __repr__(self) -> str:
        return f"<NativeRequestContext {sorted(vars(self))}>"


class NativeRootAdopter:
    """Makes native root spans requests of ``baseplate`` (a bridge root-span adopter)."""

    def __init__(self, baseplate: Baseplate) -> None:
        self.baseplate = baseplate

    def adopt_root_span(self, span: SdkSpan) -> NativeServerSpan:
        """Announce a new request to the observers; the server span owns the native one."""
        context: Any = NativeRequestContext()
        server_span = NativeServerSpan(span, context)
        self.baseplate.announce_server_span(context, server_span)
        route = server_span.export_route
        if route is not None:
            provider.route_open_span(span, route)
        server_span.announce_start()
        return server_span

    def __repr__(self) -> str:
        return f"<NativeRootAdopter of {self.baseplate!r}>"
