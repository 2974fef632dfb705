"""Spans as the Zipkin span records of the original Baseplate.

The trace publisher sidecar and the legacy remote recorder read these records:
64-bit ids as JSON integers, microsecond timestamps, ``sr``/``ss`` annotations
for server spans and ``cs``/``cr`` for client spans, and binary annotations
for the local component (``lc``), the span's attributes, ``error`` and
``debug``, in that order.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from bridge.ids import MAX_ID

#: The attribute naming a local span's component; also the Zipkin key.
LOCAL_COMPONENT_ATTRIBUTE = "lc"
#: The attribute marking a span of a trace with Baseplate's debug flag.
DEBUG_ATTRIBUTE = "baseplate.debug"
#: The attribute marking a server span that took its span id from its caller
#: (Zipkin's shared span: client and server record one span). Zipkin v2 calls
#: it ``shared``; the original's records had no such field and leave it out.
SHARED_ATTRIBUTE = "baseplate.shared"

_ANNOTATIONS = {
    SpanKind.SERVER: ("sr", "ss"),
    SpanKind.CONSUMER: ("sr", "ss"),
    SpanKind.CLIENT: ("cs", "cr"),
    SpanKind.PRODUCER: ("cs", "cr"),
}


def local_ipv4() -> str:
    """The address records name this host by, as the original found it."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "undefined"


_dumps = json.JSONEncoder().encode


def _annotation_value(value: Any) -> Any:
    return value if isinstance(value, bool | str) else str(value)


class ZipkinRecordEncoder:
    """Turns finished spans into records for one service."""

    def __init__(self, service_name: str, ipv4: str | None = None) -> None:
        self.endpoint = {"serviceName": service_name, "ipv4": ipv4 or local_ipv4()}
        self._endpoint_json = json.dumps(self.endpoint)

    def record(self, span: ReadableSpan) -> dict[str, Any]:
        """The record of one span, keys in the original's order."""
        context = span.context
        assert context is not None  # finished SDK spans always have one
        start = (span.start_time or 0) // 1000
        duration = max(0, (span.end_time or 0) // 1000 - start)
        endpoint = self.endpoint

        annotations = []
        kind_values = _ANNOTATIONS.get(span.kind)
        if kind_values is not None:
            annotations = [
                {"endpoint": endpoint, "timestamp": start, "value": kind_values[0]},
                {"endpoint": endpoint, "timestamp": start + duration, "value": kind_values[1]},
            ]

        attributes = dict(span.attributes or {})
        debug = attributes.pop(DEBUG_ATTRIBUTE, False)
        attributes.pop(SHARED_ATTRIBUTE, None)
        binary_annotations = [
            {"key": key, "value": _annotation_value(value), "endpoint": endpoint}
            for key, value in attributes.items()
        ]
        if span.status.status_code is StatusCode.ERROR:
            binary_annotations.append({"key": "error", "value": True, "endpoint": endpoint})
        if debug:
            binary_annotations.append({"key": "debug", "value": True, "endpoint": endpoint})

        return {
            "traceId": context.trace_id & MAX_ID,
            "name": span.name,
            "id": context.span_id,
            "timestamp": start,
            "duration": duration,
            "annotations": annotations,
            "binaryAnnotations": binary_annotations,
            "parentId": span.parent.span_id if span.parent is not None else 0,
        }

    def encode(self, span: ReadableSpan) -> bytes:
        """The record as the JSON the sidecar queue carries: ``json.dumps(record(span))``.

        Written out by hand, because this runs for every exported span and
        the generic encoder of a nested dict costs several times more.
        """
        context = span.context
        assert context is not None
        start = (span.start_time or 0) // 1000
        duration = max(0, (span.end_time or 0) // 1000 - start)
        endpoint = self._endpoint_json

        kind_values = _ANNOTATIONS.get(span.kind)
        annotations = (
            ""
            if kind_values is None
            else (
                f'{{"endpoint": {endpoint}, "timestamp": {start}, "value": "{kind_values[0]}"}}, '
                f'{{"endpoint": {endpoint}, "timestamp": {start + duration}, '
                f'"value": "{kind_values[1]}"}}'
            )
        )

        attributes = dict(span.attributes or {})
        debug = attributes.pop(DEBUG_ATTRIBUTE, False)
        attributes.pop(SHARED_ATTRIBUTE, None)
        binary = [
            f'{{"key": {_dumps(key)}, "value": {_dumps(_annotation_value(value))}, '
            f'"endpoint": {endpoint}}}'
            for key, value in attributes.items()
        ]
        if span.status.status_code is StatusCode.ERROR:
            binary.append(f'{{"key": "error", "value": true, "endpoint": {endpoint}}}')
        if debug:
            binary.append(f'{{"key": "debug", "value": true, "endpoint": {endpoint}}}')

        parent_id = span.parent.span_id if span.parent is not None else 0
        return (
            f'{{"traceId": {context.trace_id & MAX_ID}, "name": {_dumps(span.name)}, '
            f'"id": {context.span_id}, "timestamp": {start}, "duration": {duration}, '
            f'"annotations": [{annotations}], "binaryAnnotations": [{", ".join(binary)}], '
            f'"parentId": {parent_id}}}'
        ).encode()
