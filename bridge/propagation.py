"""Baseplate trace headers as OpenTelemetry propagators.

Baseplate and OpenTelemetry name the ids of a call differently. Baseplate uses
the Zipkin *shared-span* model: client and server record one span, so the
headers carry that span's id (``Span``) and the id of the caller's span
(``Parent``), and the server adopts both. OpenTelemetry gives every process its
own span: the server span is a *child* of the client span, so the only id it
needs from upstream is the remote parent, which is the ``Span`` header.

:func:`parse_trace_headers` returns all the Baseplate ids, for servers that keep
the shared-span model; the propagators map the headers to and from an OTel
remote parent, so any OTel application can speak the Baseplate wire format
(``OTEL_PROPAGATORS=baseplate,tracecontext``).

A caller may send both Baseplate headers and W3C ``traceparent`` (an
OpenTelemetry-instrumented client under :func:`use_baseplate_and_w3c_propagation`
does). :func:`read_upstream` decides which model a server follows: when
``traceparent`` names the same span as ``X-Span`` (and the same trace, in its
low 64 bits), the caller follows OpenTelemetry's model and the server span is
a child of the caller's span, keeping the full 128-bit trace id and trace
state; when they disagree, the Baseplate headers win, with the shared-span
model.

.. versionadded:: 0.31
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bridge.ids import DEBUG_FLAG, ID_LIMIT, MAX_ID

__all__ = [
    "HTTP_HEADERS",
    "THRIFT_HEADERS",
    "BaseplateHTTPPropagator",
    "BaseplatePropagator",
    "BaseplateThriftPropagator",
    "HeaderNames",
    "InvalidTraceHeaders",
    "UpstreamTrace",
    "parse_trace_headers",
    "parse_traceparent",
    "read_upstream",
    "traceparent_for_wide_trace",
    "use_baseplate_and_w3c_propagation",
]

logger = logging.getLogger(__name__)


HeaderValue = str | bytes
HeaderMapping = (
    Mapping[str, HeaderValue] | Mapping[bytes, HeaderValue] | Mapping[str | bytes, HeaderValue]
)
"""Headers as servers hand them over: HTTP has ``str`` keys, THeader ``bytes``."""


@dataclass(frozen=True)
class HeaderNames:
    """The accepted names of each trace header field.

    Names match case-insensitively. The first name of each field is the one
    written on inject; the others (the B3 aliases) are only read.
    """

    trace: tuple[str, ...]
    parent: tuple[str, ...]
    span: tuple[str, ...]
    sampled: tuple[str, ...]
    flags: tuple[str, ...]


HTTP_HEADERS = HeaderNames(
    trace=("X-Trace", "X-B3-TraceId"),
    parent=("X-Parent", "X-B3-ParentSpanId"),
    span=("X-Span", "X-B3-SpanId"),
    sampled=("X-Sampled", "X-B3-Sampled"),
    flags=("X-Flags", "X-B3-Flags"),
)
"""The headers of Baseplate HTTP services."""

THRIFT_HEADERS = HeaderNames(
    trace=("Trace", "B3-TraceId"),
    parent=("Parent", "B3-ParentSpanId"),
    span=("Span", "B3-SpanId"),
    sampled=("Sampled", "B3-Sampled"),
    flags=("Flags", "B3-Flags"),
)
"""The THeader headers of Baseplate Thrift services."""

_FIELDS = ("trace", "parent", "span", "sampled", "flags")


@functools.cache
def _field_by_name(names: HeaderNames) -> dict[str, str]:
    """Lower-cased header name -> field name."""
    return {name.lower(): field for field in _FIELDS for name in getattr(names, field)}


def _normalize_name(key: str | bytes) -> str | None:
    """The lower-cased key, or None when it cannot be one of our (ASCII) names."""
    if isinstance(key, bytes):
        key = key.decode("latin-1")
    if not key.isascii():
        return None
    return key.lower()


#: How many distinct header keys each lookup of header keys remembers, the
#: least recently seen forgotten first: clients choose the keys they send.
#: A service sees the same few on every request, and every header of every
#: request is looked up, so each answer is worked out once per key as sent.
HEADER_KEY_CACHE_SIZE = 1024


@functools.cache
def _trace_field_lookup(names: HeaderNames) -> Callable[[str | bytes], tuple[str, str] | None]:
    """The lookup, for ``names``, of a header key as sent: the field it carries and the key as
    text, or None for other headers."""

    @functools.lru_cache(maxsize=HEADER_KEY_CACHE_SIZE)
    def trace_field(key: str | bytes) -> tuple[str, str] | None:
        normalized = _normalize_name(key)
        if normalized is None:
            return None
        field = _field_by_name(names).get(normalized)
        if field is None:
            return None
        return field, key.decode("ascii") if isinstance(key, bytes) else key

    return trace_field


class UpstreamTrace(NamedTuple):
    """The trace context an upstream sent, in Baseplate's shared-span model.

    ``span_id`` is the id of the span the caller created for this call and
    ``parent_id`` that of the caller's own span (0 when it has none). A named
    tuple: one is made per request, several times faster than a frozen
    dataclass.
    """

    trace_id: int
    parent_id: int
    span_id: int
    sampled: bool
    flags: int | None


class InvalidTraceHeaders(ValueError):  # noqa: N818
    """Trace headers were present but unusable; the receiver starts a new trace."""

    def __init__(self, header: str, value: HeaderValue | None, reason: str) -> None:
        self.header = header
        """The offending header (as sent, or its primary name when missing)."""
        self.value = value
        """Its value as sent, or None when the header is missing."""
        self.reason = reason
        super().__init__(f"invalid trace header {header}={value!r}: {reason}")


def _decode(header: str, value: HeaderValue) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidTraceHeaders(header, value, "not ASCII") from None


def _parse_int(header: str, value: str) -> int:
    """Parse like Baseplate's ``int(value)``, but only into [0, 2**64)."""
    if "_" in value:  # int() accepts "1_000"; the wire format does not.
        raise InvalidTraceHeaders(header, value, "not a decimal integer")
    try:
        number = int(value)
    except ValueError:
        raise InvalidTraceHeaders(header, value, "not a decimal integer") from None
    if not 0 <= number < ID_LIMIT:
        raise InvalidTraceHeaders(header, value, "out of the range [0, 2**64)")
    return number


