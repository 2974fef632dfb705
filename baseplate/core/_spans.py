"""The span facade: Baseplate's spans, each backed by one OpenTelemetry span.

A facade span keeps the attributes and methods of the original Baseplate
(``trace_id``, ``parent_id``, ``id``, ``sampled``, ``flags``, ``name``,
``context``; ``start``, ``set_tag``, ``log``, ``finish``, ``make_child``) and
calls its observers directly. Underneath, ``start()`` starts an OpenTelemetry
span with the same ids and makes it the current span; ``finish()`` ends it and
restores what was current before. Spans that other libraries create through
the OpenTelemetry API while a facade span is current are adopted as children
(see :mod:`bridge.processor`), so observers see them too.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from baseplate._state import state as _baseplate_state
from baseplate.core._observers import ExcInfo, SpanObserver
from baseplate.core._wrapped_context import WrappedRequestContext
from baseplate.metrics import Batch
from bridge import creation, current, exception_events, processor, provider, recording, routing
from bridge._otel_internals import add_number_attributes, child_span_context
from bridge.ids import DEBUG_FLAG, MAX_ID, random_id
from bridge.zipkin_records import DEBUG_ATTRIBUTE, LOCAL_COMPONENT_ATTRIBUTE, SHARED_ATTRIBUTE

if TYPE_CHECKING:
    from bridge.greenlet_cost import GreenletCostTracker, RequestCost

logger = logging.getLogger(__name__)

#: ``(otel span, facade span)`` for the facade span current in a context: the
#: bridge's processor finds the owner of native child spans there, and
#: finishing walks back past finished facade spans with it.
_OWNER_KEY = processor.OWNER_KEY
_OTEL_SPAN_KEY = current.CURRENT_SPAN_KEY
_bridge_state = provider.state
_get_current = current.get_current
_attach = current.attach
_enter = current.enter
_NonRecordingSpan = trace.NonRecordingSpan
#: The trace flags of a span by its sampling decision.
_FLAGS = {
    True: trace.TraceFlags(trace.TraceFlags.SAMPLED),
    False: trace.TraceFlags(trace.TraceFlags.DEFAULT),
}


def _report_observer_failure(observer: object, event: str) -> None:
    """Count an observer's exception: the first of each class and method is logged in full."""
    _baseplate_state.observer_failures.report(
        (type(observer), event), f"observer {observer!r} failed in {event}", exc_info=True
    )


#: Tag values and log payloads of these types become attributes as they are;
#: any other value becomes its ``str()``.
_PRIMITIVE_TYPES = frozenset((str, bool, int, float))


class _NativeSpanOwner:
    """What makes a facade span the owner of the spans other libraries start under it.

    The bridge's span processor finds a facade span named as the owner of its
    OpenTelemetry span in the context that makes it current, and calls these
    methods of :class:`bridge.processor.SpanOwner` on it. They are kept out of
    :class:`Span`, whose methods are the documented API; a span is still its
    own owner, so making it current costs no object of its own.
    """

    __slots__ = ()

    def adopt_span(self, span: SdkSpan) -> _AdoptedSpan:
        """Report a span another library started under this one to the observers."""
        parent = cast("Span", self)
        child = _AdoptedSpan(parent, span)
        parent._notify("on_child_span_created", child)
        child._notify("on_start")
        return child

    def adopted_span_ended(self, span: ReadableSpan) -> None:
        """Only adopted spans are told about their end (see :class:`_NativeSpan`)."""


