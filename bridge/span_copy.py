"""Copies of finished spans with some fields replaced.

Finished spans are immutable; a processor or exporter that must present a
span differently (marked as sampled, under another service name) hands on a
copy instead.
"""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext
from opentelemetry.util.types import Attributes


def copy_span(
    span: ReadableSpan,
    *,
    context: SpanContext | None = None,
    attributes: Attributes = None,
    resource: Resource | None = None,
) -> ReadableSpan:
    """``span`` with the given fields replaced (each None keeps the span's own)."""
    return ReadableSpan(
        name=span.name,
        context=span.context if context is None else context,
        parent=span.parent,
        resource=span.resource if resource is None else resource,
        attributes=span.attributes if attributes is None else attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