def parse_trace_headers(headers: HeaderMapping, names: HeaderNames) -> UpstreamTrace | None:
    """Read the Baseplate trace headers, following ``spec/wire/headers.md``.

    Returns None when none of the trace, parent and span headers is present;
    raises :class:`InvalidTraceHeaders` when they are present but unusable
    (missing field, non-decimal or out-of-range id, conflicting aliases,
    undecodable bytes). Keys and values may be ``str`` or ``bytes``.
    """
    found: dict[str, tuple[str, str]] = {}  # field -> (header as sent, decoded value)
    trace_field = _trace_field_lookup(names)
    for key, raw_value in headers.items():
        named = trace_field(key)
        if named is None:
            continue
        field, header = named
        value = _decode(header, raw_value)
        if field in found and found[field][1] != value:
            raise InvalidTraceHeaders(header, value, f"conflicts with {found[field][0]}")
        found.setdefault(field, (header, value))

    if not found.keys() & {"trace", "parent", "span"}:
        return None

    ids: dict[str, int] = {}
    for field in ("trace", "parent", "span"):
        if field not in found:
            raise InvalidTraceHeaders(getattr(names, field)[0], None, "missing")
        ids[field] = _parse_int(*found[field])

    flags = _parse_int(*found["flags"]) if "flags" in found else None
    sampled = "sampled" in found and found["sampled"][1] == "1"
    return UpstreamTrace(
        trace_id=ids["trace"],
        parent_id=ids["parent"],
        span_id=ids["span"],
        sampled=sampled,
        flags=flags,
    )