class Span(_NativeSpanOwner):
    """A span represents a single RPC within a system.

    While a client span is current, OpenTelemetry instrumentation is
    suppressed: the call it wraps is already traced, and one call should be
    one span.
    """

    _kind = SpanKind.CLIENT
    _suppresses_instrumentation = True
    #: True for a span that another library started through the
    #: OpenTelemetry API, which the facade only reports to observers.
    #:
    #: .. versionadded:: 0.31
    native = False
    #: The caller's span when it follows OpenTelemetry's model (W3C
    #: ``traceparent``): this span becomes its child, keeping the caller's
    #: 128-bit trace id and trace state. None: the ids of the span decide.
    _remote_parent: trace.SpanContext | None = None
    #: Whether this server span took its span id from its caller (Zipkin's
    #: shared span, the Baseplate header model); marked on the span only for
    #: routes whose exporter reports it.
    _shared = False
    #: Whether the OpenTelemetry span underneath records (see
    #: :mod:`bridge.recording`); False once it started as a ``NonRecordingSpan``.
    _recording = True
    # What most spans keep as they are, read from the class until a span sets
    # its own: one span is made per operation, and each attribute set in
    # __init__ costs it time.
    component_name: str | None = None
    #: Where this span is exported: set on a server span by the tracing
    #: observer of the Baseplate that made it, and inherited by children
    #: (see :mod:`bridge.routing`). None: the span is exported by no
    #: tracing client (processors added to the provider still see it).
    #:
    #: .. versionadded:: 0.31
    export_route: routing.ExportRoute | None = None
    _parent: Span | None = None
    _otel_span: trace.Span | None = None
    _previous_context: otel_context.Context | None = None
    _finished = False

    def __init__(
        self,
        trace_id: int,
        parent_id: int | None,
        span_id: int,
        sampled: bool | None,
        flags: int | None,
        name: str,
        context: Any,
    ) -> None:
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.id = span_id
        self.sampled = sampled
        self.flags = flags
        self.name = name
        self.context = context
        self.observers: list[SpanObserver] = []

    @property
    def otel_span(self) -> trace.Span | None:
        """The OpenTelemetry span underneath, once started.

        .. versionadded:: 0.31
        """
        return self._otel_span

    def register(self, observer: SpanObserver) -> None:
        """Register an observer to receive events from this span."""
        self.observers.append(observer)

    def _notify(self, event: str, *args: Any) -> None:
        # For spans other libraries started. start, set_tag, log, finish and
        # make_child each call the observers in a loop of their own instead:
        # the name lookup and argument tuple here make each call about twice
        # as slow, some 4% of a request in benchmarks/span_overhead.
        for observer in self.observers:
            try:
                getattr(observer, event)(*args)
            except Exception:
                _report_observer_failure(observer, event)

    # -- OpenTelemetry side -------------------------------------------------

    def _start_otel_span(self, previous: otel_context.Context) -> trace.Span:
        """Start the OpenTelemetry span in the general case (see :meth:`start`)."""
        parent = self._parent
        debug = self.flags is not None and self.flags & DEBUG_FLAG
        if parent is not None and parent._otel_span is not None:
            context = previous
            if previous.get(_OTEL_SPAN_KEY) is not parent._otel_span:
                context = trace.set_span_in_context(parent._otel_span, previous)
        elif self._remote_parent is not None:
            remote = self._remote_parent
            if debug and not remote.trace_flags.sampled:
                remote = trace.SpanContext(
                    remote.trace_id,
                    remote.span_id,
                    is_remote=True,
                    trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
                    trace_state=remote.trace_state,
                )
            context = trace.set_span_in_context(trace.NonRecordingSpan(remote), previous)
        elif not self.parent_id:
            context = trace.set_span_in_context(trace.INVALID_SPAN, previous)
        else:
            sampled = debug or (self.sampled if parent is None else None)
            remote_parent = trace.SpanContext(
                self.trace_id,
                self.parent_id,
                is_remote=True,
                trace_flags=trace.TraceFlags(
                    trace.TraceFlags.SAMPLED if sampled else trace.TraceFlags.DEFAULT
                ),
            )
            context = trace.set_span_in_context(trace.NonRecordingSpan(remote_parent), previous)
        if parent is not None and not debug:
            # A child follows its parent's sampling decision.
            request = creation.SpanRequest(self.trace_id, self.id, route=self.export_route)
        else:
            request = creation.SpanRequest(
                trace_id=self.trace_id,
                span_id=self.id,
                sampled=True if debug else (self.sampled if parent is None else None),
                decide_as_root=parent is None and self.sampled is None,
                route=self.export_route,
            )
        attributes: dict[str, AttributeValue] = {}
        if self.component_name is not None:
            attributes[LOCAL_COMPONENT_ATTRIBUTE] = self.component_name
        if debug:
            attributes[DEBUG_ATTRIBUTE] = True
        return self._start_sdk_span(context, request, attributes or None)

    def _start_sdk_span(
        self,
        context: otel_context.Context,
        request: creation.SpanRequest,
        attributes: dict[str, AttributeValue] | None = None,
    ) -> trace.Span:
        """Start the recording span; take its ids if the provider chose others."""
        otel_span = creation.start_span(
            provider.get_tracer(), self.name, context, self._kind, request, attributes
        )
        if not (_bridge_state.keeps_requested_ids and self.id and self.trace_id):
            # The application's own provider chose the ids (or zero, which is
            # invalid to OpenTelemetry, was replaced): follow them, so that
            # what is propagated downstream matches the exported trace.
            span_context = otel_span.get_span_context()
            self.trace_id = span_context.trace_id & MAX_ID
            self.id = span_context.span_id
        return otel_span

    def _sampling_decision(self) -> bool | None:
        """Whether this span is sampled, decided before its OpenTelemetry span exists.

        None when only the SDK's sampler can tell: the application brought
        its own, or the span has neither a started parent nor ids to decide on.
        """
        if self.flags is not None and self.flags & DEBUG_FLAG:
            return True
        parent = self._parent
        if parent is not None:
            parent_span = parent._otel_span
            if parent_span is None:
                return None
            return parent_span.get_span_context().trace_flags.sampled
        if self.sampled is not None:
            return self.sampled
        remote = self._remote_parent
        trace_id = self.trace_id if remote is None else remote.trace_id
        if not trace_id:
            return None
        return recording.root_decision(trace_id, self.export_route)

    def _unrecorded_span(self, sampled: bool) -> trace.Span:
        """A span with this span's ids and the ``sampled`` decision that records nothing."""
        parent = self._parent
        parent_span = None if parent is None else parent._otel_span
        trace_state = None
        if parent_span is not None:
            parent_context = parent_span.get_span_context()
            trace_id = parent_context.trace_id
            trace_state = parent_context.trace_state
        elif self._remote_parent is not None:
            trace_id = self._remote_parent.trace_id
            trace_state = self._remote_parent.trace_state
        else:
            # Zero is invalid to OpenTelemetry: replace it, as the SDK would.
            trace_id = self.trace_id = self.trace_id or random_id()
        if not self.id:
            self.id = random_id()
        span_context = trace.SpanContext(trace_id, self.id, False, _FLAGS[sampled], trace_state)
        return _NonRecordingSpan(span_context)

    def start(self) -> None:
        """Record the start of the span.

        This notifies any observers that the span has started, which
        indicates that timers etc. should start ticking. The span becomes the
        current OpenTelemetry span until it finishes. A span that starts a
        new trace (``sampled`` None) routed to a tracing client takes the
        sampling decision made for it as its ``sampled``, before the
        observers hear of the start.
        """
        previous = _get_current()
        parent = self._parent
        parent_span = None if parent is None else parent._otel_span
        if (
            parent_span is not None
            and previous.get(_OTEL_SPAN_KEY) is parent_span
            and not parent._finished  # type: ignore[union-attr]
            and self.component_name is None
            and not self.flags
        ):
            # Nearly every span: a plain child started while its open parent
            # is current. It shares its parent's trace and decision, and so
            # is recorded if and only if its parent is.
            if parent._recording:  # type: ignore[union-attr]
                otel_span = self._start_sdk_span(
                    previous, creation.SpanRequest(span_id=self.id, route=self.export_route)
                )
            else:
                self._recording = False
                otel_span = _NonRecordingSpan(
                    child_span_context(parent_span.get_span_context(), self.id)
                )
                if self.trace_id != parent.trace_id:  # type: ignore[union-attr]
                    # Made before its parent started and took new ids.
                    self.trace_id = parent.trace_id  # type: ignore[union-attr]
        else:
            previous = _live_context(previous)
            sampled = self._sampling_decision()
            if sampled is not None and not recording.records(sampled, self.export_route):
                # Nothing would read what the SDK records (see
                # bridge.recording): the observers hear of this span from
                # the facade, so its OpenTelemetry span only carries its ids
                # and decision, for native children and propagation.
                self._recording = False
                otel_span = self._unrecorded_span(sampled)
            else:
                otel_span = self._start_otel_span(previous)
                sampled = otel_span.get_span_context().trace_flags.sampled
            if self.sampled is None and self.export_route is not None:
                # A new trace that a tracing client sends somewhere: the
                # decision just made is the one its calls downstream carry.
                self.sampled = sampled
        self._otel_span = otel_span
        self._previous_context = previous
        _enter(previous, otel_span, self, self.export_route, self._suppresses_instrumentation)
        for observer in self.observers:
            try:
                observer.on_start()
            except Exception:
                _report_observer_failure(observer, "on_start")

    def set_tag(self, key: str, value: Any) -> None:
        """Set a tag on the span.

        Tags are arbitrary key/value pairs that add context and meaning to the
        span, such as a hostname or query string. They become attributes of
        the OpenTelemetry span; values other than strings, booleans and
        numbers are recorded as their ``str()``.
        """
        if self._recording and self._otel_span is not None:
            self._otel_span.set_attribute(
                key, value if type(value) in _PRIMITIVE_TYPES else str(value)
            )
        for observer in self.observers:
            try:
                observer.on_set_tag(key, value)
            except Exception:
                _report_observer_failure(observer, "on_set_tag")

    def log(self, name: str, payload: Any = None) -> None:
        """Add a log entry to the span.

        Log entries are timestamped events recording notable moments in the
        lifetime of a span; they become OpenTelemetry span events.
        """
        if self._recording and self._otel_span is not None:
            attributes: dict[str, AttributeValue] | None = None
            if payload is not None:
                primitive = type(payload) in _PRIMITIVE_TYPES
                attributes = {"payload": payload if primitive else str(payload)}
            self._otel_span.add_event(name, attributes)
        for observer in self.observers:
            try:
                observer.on_log(name, payload)
            except Exception:
                _report_observer_failure(observer, "on_log")

    def finish(self, exc_info: ExcInfo | None = None) -> None:
        """Record the end of the span.

        :param exc_info: If the span ended because of an exception, this is
            the exception information. The default is None which indicates
            normal exit.

        Finishing twice does nothing; finishing never raises.
        """
        if self._finished:
            return
        self._finished = True
        for observer in self.observers:
            try:
                observer.on_finish(exc_info)
            except Exception:
                _report_observer_failure(observer, "on_finish")
        otel_span = self._otel_span
        if otel_span is None:
            return
        try:
            if self._recording:
                self._end_recorded(otel_span, exc_info)
            # Make the nearest open span current again: usually this span is
            # current, and what was current before it is still open.
            now = _get_current()
            if now.get(_OTEL_SPAN_KEY) is otel_span:
                _attach(_live_context(self._previous_context or otel_context.Context()))
            else:
                target = _live_context(now)
                if target is not now:
                    _attach(target)
        except Exception:
            logger.exception("could not end span %r", self.name)

    def _end_recorded(self, otel_span: trace.Span, exc_info: ExcInfo | None) -> None:
        """End the recording OpenTelemetry span, with its error, and send it down its route."""
        if exc_info is not None and exc_info[1] is not None:
            exception_events.record_exception(otel_span, exc_info[1])
            otel_span.set_status(Status(StatusCode.ERROR, str(exc_info[1])))
        route = self.export_route
        if route is None:
            otel_span.end()
        else:
            if self._shared and route.marks_shared_spans:
                otel_span.set_attribute(SHARED_ATTRIBUTE, True)
            routing.end_span(otel_span, route)

    def make_child(self, name: str, local: bool = False, component_name: str | None = None) -> Span:
        """Return a child Span whose parent is this Span.

        The child span can either be a local span representing an in-request
        operation or a span representing an outbound service call.

        :param name: Name to identify the operation this span is recording.
        :param local: Make this span a LocalSpan if True, otherwise make this
            span a base Span.
        :param component_name: Name to identify local component this span is
            recording in if it is a local span.
        :raises ValueError: if ``local`` is true and no component name is given.
        """
        child: Span
        if local:
            if component_name is None:
                raise ValueError("local spans require a component_name")
            context = self.context
            if isinstance(context, WrappedRequestContext):
                context = context.clone()
            elif context is not None:
                context = WrappedRequestContext(context)
            child = LocalSpan(
                self.trace_id,
                self.id,
                random_id(),
                self.sampled,
                self.flags,
                name,
                context,
                component_name=component_name,
            )
            if context is not None:
                context.shadow_context_attr("trace", child)
        else:
            child = Span(
                self.trace_id, self.id, random_id(), self.sampled, self.flags, name, self.context
            )
        child._parent = self
        child.export_route = self.export_route
        for observer in self.observers:
            try:
                observer.on_child_span_created(child)
            except Exception:
                _report_observer_failure(observer, "on_child_span_created")
        return child

    def __enter__(self) -> Span:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, tb: Any) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.finish(exc_info=(exc_type, exc_value, tb))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} trace={self.trace_id} id={self.id}>"


