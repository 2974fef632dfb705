"""Every private part of OpenTelemetry the bridge relies on, in one fenced place.

OpenTelemetry's public API has no way to do a few things Baseplate needs on
every request, or at all. Each is reached here and nowhere else, so an
upgrade that moves one breaks this module only, and
``tests/bridge/test_otel_internals.py`` fails naming the missing hook
(:func:`missing_hooks`); the versions these are known to hold for are the
range ``opentelemetry-sdk`` is bounded to in ``pyproject.toml``.

* :data:`SPAN_KEY`: the context key of the current span. Reading it is how
  the span facade checks cheaply which span a context makes current;
  ``trace.get_current_span`` would also work but costs a call per check.
* :data:`SUPPRESSION_KEYS`: the context keys instrumentations check to stay
  quiet inside a call another library already traces (what
  ``opentelemetry-instrumentation``'s ``suppress_instrumentation`` sets,
  without a dependency on that package).
* :func:`runtime_context_variable`: the context variable behind the default
  runtime context, read and set directly on the hot path (:mod:`bridge.current`).
* :func:`forget_global_tracer_provider`: lets tests install a new global
  provider, which the API allows only once per process.
* :func:`tracers_made_by`: the tracers a provider has already handed out,
  which keep the id generator and sampler they were made with
  (:mod:`bridge.app_provider`).
* :data:`SPAN_LOCK_MODULES`: the SDK modules whose spans make their locks
  from a module-level ``threading`` (:mod:`bridge.native_locks`).
* :data:`ZIPKIN_SPAN_ENCODER_HOOK`: the method of the Zipkin v2 JSON encoder
  that encodes one span, overridden to follow the v2 schema
  (:func:`bridge.export.zipkin_v2_exporter`).
* :func:`add_number_attributes`: numbers put straight into a recording SDK
  span's attribute mapping. The SDK checks and copies each value under a
  lock, about 1 microsecond per attribute; for the runtime cost every
  server span carries, numbers made by the framework itself, that check
  finds nothing to do.
* :func:`child_span_context`: the span context of a new span in its parent's
  trace, made as the tuple ``SpanContext`` is underneath. Its constructor
  checks both ids on every call, about half the cost of a span that is not
  recorded; a child's trace id is its parent's, already checked, and its span
  id comes from the bridge's id generator, never zero.
* :func:`add_event`: an event object added to a recording SDK span as it is.
  The public ``add_event`` takes a name and a finished attribute mapping, so
  an event whose attributes are made when first read
  (:mod:`bridge.exception_events`, which formats a stack trace only if the
  span is exported) needs the span's private ``_add_event``.
* :func:`span_limits`: the limits an SDK span was made with, which such an
  event applies to its attributes as the public ``add_event`` would.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk.trace import EventBase, SpanLimits, TracerProvider

#: The context key under which a context holds its current span.
SPAN_KEY: Final = trace.propagation._SPAN_KEY

#: The context keys that make instrumentations skip the calls they would trace.
SUPPRESSION_KEYS: Final = (
    otel_context._SUPPRESS_INSTRUMENTATION_KEY,
    otel_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY,
)

#: The SDK modules whose per-span locks are made from their module-level ``threading``.
SPAN_LOCK_MODULES: Final = (
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.util",
    "opentelemetry.attributes",
)

#: The method of ``opentelemetry.exporter.zipkin.json.v2.JsonV2Encoder`` that encodes one span.
ZIPKIN_SPAN_ENCODER_HOOK: Final = "_encode_span"


def runtime_context_variable() -> ContextVar[Context] | None:
    """The context variable holding the current context, under the default runtime context.

    None when another runtime context is configured: callers then go
    through the API.
    """
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and isinstance(variable, ContextVar):
        return variable
    return None


def forget_global_tracer_provider() -> None:
    """Let a new global tracer provider be set (tests only: the API allows one per process)."""
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE = trace.Once()  # type: ignore[attr-defined]


def tracers_made_by(provider: TracerProvider) -> tuple[dict[Any, Any], Any] | None:
    """The tracers ``provider`` handed out, and the lock guarding them; None if not found."""
    tracers = getattr(provider, "_tracers", None)
    lock = getattr(provider, "_tracers_lock", None)
    if not isinstance(tracers, dict) or lock is None:
        return None
    return tracers, lock


def add_number_attributes(span: Any, attributes: dict[str, int | float]) -> None:
    """Add number-valued ``attributes`` to ``span``, a recording span not yet ended.

    Where the span is not the SDK's, or its attributes are limited and these
    would not fit, the public ``set_attributes`` does it, with its checks.
    """
    bounded: Any = getattr(span, "_attributes", None)
    mapping = getattr(bounded, "_dict", None)
    if mapping is None or (
        bounded.maxlen is not None and len(mapping) + len(attributes) > bounded.maxlen
    ):
        span.set_attributes(attributes)
        return
    mapping.update(attributes)


def add_event(span: Any, event: EventBase) -> bool:
    """Add ``event`` to ``span``, an SDK span, as the public ``add_event`` adds the event it makes.

    As there, an ended span keeps no new event (the SDK logs a warning).
    False, with nothing added, where the span has no such method: the caller
    then records the event through the public API.
    """
    add = getattr(span, "_add_event", None)
    if add is None:
        return False
    add(event)
    return True


def span_limits(span: Any) -> SpanLimits | None:
    """The limits ``span``, an SDK span, applies to its events' attributes; None if not found."""
    limits = getattr(span, "_limits", None)
    return limits if isinstance(limits, SpanLimits) else None


