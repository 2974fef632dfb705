"""Reports spans created through the OpenTelemetry API to their owners.

An *owner* is any object that wants to hear about the spans started under a
span of its own. An owner is named in the context that makes its span
current, under :data:`OWNER_KEY` as the pair ``(span, owner)``: Baseplate's
span facade does that for each of its spans, at no cost beyond the context it
builds anyway. When another library (an OpenTelemetry instrumentation, say)
starts a span whose parent has an owner, :class:`OwnerNotifyingSpanProcessor`
asks that owner to adopt it, and tells the adopted span's owner when it ends
(adopted spans are tracked by id until then, since their libraries make them
current themselves; each processor keeps its own account). The bridge knows
nothing about the owners beyond :class:`SpanOwner`.

A span with no owner above it that is the local root of its trace (no parent,
or a remote one) and serves a request (kind SERVER or CONSUMER) is offered to
the :class:`RootSpanAdopter` set with :func:`set_root_span_adopter`, if any:
that is how an application served by an OpenTelemetry instrumentor (Flask,
FastAPI, a worker opening its own root spans) reaches Baseplate's observers.
"""

from __future__ import annotations

import logging
from typing import Protocol

from opentelemetry import trace
from opentelemetry.context import Context, create_key, get_current
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanContext, SpanKind

from bridge import creation
from bridge._state import state
from bridge.failures import FailureLog

logger = logging.getLogger(__name__)

#: The context key under which ``(span, owner)`` names the owner of the span
#: that the context makes current.
OWNER_KEY = create_key("bridge-span-owner")


class SpanOwner(Protocol):
    """Hears about the spans started under the span it owns.

    Implementations are called synchronously in the thread that starts or
    ends the span; exceptions they raise are counted and swallowed, and the
    first of each owner class and method is logged with its traceback.
    """

    def adopt_span(self, span: Span) -> SpanOwner | None:
        """A span was started under the owned span; return the new span's owner, if any."""

    def adopted_span_ended(self, span: ReadableSpan) -> None:
        """The span this owner adopted, or was registered for, has ended."""


class RootSpanAdopter(Protocol):
    """Takes on the local root spans of requests that no owner started."""

    def adopt_root_span(self, span: Span) -> SpanOwner | None:
        """A request's root span was started; return its owner, if any."""


_ROOT_KINDS = frozenset((SpanKind.SERVER, SpanKind.CONSUMER))


def set_root_span_adopter(adopter: RootSpanAdopter | None) -> None:
    """Offer the root spans of requests to ``adopter`` from now on (None: to nobody).

    One adopter per process: the last one set replaces any before it.
    """
    state.root_adopter = adopter


def span_key(span_context: SpanContext) -> tuple[int, int]:
    """The key under which a processor keeps what it learnt of a span at its
    start until its end (span ids alone may repeat across traces)."""
    return (span_context.trace_id, span_context.span_id)


def live_owner_count() -> int:
    """How many adopted spans the process's provider still has open (for leak checks)."""
    processor = state.owner_processor
    return 0 if processor is None else processor.live_owner_count()


class OwnerNotifyingSpanProcessor(SpanProcessor):
    """Offers each span started through the OpenTelemetry API to its parent's owner.

    Spans started under an owned :class:`~bridge.creation.SpanRequest` are
    skipped: whoever created them reports them already. The owners of the
    adopted spans still open are kept here until those spans end.
    """

    def __init__(self) -> None:
        self._owners: dict[tuple[int, int], SpanOwner] = {}
        #: Owners and root span adopters that raised.
        self.failures = FailureLog(logger)

    def live_owner_count(self) -> int:
        """How many adopted spans are still open (for leak checks)."""
        return len(self._owners)

    def _owner_of(self, parent_context: Context | None) -> SpanOwner | None:
        context = get_current() if parent_context is None else parent_context
        parent = trace.get_current_span(context)
        entry = context.get(OWNER_KEY)
        if isinstance(entry, tuple) and entry[0] is parent:
            owner: SpanOwner = entry[1]
            return owner
        return self._owners.get(span_key(parent.get_span_context()))

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Ask the parent's owner, if any, to adopt the new span."""
        request = creation.pending()
        if request is not None and request.owned:
            return
        owner = self._owner_of(parent_context)
        if owner is None:
            self._offer_root(span)
            return
        try:
            child_owner = owner.adopt_span(span)
        except Exception:
            message = f"span owner {owner!r} failed to adopt span {span.name!r}"
            self._report(owner, "adopt_span", message)
            return
        if child_owner is not None:
            self._owners[span_key(span.get_span_context())] = child_owner

    def _offer_root(self, span: Span) -> None:
        adopter = state.root_adopter
        if adopter is None or span.kind not in _ROOT_KINDS:
            return
        parent = span.parent
        if parent is not None and not parent.is_remote:
            return
        try:
            owner = adopter.adopt_root_span(span)
        except Exception:
            message = f"{adopter!r} failed to adopt root span {span.name!r}"
            self._report(adopter, "adopt_root_span", message)
            return
        if owner is not None:
            self._owners[span_key(span.get_span_context())] = owner

    def on_end(self, span: ReadableSpan) -> None:
        """Tell the ended span's owner, if it has one."""
        owners = self._owners
        if not owners or span.context is None:
            return
        owner = owners.pop(span_key(span.context), None)
        if owner is None:
            return
        try:
            owner.adopted_span_ended(span)
        except Exception:
            message = f"span owner {owner!r} failed on the end of span {span.name!r}"
            self._report(owner, "adopted_span_ended", message)

    def _report(self, culprit: object, method: str, message: str) -> None:
        """Count the exception being handled; log the first of its class and method in full."""
        self.failures.report((type(culprit), method), message, exc_info=True)

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered."""
        return True