class LocalSpan(Span):
    """A span for an in-process operation, within a local component.

    Its context is a :class:`~baseplate.core.WrappedRequestContext` of the
    request's context object, whose ``trace`` is the local span itself and
    whose context clients (see :class:`~baseplate.context.ContextObserver`)
    make their calls children of the local span.
    """

    _kind = SpanKind.INTERNAL
    _suppresses_instrumentation = False

    def __init__(
        self,
        trace_id: int,
        parent_id: int | None,
        span_id: int,
        sampled: bool | None,
        flags: int | None,
        name: str,
        context: Any,
        component_name: str | None = None,
    ) -> None:
        super().__init__(trace_id, parent_id, span_id, sampled, flags, name, context)
        self.component_name = component_name


class ServerSpan(Span):
    """A server span represents a request this server is handling.

    The server span is available on the context object during requests as
    the ``trace`` attribute.
    """

    _kind = SpanKind.SERVER
    _suppresses_instrumentation = False
    #: What the request has cost so far, while its runtime cost is counted
    #: (see :func:`count_runtime_cost`).
    _cost: RequestCost | None = None


#: The suffix of the request's CPU-time timer, beside its ``server.<name>`` timer.
CPU_TIMER_SUFFIX = ".cpu_time"


def count_runtime_cost(tracker: GreenletCostTracker | None) -> None:
    """Charge each request's runtime cost to its server span through ``tracker``; None: stop.

    While a tracker is set, a server span that starts in a greenlet the
    tracker counts (see :class:`bridge.greenlet_cost.GreenletCostTracker`)
    carries, when it finishes, the request's CPU time, yields and longest run
    as attributes, and the CPU time goes into the request's metrics batch
    (``context.metrics``) as the timer ``server.<name>.cpu_time``, before the
    metrics observer flushes it. ``baseplate-serve`` sets one under gevent.

    The counting versions of :meth:`ServerSpan.start` and
    :meth:`ServerSpan.finish` replace the plain ones only while a tracker is
    set, so a process that counts nothing does no extra work per request.
    """
    if tracker is None:
        for name in ("start", "finish"):
            if name in vars(ServerSpan):
                delattr(ServerSpan, name)
        return

    def start(self: ServerSpan) -> None:
        """:meth:`Span.start`, then begin counting the request's cost in this greenlet."""
        Span.start(self)
        self._cost = tracker.begin(self.trace_id)

    def finish(self: ServerSpan, exc_info: ExcInfo | None = None) -> None:
        """Stop counting and record the figures, then :meth:`Span.finish`."""
        cost = self._cost
        if cost is not None:
            self._cost = None
            try:
                _record_cost(self, tracker, cost)
            except Exception:
                logger.exception("could not record the runtime cost of %r", self.name)
        Span.finish(self, exc_info)

    setattr(ServerSpan, "start", start)  # noqa: B010 - mypy would check them as Span's
    setattr(ServerSpan, "finish", finish)  # noqa: B010


