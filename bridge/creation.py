"""Per-call instructions for a span that is about to be created.

OpenTelemetry's tracer asks the provider's id generator and sampler about each
new span, but ``start_span`` has no arguments for them. A caller that must
choose a span's ids (a server span taking the ids its upstream chose) or its
sampling decision (an upstream's ``sampled`` flag or debug flag) states them
in a :class:`SpanRequest` and starts the span through :func:`start_span`; the
bridge's id generator, sampler and span processor read the request while the
span is being created.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from bridge.routing import ExportRoute


class SpanRequest:
    """What the caller decided about the span it is creating.

    :param trace_id: The trace id to use when the span has no valid parent.
    :param span_id: The span's own id.
    :param sampled: A forced sampling decision; None lets the sampler decide.
    :param decide_as_root: Ignore the parent's sampling flag and apply the
        root ratio (an upstream that sent ids but no decision).
    :param owned: The caller reports this span to its observers itself, so the
        bridge's span processor leaves it alone.
    :param route: Where the span is exported (see :mod:`bridge.routing`);
        its root ratio applies when the sampler decides as for a root.
    """

    # A plain slotted class: one is made per span, and a frozen dataclass
    # costs several times more to construct.
    __slots__ = ("decide_as_root", "owned", "route", "sampled", "span_id", "trace_id")

    def __init__(
        self,
        trace_id: int | None = None,
        span_id: int | None = None,
        sampled: bool | None = None,
        decide_as_root: bool = False,
        owned: bool = True,
        route: ExportRoute | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled
        self.decide_as_root = decide_as_root
        self.owned = owned
        self.route = route

    def __repr__(self) -> str:
        return (
            f"SpanRequest(trace_id={self.trace_id}, span_id={self.span_id}, "
            f"sampled={self.sampled}, decide_as_root={self.decide_as_root}, owned={self.owned}, "
            f"route={self.route!r})"
        )


#: The request for an owned span with no other instructions.
OWNED = SpanRequest()

_pending: ContextVar[SpanRequest | None] = ContextVar("bridge_span_request", default=None)


#: ``pending()``: the request for the span being created right now, if any.
#: The context variable's own method, with no Python frame around it: the
#: sampler, the id generator and the span processor each ask for every span.
pending: Callable[[], SpanRequest | None] = _pending.get


def start_span(
    tracer: trace.Tracer,
    name: str,
    context: Context,
    kind: trace.SpanKind,
    request: SpanRequest,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> trace.Span:
    """Start a span (without making it current) under the given request."""
    token = _pending.set(request)
    try:
        return tracer.start_span(name, context=context, kind=kind, attributes=attributes)
    finally:
        _pending.reset(token)
