"""Trace context handed to a server span by the upstream that called it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from opentelemetry.trace import SpanContext

from bridge.ids import MAX_ID, random_id
from bridge.propagation import (
    HTTP_HEADERS,
    HeaderMapping,
    HeaderNames,
    parse_trace_headers,
    read_upstream,
)


def header_names_by_field(
    names: HeaderNames, as_bytes: bool = False
) -> dict[str, tuple[str, ...]] | dict[str, tuple[bytes, ...]]:
    """The original's ``TRACE_HEADER_NAMES``: each field's header names, by field.

    The integrations export it for applications that pass it to
    :meth:`TraceInfo.extract_upstream_header_values`; THeader names are bytes.
    """
    fields = {
        "trace_id": names.trace,
        "span_id": names.span,
        "parent_span_id": names.parent,
        "sampled": names.sampled,
        "flags": names.flags,
    }
    if as_bytes:
        return {field: tuple(name.encode() for name in group) for field, group in fields.items()}
    return fields


def _check_id(name: str, value: object) -> None:
    if type(value) is int and 0 <= value <= MAX_ID:
        return  # the common case, checked first
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise ValueError(f"invalid {name}: {value!r} (must be an integer in [0, 2**64))")


class TraceInfo(NamedTuple):
    """Trace context for a span.

    If this request was made at the behest of an upstream service, the
    upstream should have passed along trace information, which this collects
    and hands to the server span.
    """

    trace_id: int
    parent_id: int | None
    span_id: int
    sampled: bool | None
    flags: int | None

    @classmethod
    def new(cls) -> TraceInfo:
        """Trace context for a new trace: one random id is both trace and span id."""
        new_id = random_id()
        return cls(trace_id=new_id, parent_id=None, span_id=new_id, sampled=None, flags=None)

    @classmethod
    def from_upstream(
        cls,
        trace_id: int,
        parent_id: int | None,
        span_id: int,
        sampled: bool | None,
        flags: int | None,
    ) -> TraceInfo:
        """Build a TraceInfo from individual headers.

        :param trace_id: The ID of the trace.
        :param parent_id: The ID of the parent span.
        :param span_id: The ID of this span within the tree.
        :param sampled: Boolean flag to determine request sampling.
        :param flags: Bit flags for communicating feature flags downstream.
        :raises ValueError: if any of the values are inappropriate: ids and
            flags must be integers in [0, 2**64), sampled a bool or None.
        """
        _check_id("trace_id", trace_id)
        _check_id("span_id", span_id)
        if parent_id is not None:
            _check_id("parent_id", parent_id)
        if sampled is not None and not isinstance(sampled, bool):
            raise ValueError(f"invalid sampled: {sampled!r} (must be a bool or None)")
        if flags is not None:
            _check_id("flags", flags)
        return cls(trace_id, parent_id, span_id, sampled, flags)

    @classmethod
    def from_upstream_headers(
        cls,
        headers: Mapping[str, str] | Mapping[bytes, bytes],
        header_names: HeaderNames = HTTP_HEADERS,
    ) -> TraceInfo:
        """Build a TraceInfo from an upstream's trace headers.

        HTTP header names are the default; pass
        :data:`bridge.propagation.THRIFT_HEADERS` for THeader headers.

        :raises ValueError: if the headers are missing or invalid; callers
            start a new trace instead.

        .. versionadded:: 0.31
        """
        upstream = parse_trace_headers(headers, header_names)
        if upstream is None:
            raise ValueError("no trace headers")
        return cls(
            upstream.trace_id,
            upstream.parent_id,
            upstream.span_id,
            upstream.sampled,
            upstream.flags,
        )

    @classmethod
    def extract_upstream_header_values(
        cls,
        upstream_header_names: Mapping[str, Iterable[Any]],
        headers: Mapping[Any, Any],
    ) -> dict[str, Any]:
        """The raw values of the trace headers present, by field.

        :param upstream_header_names: Each field (``"trace_id"``,
            ``"span_id"``, ``"parent_span_id"``, ``"sampled"``, ``"flags"``)
            mapped to the names its header may have, such as the
            integrations' ``TRACE_HEADER_NAMES``.
        :param headers: The request's headers.
        :returns: Each field found, mapped to its value as sent; absent fields
            are left out.
        :raises ValueError: if a field's header names carry different values.

        Prefer :meth:`from_upstream_headers`, which also parses the values.
        """
        values: dict[str, Any] = {}
        for field, names in upstream_header_names.items():
            found = {headers[name] for name in names if name in headers}
            if len(found) > 1:
                raise ValueError(f"conflicting values for the {field} headers: {sorted(found)!r}")
            if found:
                values[field] = found.pop()
        return values


def continued_trace(
    headers: HeaderMapping, names: HeaderNames
) -> tuple[TraceInfo | None, SpanContext | None]:
    """What a server span continues, as ``make_server_span`` takes it.

    Returns the ``trace_info`` and ``remote_parent`` arguments: the caller's
    Baseplate ids for a shared span, or, when the caller sent a W3C
    ``traceparent`` (alone, or naming the same span as its Baseplate headers),
    a new span id under that parent, with the low 64 bits of its trace id.
    ``(None, None)`` starts a new trace. See
    :func:`bridge.propagation.read_upstream` for which headers win.
    """
    baseplate, parent = read_upstream(headers, names)
    if parent is None:
        if baseplate is None:
            return None, None
        info = TraceInfo(
            baseplate.trace_id,
            baseplate.parent_id,
            baseplate.span_id,
            baseplate.sampled,
            baseplate.flags,
        )
        return info, None
    info = TraceInfo(
        trace_id=parent.trace_id & MAX_ID,
        parent_id=parent.span_id,
        span_id=random_id(),
        sampled=baseplate.sampled if baseplate is not None else parent.trace_flags.sampled,
        flags=baseplate.flags if baseplate is not None else None,
    )
    return info, parent