def _record_cost(span: ServerSpan, tracker: GreenletCostTracker, cost: RequestCost) -> None:
    tracker.end(cost)
    otel_span = span._otel_span
    if otel_span is not None and otel_span.is_recording():
        add_number_attributes(otel_span, cost.attributes())
    batch = getattr(span.context, "metrics", None)
    if isinstance(batch, Batch):
        batch.timer("server." + span.name + CPU_TIMER_SUFFIX).send(cost.cpu_time)


class _NativeSpan(Span):
    """A facade over a span another library started through the OpenTelemetry API.

    The library starts, ends and makes current the span itself; the facade
    only reports it to observers. Its attributes reach them as tags and its
    events as logs when it ends; a recorded exception or an error status
    makes it a failure.
    """

    _suppresses_instrumentation = False
    native = True

    def start(self) -> None:
        """Native spans are started by the library that made them."""

    def finish(self, exc_info: ExcInfo | None = None) -> None:
        """End the underlying span; observers hear of it from the span processor."""
        if self._otel_span is not None:
            self._otel_span.end()

    def adopted_span_ended(self, span: ReadableSpan) -> None:
        """Replay the span's attributes and events to the observers, then finish."""
        if self._finished:
            return
        self._finished = True
        for key, value in (span.attributes or {}).items():
            self._notify("on_set_tag", key, value)
        for event in span.events:
            self._notify("on_log", event.name, dict(event.attributes or {}) or None)
        self._notify("on_finish", _exc_info_of(span))


