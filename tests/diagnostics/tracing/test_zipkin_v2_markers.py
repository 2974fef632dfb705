"""Zipkin v2 ``debug`` and ``shared``, as a local Zipkin stand-in receives them.

OpenTelemetry's encoder marks every sampled span ``debug``; Baseplate's marks
only the spans of debug-flagged traces, and marks ``shared`` the server spans
that took their caller's span id.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, TraceFlags

from baseplate.core import Baseplate, TraceInfo
from baseplate.diagnostics.tracing import LoggingRecorder, TracingClient
from bridge import provider
from bridge.zipkin_records import DEBUG_ATTRIBUTE, SHARED_ATTRIBUTE
from tests.diagnostics.tracing.standins import CollectorStandIn, tracing_client_to

SCHEMA = json.loads((Path(__file__).parent / "zipkin_v2_span.schema.json").read_text())
DEBUG_FLAG = 1


def zipkin_spans(
    collector: CollectorStandIn, trace_info: TraceInfo | None, remote_parent: Any = None
) -> dict[str, Any]:
    """Serve one request (a server span and a child) and return what Zipkin got, by name."""
    client = tracing_client_to(collector.port, service_name="marker-service")
    baseplate = Baseplate()
    baseplate.configure_tracing(client)
    server = baseplate.make_server_span(
        SimpleNamespace(), "handle", trace_info, remote_parent=remote_parent
    )
    with server, server.make_child("backend.call"):
        pass
    assert client.flush(10)
    spans = []
    for _, _, body in collector.wait_for(1):
        payload = json.loads(body)
        jsonschema.validate(payload, SCHEMA)
        spans.extend(payload)
    by_name = {span["name"]: span for span in spans}
    assert set(by_name) == {"handle", "backend.call"}
    for span in spans:
        tags = span.get("tags", {})
        assert DEBUG_ATTRIBUTE not in tags
        assert SHARED_ATTRIBUTE not in tags
    return by_name


def test_a_plain_sampled_trace_is_not_debug(collector, fresh_provider):
    spans = zipkin_spans(collector, None)
    for span in spans.values():
        assert "debug" not in span
        assert "shared" not in span
    assert "parentId" not in spans["handle"]


def test_an_upstream_sampled_trace_is_not_debug(collector, fresh_provider):
    spans = zipkin_spans(collector, TraceInfo.from_upstream(0xABC, 0xDEF, 0x123, True, None))
    assert not any("debug" in span for span in spans.values())


def test_a_debug_flagged_trace_is_debug_on_every_span(collector, fresh_provider):
    spans = zipkin_spans(collector, TraceInfo.from_upstream(0xABC, 0xDEF, 0x123, None, DEBUG_FLAG))
    assert spans["handle"]["debug"] is True
    assert spans["backend.call"]["debug"] is True


def test_a_server_span_with_its_callers_span_id_is_shared(collector, fresh_provider):
    trace_id, parent_id, span_id = 0x1234, 0x5678, 0x9ABC
    spans = zipkin_spans(
        collector, TraceInfo.from_upstream(trace_id, parent_id, span_id, True, None)
    )
    server = spans["handle"]
    assert server["shared"] is True
    assert server["kind"] == "SERVER"
    assert server["id"] == f"{span_id:016x}"
    assert server["parentId"] == f"{parent_id:016x}"
    assert int(server["traceId"], 16) == trace_id
    assert "shared" not in spans["backend.call"]
    assert spans["backend.call"]["parentId"] == f"{span_id:016x}"


def test_a_fresh_root_server_span_is_not_shared(collector, fresh_provider):
    server = zipkin_spans(collector, None)["handle"]
    assert server["kind"] == "SERVER"
    assert "shared" not in server


def test_a_child_of_a_w3c_caller_is_not_shared(collector, fresh_provider):
    caller = SpanContext(0xA1 << 64 | 0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1))
    info = TraceInfo.from_upstream(0x1234, 0x5678, 0x9ABC, True, None)
    server = zipkin_spans(collector, info, remote_parent=caller)["handle"]
    assert "shared" not in server
    assert server["parentId"] == f"{0x5678:016x}"
    assert server["traceId"] == f"{0xA1 << 64 | 0x1234:032x}"


def test_the_shared_mark_is_made_only_for_exporters_that_report_it(fresh_provider):
    """Other destinations (the sidecar, OTLP, the app's own) never see the attribute."""
    exported = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    client = TracingClient("svc", 1.0, LoggingRecorder("svc"))
    baseplate = Baseplate()
    baseplate.configure_tracing(client)
    info = TraceInfo.from_upstream(0x1234, 0x5678, 0x9ABC, True, None)
    with baseplate.make_server_span(SimpleNamespace(), "handle", info):
        pass
    [span] = exported.get_finished_spans()
    assert span.context.span_id == 0x9ABC
    assert SHARED_ATTRIBUTE not in (span.attributes or {})