def child_span_context(parent: trace.SpanContext, span_id: int) -> trace.SpanContext:
    """The context of a local child of ``parent`` with ``span_id`` (non-zero, under 2**64)."""
    return tuple.__new__(trace.SpanContext, (parent[0], span_id, False, parent[3], parent[4], True))


def missing_hooks() -> list[str]:
    """The names of the hooks above that the installed OpenTelemetry lacks."""
    missing = []
    if not isinstance(getattr(trace.propagation, "_SPAN_KEY", None), str):
        missing.append("opentelemetry.trace.propagation._SPAN_KEY")
    for name in ("_SUPPRESS_INSTRUMENTATION_KEY", "_SUPPRESS_HTTP_INSTRUMENTATION_KEY"):
        if not isinstance(getattr(otel_context, name, None), str):
            missing.append(f"opentelemetry.context.{name}")
    if runtime_context_variable() is None:
        missing.append("opentelemetry.context._RUNTIME_CONTEXT._current_context")
    if not hasattr(trace, "_TRACER_PROVIDER_SET_ONCE"):
        missing.append("opentelemetry.trace._TRACER_PROVIDER_SET_ONCE")
    parent = trace.SpanContext(3, 5, True, trace.TraceFlags(1), trace.TraceState([("k", "v")]))
    if child_span_context(parent, 7) != trace.SpanContext(
        3, 7, False, parent.trace_flags, parent.trace_state
    ):
        missing.append("opentelemetry.trace.SpanContext's tuple layout")
    if tracers_made_by(TracerProvider(shutdown_on_exit=False)) is None:
        missing.append("opentelemetry.sdk.trace.TracerProvider._tracers")
    probe = TracerProvider(shutdown_on_exit=False).get_tracer(__name__).start_span("probe")
    attributes = getattr(probe, "_attributes", None)
    if not isinstance(getattr(attributes, "_dict", None), dict) or not hasattr(
        attributes, "maxlen"
    ):
        missing.append("opentelemetry.sdk.trace.Span._attributes._dict")
    if not callable(getattr(probe, "_add_event", None)):
        missing.append("opentelemetry.sdk.trace.Span._add_event")
    if span_limits(probe) is None:
        missing.append("opentelemetry.sdk.trace.Span._limits")
    for module_name in SPAN_LOCK_MODULES:
        if not hasattr(importlib.import_module(module_name), "threading"):
            missing.append(f"{module_name}.threading")
    try:
        from opentelemetry.exporter.zipkin.json.v2 import JsonV2Encoder
    except ImportError:  # the optional Zipkin exporter is not installed: nothing to check
        return missing
    if not callable(getattr(JsonV2Encoder, ZIPKIN_SPAN_ENCODER_HOOK, None)):
        missing.append(f"JsonV2Encoder.{ZIPKIN_SPAN_ENCODER_HOOK}")
    return missing


def zipkin_v2_encoder(
    max_tag_value_length: int, adjust: Callable[[dict[str, Any], Any], None]
) -> Any:
    """OpenTelemetry's Zipkin v2 JSON encoder, with ``adjust(encoded, span)`` run on each span.

    The encoder offers no public way to change how one span is encoded.
    """
    from opentelemetry.exporter.zipkin.json.v2 import JsonV2Encoder

    class AdjustingEncoder(JsonV2Encoder):
        reports_shared_spans = True

        def _encode_span(self, span: Any, encoded_local_endpoint: Any) -> dict[str, Any]:
            encoded: dict[str, Any] = super()._encode_span(span, encoded_local_endpoint)
            adjust(encoded, span)
            return encoded

    return AdjustingEncoder(max_tag_value_length)