class _AdoptedSpan(_NativeSpan):
    """A native span started under a facade span: one of its children."""

    def __init__(self, parent: Span, span: SdkSpan) -> None:
        span_context = span.get_span_context()
        super().__init__(
            parent.trace_id,
            parent.id,
            span_context.span_id,
            parent.sampled,
            parent.flags,
            span.name,
            parent.context,
        )
        self._parent = parent
        self._otel_span = span
        self.export_route = parent.export_route


class NativeServerSpan(_NativeSpan, ServerSpan):
    """The server span of a request whose root span another library started.

    Made by a :class:`~baseplate.core.Baseplate` that observes native root
    spans (see :meth:`~baseplate.core.Baseplate.observe_native_root_spans`):
    an application served through an OpenTelemetry instrumentor (Flask,
    FastAPI, ...) or a worker that opens its own root spans. Its ids are
    those of the native span; ``trace_id`` keeps the low 64 bits.

    .. versionadded:: 0.31
    """

    def __init__(self, span: SdkSpan, context: Any) -> None:
        span_context = span.get_span_context()
        parent = span.parent
        super().__init__(
            span_context.trace_id & MAX_ID,
            None if parent is None else parent.span_id,
            span_context.span_id,
            span_context.trace_flags.sampled,
            None,
            span.name,
            context,
        )
        self._otel_span = span

    def announce_start(self) -> None:
        """Tell the observers the request began (the library already started the span)."""
        self._notify("on_start")