def _first_value(values: Sequence[object] | None) -> HeaderValue | None:
    """The first value a getter returned.

    The default getter turns a ``bytes`` value into a list of its ints (it is
    an iterable); put those back together so THeader-style carriers work.
    """
    if not values:
        return None
    first = values[0]
    if isinstance(first, str | bytes):
        return first
    if all(isinstance(value, int) for value in values):
        return bytes(values)  # type: ignore[arg-type]
    return None


class BaseplatePropagator(TextMapPropagator):
    """Extract and inject Baseplate trace headers under the given names.

    Extract makes the upstream's ``Span`` the remote parent; the ``Parent``
    header has no place in OpenTelemetry's model and is dropped (use
    :func:`parse_trace_headers` to keep it). Invalid headers never raise: the
    context is returned unchanged, as if there were none.
    """

    def __init__(self, names: HeaderNames) -> None:
        self._names = names

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        """Return ``context`` with the upstream span as remote parent, if valid."""
        if context is None:
            context = Context()
        field_by_name = _field_by_name(self._names)
        headers: dict[str | bytes, HeaderValue] = {}
        for key in getter.keys(carrier):
            normalized = _normalize_name(key)
            if normalized is None or normalized not in field_by_name:
                continue
            value = _first_value(getter.get(carrier, key))
            if value is not None:
                headers[key] = value

        try:
            upstream = parse_trace_headers(headers, self._names)
        except InvalidTraceHeaders as exc:
            logger.debug("Ignoring trace headers: %s", exc)
            return context
        if upstream is None or upstream.trace_id == 0 or upstream.span_id == 0:
            return context
        if _names_same_span(trace.get_current_span(context).get_span_context(), upstream):
            # A traceparent extracted before named this very span, with its
            # full trace id and trace state: keep it.
            return context

        debug = upstream.flags is not None and bool(upstream.flags & DEBUG_FLAG)
        span_context = SpanContext(
            trace_id=upstream.trace_id,
            span_id=upstream.span_id,
            is_remote=True,
            trace_flags=TraceFlags(
                TraceFlags.SAMPLED if upstream.sampled or debug else TraceFlags.DEFAULT
            ),
        )
        return trace.set_span_in_context(NonRecordingSpan(span_context), context)

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        """Write the current span's ids, as decimal, into ``carrier``.

        The trace id keeps its low 64 bits. ``Parent`` is the span's parent id
        when the span knows it (SDK spans do), else ``0``. Flags are not written.
        """
        span = trace.get_current_span(context)
        span_context = span.get_span_context()
        if not span_context.is_valid:
            return
        parent = getattr(span, "parent", None)
        parent_id = parent.span_id if isinstance(parent, SpanContext) else 0
        names = self._names
        setter.set(carrier, names.trace[0], str(span_context.trace_id & MAX_ID))
        setter.set(carrier, names.parent[0], str(parent_id))
        setter.set(carrier, names.span[0], str(span_context.span_id))
        setter.set(carrier, names.sampled[0], "1" if span_context.trace_flags.sampled else "0")

    @property
    def fields(self) -> set[str]:
        """The header names :meth:`inject` writes."""
        names = self._names
        return {names.trace[0], names.parent[0], names.span[0], names.sampled[0]}


class BaseplateHTTPPropagator(BaseplatePropagator):
    """The ``X-Trace`` family of HTTP headers (entry point ``baseplate``)."""

    def __init__(self) -> None:
        super().__init__(HTTP_HEADERS)


class BaseplateThriftPropagator(BaseplatePropagator):
    """The THeader ``Trace`` family of headers (entry point ``baseplate_thrift``)."""

    def __init__(self) -> None:
        super().__init__(THRIFT_HEADERS)


_W3C = TraceContextTextMapPropagator()
_W3C_NAMES = frozenset(("traceparent", "tracestate"))


@functools.lru_cache(maxsize=HEADER_KEY_CACHE_SIZE)
def _w3c_name(key: str | bytes) -> str | None:
    """``traceparent`` or ``tracestate`` when ``key`` names one (in any case), else None."""
    name = _normalize_name(key)
    return name if name in _W3C_NAMES else None