class RecordedSpanError(Exception):
    """Stands in for an exception recorded on a span created by another library.

    .. versionadded:: 0.31
    """


def _exc_info_of(span: ReadableSpan) -> ExcInfo | None:
    for event in span.events:
        if event.name == "exception":
            attributes = event.attributes or {}
            live = sys.exc_info()
            type_name = str(attributes.get("exception.type", ""))
            if live[1] is not None and type_name.endswith(type(live[1]).__name__):
                return live
            error_class = type(type_name.rsplit(".", 1)[-1] or "Error", (RecordedSpanError,), {})
            error = error_class(attributes.get("exception.message", ""))
            return (error_class, error, None)
    if span.status.status_code is StatusCode.ERROR:
        error = RecordedSpanError(span.status.description or "span status is ERROR")
        return (RecordedSpanError, error, None)
    return None


def _live_context(context: otel_context.Context) -> otel_context.Context:
    """``context``, or the nearest context before it whose current span is still open.

    Walks back past facade spans that have finished, so a span finished out
    of order, or in another greenlet, never stays current. Stops at a span
    created by another library: it is still open, and its own ``with`` block
    restores what came before it. Does not depend on context tokens, which
    cannot be used across contexts.
    """
    while True:
        entry = context.get(_OWNER_KEY)
        if type(entry) is not tuple:
            return context
        otel_span, span = entry
        if not getattr(span, "_finished", False) or context.get(_OTEL_SPAN_KEY) is not otel_span:
            return context
        context = span._previous_context or otel_context.Context()