def parse_traceparent(headers: HeaderMapping) -> SpanContext | None:
    """The caller's span from W3C ``traceparent`` (and ``tracestate``), or None.

    Names match case-insensitively; keys and values may be ``str`` or
    ``bytes``. An absent or malformed ``traceparent`` gives None.
    """
    found: dict[str, str] = {}
    for key, value in headers.items():
        name = _w3c_name(key)
        if name is None:
            continue
        try:
            found[name] = value.decode("ascii") if isinstance(value, bytes) else value
        except UnicodeDecodeError:
            return None
    if "traceparent" not in found:
        return None
    span_context = trace.get_current_span(_W3C.extract(found)).get_span_context()
    return span_context if span_context.is_valid else None


def traceparent_for_wide_trace(span: trace.Span) -> str | None:
    """``span``'s W3C ``traceparent`` when its trace id is wider than 64 bits, else None.

    Baseplate headers carry the low 64 bits of the trace id. A client that
    writes them for a span of a 128-bit trace (one an OpenTelemetry caller
    started) adds this header, so the server keeps the whole id (see
    :func:`read_upstream`); for 64-bit traces the wire stays as the
    original's.
    """
    if not span.get_span_context().trace_id >> 64:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, trace.set_span_in_context(span))
    return carrier.get("traceparent")


def _names_same_span(parent: SpanContext, upstream: UpstreamTrace) -> bool:
    return (
        parent.is_valid
        and parent.span_id == upstream.span_id
        and parent.trace_id & MAX_ID == upstream.trace_id
    )


def read_upstream(
    headers: HeaderMapping, names: HeaderNames
) -> tuple[UpstreamTrace | None, SpanContext | None]:
    """What a server continues: the caller's Baseplate ids, its W3C span, or both.

    Returns ``(baseplate, remote_parent)``:

    * ``(ids, None)``: Baseplate headers alone, or disagreeing with
      ``traceparent`` (the Baseplate headers win): the server span takes the
      caller's span id, Zipkin's shared span;
    * ``(ids or None, parent)``: ``traceparent`` alone, or naming the same span
      as the Baseplate headers: the server span is a child of ``parent``;
    * ``(None, None)``: nothing usable; the server starts a new trace.

    Invalid Baseplate headers count as absent (logged at debug level).
    """
    try:
        baseplate = parse_trace_headers(headers, names)
    except InvalidTraceHeaders as exc:
        logger.debug("ignoring trace headers: %s", exc)
        baseplate = None
    parent = parse_traceparent(headers)
    if baseplate is not None and parent is not None and not _names_same_span(parent, baseplate):
        return baseplate, None
    return baseplate, parent


def use_baseplate_and_w3c_propagation() -> bool:
    """Make the global propagator speak Baseplate headers, W3C trace context and baggage.

    Outbound calls made by OpenTelemetry-instrumented clients then carry
    ``X-Trace``/``X-Parent``/``X-Span``/``X-Sampled`` as well as
    ``traceparent``, ``tracestate`` and ``baggage``, so both Baseplate and
    OpenTelemetry services continue the trace. On extract, a ``traceparent``
    naming the same span as the Baseplate headers keeps its full trace id;
    otherwise the Baseplate headers win.

    Does nothing, and returns False, when the application chose its
    propagators: ``OTEL_PROPAGATORS`` is set, or the global propagator is
    not OpenTelemetry's default (W3C trace context and baggage).
    """
    if os.environ.get("OTEL_PROPAGATORS"):
        return False
    current = propagate.get_global_textmap()
    if not isinstance(current, CompositePropagator) or current.fields != _DEFAULT_FIELDS:
        return False
    propagate.set_global_textmap(
        CompositePropagator([_W3C, W3CBaggagePropagator(), BaseplateHTTPPropagator()])
    )
    return True


#: The fields of OpenTelemetry's default propagator (``tracecontext,baggage``).
_DEFAULT_FIELDS = frozenset(("traceparent", "tracestate", "baggage"))
